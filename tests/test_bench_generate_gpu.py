"""benchmarks/bench_generate_gpu.py --dry-run: the GPU precision benchmark runs end to end on tiny CPU models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_dry_run(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_generate_gpu.py"), "--dry-run", "--json",
                          str(out)], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())
    sizes = [r for r in rows["real_size"] if "fp32_images_per_s" in r]
    assert [r["resolution"] for r in sizes] == [16, 32]
    assert all(r["fp32_images_per_s"] > 0 and r["bf16_images_per_s"] > 0 for r in sizes)
    assert all(0 <= r["bf16_vs_fp32_images"]["mean_levels"] < 64 for r in sizes)
    assert [r["family"] for r in rows["pipelines"]] == ["sdxl", "flux-dev"]
    assert all("bf16_vs_fp32_images" in r for r in rows["pipelines"])
