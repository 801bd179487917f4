"""`t2ibench demo` end to end, reduced: data -> real trainer -> TIFA via evaluate -> store -> site.

A few training steps and prompts only (CI's time); learning quality is not asserted here (the full
default run's numbers are in the README), but every stage must have produced its results, and a rerun
must resume instead of redoing work.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from t2ibench.cli import main

VARIANTS = ("sdxl-c8-td1", "sdxl-c16-td1")  # the default pair
ARGS = ["--steps", "4", "--eval-every", "2", "--prompts", "4", "--train-images", "24", "--batch", "4",
        "--sample-steps", "2", "--threads", "2", "--variants", ",".join(VARIANTS)]


def _demo(out: Path, *extra: str, capsys=None) -> tuple[int, dict | None]:
    code = main(["demo", "--out", str(out), *ARGS, *extra, "--format", "json"])
    report = None
    if capsys is not None:
        text = capsys.readouterr().out
        report = json.loads(text) if code == 0 else None
    return code, report


def _rows(db: Path) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM results ORDER BY run, step")]
    finally:
        con.close()


def _checkpoint_files(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns
            for p in (out / "runs").glob("*/checkpoints/step-*/training_state/state.json")}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = main(["demo", "--out", str(out), *ARGS, "--format", "json"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    return out, summary


def test_every_stage_produced_results(demo_run):
    out, summary = demo_run
    # data: training folder in the trainer's format, held-out TIFA questions
    assert len(list((out / "data" / "train").glob("train_*.png"))) == 24
    assert len(json.loads((out / "data" / "eval" / "text_inputs.json").read_text())) == 4
    # store: one TIFA row per variant and evaluated step, step 0 = untrained baseline
    rows = _rows(out / "results.sqlite")
    assert {(r["run"], r["step"]) for r in rows} == {(v, s) for v in VARIANTS for s in (0, 2, 4)}
    for r in rows:
        assert r["metric"] == "tifa" and "shapes-measure" in r["version"]
        assert 0.0 <= r["value"] <= 1.0 and r["n_items"] == 4
    flops = {(r["run"], r["step"]): r["train_flops"] for r in rows}
    for v in VARIANTS:
        assert flops[(v, 0)] == 0 and 0 < flops[(v, 2)] < flops[(v, 4)]
        assert flops[(v, 4)] == pytest.approx(2 * flops[(v, 2)])
    # the wider variant costs more per sample and has more parameters
    params = {r["run"]: r["params"] for r in rows}
    assert params["sdxl-c16-td1"] > params["sdxl-c8-td1"]
    assert flops[("sdxl-c16-td1", 4)] > flops[("sdxl-c8-td1", 4)]
    # checkpoints of the real trainer, evaluated through the same path as `t2ibench eval`
    for v in VARIANTS:
        for step in (2, 4):
            ckpt = out / "runs" / v / "checkpoints" / f"step-{step:08d}" / "model" / "t2ibench_model.json"
            assert json.loads(ckpt.read_text())["tags"]["step"] == step
            result = json.loads((out / "runs" / v / "eval" / f"step-{step:08d}" / "results.json").read_text())
            assert result["manifest"]["protocol"]["steps"] == 2
            assert result["manifest"]["protocol"]["resolution"] == 16
        # the demo's departures from the recipe are run-config overrides, carried into the model's schedule
        config = json.loads((out / "runs" / v / "config.json").read_text())
        assert config["resolution"] == 16
        assert config["model"]["prediction_type"] == "v_prediction" and config["model"]["zero_terminal_snr"]
        saved = json.loads((out / "runs" / v / "checkpoints" / "step-00000004" / "model" / "t2ibench_model.json")
                           .read_text())["schedule"]
        assert saved["prediction_type"] == "v_prediction" and saved["rescale_betas_zero_snr"]
    # summary mirrors the store
    by_run = {v["name"]: {s["step"]: s["tifa"] for s in v["scores"]} for v in summary["variants"]}
    for r in rows:
        assert by_run[r["run"]][r["step"]] == pytest.approx(r["value"])
    assert summary["ground_truth_tifa"] == pytest.approx(1.0, abs=0.02)  # the backend on clean renders
    # site
    index = (out / "site" / "index.html").read_text()
    assert all(v in index for v in VARIANTS)


def test_rerun_resumes_without_redoing_work(demo_run, capsys):
    out, summary = demo_run
    before_ckpts, before_rows = _checkpoint_files(out), len(_rows(out / "results.sqlite"))
    code, report = _demo(out, capsys=capsys)
    assert code == 0
    assert _checkpoint_files(out) == before_ckpts  # nothing retrained
    assert len(_rows(out / "results.sqlite")) == before_rows  # nothing re-evaluated
    assert [v["scores"] for v in report["variants"]] == [v["scores"] for v in summary["variants"]]


def test_missing_evaluation_is_filled_from_its_checkpoint(demo_run, capsys):
    out, _ = demo_run
    target = out / "runs" / VARIANTS[0] / "eval" / "step-00000002" / "results.json"
    old = json.loads(target.read_text())["metrics"]["tifa"]["value"]
    target.unlink()  # as if the run was killed during that evaluation
    before_ckpts, before_rows = _checkpoint_files(out), len(_rows(out / "results.sqlite"))
    code, _ = _demo(out, capsys=capsys)
    assert code == 0 and target.is_file()
    assert _checkpoint_files(out) == before_ckpts
    assert len(_rows(out / "results.sqlite")) == before_rows + 1
    # the checkpoint on disk gives the same images, hence the same score, as the in-training evaluation
    assert json.loads(target.read_text())["metrics"]["tifa"]["value"] == pytest.approx(old)


def test_more_steps_continue_training(demo_run, capsys):
    out, _ = demo_run
    before = _checkpoint_files(out)
    code, report = _demo(out, "--steps", "6", "--variants", VARIANTS[0], capsys=capsys)
    assert code == 0
    after = _checkpoint_files(out)
    name = f"runs/{VARIANTS[0]}/checkpoints/step-{{:08d}}/training_state/state.json"
    assert set(after) - set(before) == {name.format(6)}  # continued from step 4, not from scratch
    assert after[name.format(4)] == before[name.format(4)]
    assert name.format(2) not in after  # the demo keeps the two newest checkpoints of a run
    assert [s["step"] for s in report["variants"][0]["scores"]] == [0, 2, 4, 6]


def test_changed_study_settings_need_fresh(demo_run, capsys):
    out, _ = demo_run
    code = main(["demo", "--out", str(out), *ARGS, "--lr", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "--fresh" in err and len(err.strip().splitlines()) == 1


def test_bad_input_is_one_line(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "d"), "--variants", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown demo variant 'nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # nothing written on bad input
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("not a demo")
    code = main(["demo", "--out", str(tmp_path / "other"), "--fresh", *ARGS])
    assert code == 2 and (tmp_path / "other" / "keep.txt").is_file()
