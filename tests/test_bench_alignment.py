"""benchmarks/bench_alignment.py --dry-run: each batched scorer and its reference loop run, and agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def test_dry_run_agrees_with_reference_loops():
    pytest.importorskip("clip_benchmark")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_alignment.py"
    spec = importlib.util.spec_from_file_location("bench_alignment", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = {r["metric"]: r for r in bench.main(["--dry-run"])}
    assert rows["dpg"]["same_answers"] and rows["geneval"]["same_verdicts"]
    if "skipped" not in rows["vqascore"]:
        assert rows["vqascore"]["max_rel_diff"] < 1e-4
    assert all(r.get("speedup", 1) > 0 for r in rows.values())
