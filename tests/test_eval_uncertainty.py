"""Intervals in results.json and the store, K images per prompt, and `t2ibench compare`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import t2ibench.demo  # noqa: F401  (registers the "shapes-measure" VQA backend)
from t2ibench import stats
from t2ibench.cli import main
from t2ibench.evaluate import RESULTS_FILE, Protocol, evaluate
from t2ibench.generate import image_seed
from t2ibench.store import ResultsStore
from tiny_t2i import tiny_model, write_question_file

P = Protocol(steps=2, resolution=16)
CAPTIONS = {f"shapes_{i}": f"a red circle and {i + 1} blue squares" for i in range(6)}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("unc")
    q = write_question_file(d / "questions.json", CAPTIONS)
    db = d / "db.sqlite"
    opts = {"tifa": {"vqa": "shapes-measure", "questions": str(q)}}
    runs = {}
    for name, seed in (("a", 0), ("b", 1)):
        import torch

        torch.manual_seed(seed)
        model = tiny_model(vae=False)
        runs[name] = evaluate(model, ["tifa"], protocol=P, out_dir=d / name, db=db, run=name, step=10,
                              scorer_options=opts, progress=False)
    k2 = evaluate(tiny_model(vae=False), ["tifa"], protocol=Protocol(steps=2, resolution=16, images_per_prompt=2),
                  out_dir=d / "k2", db=db, run="k2", step=10, scorer_options=opts, progress=False)
    return d, db, runs, k2


def test_results_carry_seeded_intervals(setup):
    d, db, _, _ = setup
    on_disk = json.loads((d / "a" / RESULTS_FILE).read_text())
    tifa = on_disk["metrics"]["tifa"]
    values = [it["value"] for it in on_disk["per_item"]["tifa"]]
    ref = stats.bootstrap_mean(values)
    assert tifa["ci95"] == ref.ci and tifa["interval"]["method"] == "bca" and tifa["interval"]["n_resamples"] == 2000
    assert tifa["interval"]["seed"] == 0
    assert set(tifa["categories_ci95"]) == set(tifa["categories"])
    for cat, ci in tifa["categories_ci95"].items():
        assert ci is None or ci[0] <= tifa["categories"][cat] <= ci[1]
    row = next(r for r in ResultsStore(db).query(run="a"))
    assert row.interval["ci95"] == tifa["ci95"] and row.item_values == {it["id"]: it["value"]
                                                                      for it in on_disk["per_item"]["tifa"]}


def test_k_images_per_prompt_are_seeded_and_averaged_per_prompt(setup):
    _, _, _, k2 = setup
    tifa = k2["metrics"]["tifa"]
    assert tifa["manifest"]["protocol"]["images_per_prompt"] == 2
    assert tifa["manifest"]["seeds"]["images_per_prompt"] == 2
    items = k2["per_item"]["tifa"]
    assert len(items) == 12
    names = sorted(Path(p).name for it in items[:2] for p in it["image"])
    assert names[0].endswith(f".s{image_seed(0, 0, 0)}.png") and names[-1].endswith(f".s{image_seed(0, 0, 1)}.png")
    means = {}
    for it in items:
        means.setdefault(it["id"], []).append(it["value"])
    assert tifa["interval"]["n"] == 6
    assert tifa["ci95"] == stats.bootstrap_mean([sum(v) / 2 for v in means.values()]).ci


def test_compare_files_and_store_runs(setup, capsys):
    d, db, runs, _ = setup
    assert main(["compare", str(d / "a"), str(d / "b" / RESULTS_FILE), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    a = [it["value"] for it in runs["a"]["per_item"]["tifa"]]
    b = [it["value"] for it in runs["b"]["per_item"]["tifa"]]
    ref = stats.paired_compare(a, b)
    assert out["tifa"]["diff"] == pytest.approx(ref.diff) and out["tifa"]["ci95"] == ref.ci
    assert out["tifa"]["p_value"] == ref.p_value and out["tifa"]["n"] == 6
    assert main(["compare", "a@10", "b", "--db", str(db), "--metric", "tifa", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == out
    assert main(["compare", "a", "a", "--db", str(db), "--format", "json"]) == 0
    same = json.loads(capsys.readouterr().out)["tifa"]
    assert same["diff"] == 0 and same["p_value"] == 1.0


def test_compare_refuses_what_cannot_be_compared(setup, capsys):
    d, db, _, _ = setup
    code = main(["compare", "a", "k2", "--db", str(db)])  # K=2 is another protocol
    err = capsys.readouterr().err
    assert code == 2 and "different protocols" in err and len(err.strip().splitlines()) == 1
    other = json.loads((d / "b" / RESULTS_FILE).read_text())
    for it in other["per_item"]["tifa"]:
        it["id"] = "other-" + it["id"]
    (d / "other.json").write_text(json.dumps(other))
    code = main(["compare", str(d / "a"), str(d / "other.json")])
    err = capsys.readouterr().err
    assert code == 2 and "no prompt in common" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", "nope", "a", "--db", str(db)]) == 2
    assert "neither a results.json nor a run" in capsys.readouterr().err


def test_compare_fid_by_permutation_over_generated_features(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    d = 8
    for name, shift in (("x", 0.0), ("y", 0.6), ("z", 0.0)):
        folder = tmp_path / name
        folder.mkdir()
        np.savez(folder / "fid-features.npz", features=rng.standard_normal((80, d)) + shift, mu_real=np.zeros(d),
                 sigma_real=np.eye(d))
        (folder / RESULTS_FILE).write_text(json.dumps({"run": name, "metrics": {"fid": {
            "value": 1.0, "version": "fid/v", "manifest_hash": "m", "features_file": "fid-features.npz"}},
            "per_item": {}}))
    assert main(["compare", str(tmp_path / "y"), str(tmp_path / "x"), "--format", "json"]) == 0
    far = json.loads(capsys.readouterr().out)["fid"]
    assert far["diff"] > 0 and far["p_value"] < 0.01 and far["method"].startswith("permutation")
    assert main(["compare", str(tmp_path / "z"), str(tmp_path / "x"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["fid"]["p_value"] > 0.05
