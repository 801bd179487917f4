"""A new alignment metric through the whole path: checkpoint -> protocol images -> GenEval (tiny
Mask2Former + open_clip, real loading code) -> results.json, the store (with per-tag categories) and the
leaderboard site."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.alignment_models import build_tiny_mask2former
from t2ibench.cli import main
from t2ibench.evaluate import Protocol, evaluate
from t2ibench.metrics.geneval.detector import OBJECT_NAMES
from t2ibench.store import ResultsStore
from tiny_scorers import build_tiny_clip
from tiny_t2i import tiny_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompts"
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/prompts not present")]


def test_geneval_result_lands_in_store_and_leaderboard(tmp_path):
    detector = build_tiny_mask2former(tmp_path / "m2f", seed=1, boost_label=OBJECT_NAMES.index("dog"))
    arch, clip = build_tiny_clip(tmp_path / "clip", seed=2)
    db = tmp_path / "db.sqlite"
    result = evaluate(tiny_model(vae=False), ["geneval"], prompts="geneval", prompts_dir=SHARED, limit=4,
                      protocol=Protocol(steps=2, resolution=16), out_dir=tmp_path / "o", db=db, run="tiny",
                      step=1, weights={"geneval": {"detector": str(detector), "clip": str(clip)}},
                      scorer_options={"geneval": {"k": "any", "clip_arch": arch, "clip_pretrained": "tiny"}},
                      progress=False)
    entry = result["metrics"]["geneval"]
    assert entry["version"].endswith("/k=1") and set(entry["categories"]) == {"single_object"}
    (row,) = ResultsStore(db).query(metric="geneval")
    assert row.categories == entry["categories"] and row.value == entry["value"]
    assert main(["leaderboard", "build", "--db", str(db), "--out", str(tmp_path / "site")]) == 0
    assert "geneval" in (tmp_path / "site" / "index.html").read_text()
