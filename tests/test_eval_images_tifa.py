"""`t2ibench eval --images` with a custom TIFA question file: the CLI path a user with their own
images and questions takes, scored by the demo's measuring backend on its ground-truth renders."""

import json

from t2ibench.cli import main
from t2ibench.demo.datasets import write_eval_set
from t2ibench.demo.shapes import ShapesWorld


def test_eval_images_with_tifa_question_file(tmp_path, capsys):
    files = write_eval_set(tmp_path / "eval", ShapesWorld(), n_prompts=12, seed=3)
    out = tmp_path / "out"
    rc = main(["eval", "--images", str(tmp_path / "eval" / "reference"), "--metrics", "tifa",
               "--tifa-questions", str(files["questions"]), "--tifa-vqa", "shapes-measure",
               "--out", str(out), "--format", "json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)["metrics"]["tifa"]
    assert summary["n_items"] == 12
    assert summary["value"] >= 0.98  # the backend reads clean renders almost perfectly
    assert "shapes-measure" in summary["version"]
    record = json.loads((out / "results.json").read_text())
    assert record["prompts_without_image"] == 0
    tifa = record["metrics"]["tifa"]  # every aggregate with its seeded interval over prompts
    assert summary["ci95"] == tifa["ci95"] and tifa["ci95"][0] <= tifa["value"] <= tifa["ci95"][1]
    assert tifa["interval"]["n"] == 12 and set(tifa["categories_ci95"]) == set(tifa["categories"])


def test_tifa_flags_need_tifa_among_metrics(tmp_path, capsys):
    rc = main(["eval", "--images", str(tmp_path), "--metrics", "clip", "--tifa-questions", "q.json",
               "--prompts", "x.txt"])
    assert rc == 2
    assert "needs tifa" in capsys.readouterr().err
