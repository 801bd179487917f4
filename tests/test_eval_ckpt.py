"""`evaluate()` / `t2ibench eval --ckpt`: checkpoint -> images -> scores -> results.json + store rows,
tags from trainer checkpoints, resume without regeneration, manifests, and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import t2ibench.demo  # noqa: E402,F401  (registers the "shapes-measure" VQA backend)
from t2ibench.cli import main  # noqa: E402
from t2ibench.errors import UserError  # noqa: E402
from t2ibench.evaluate import RESULTS_FILE, Protocol, evaluate  # noqa: E402
from t2ibench.store import ResultsStore  # noqa: E402
from tiny_t2i import tiny_model, tiny_spec, tiny_text_encoder, write_question_file  # noqa: E402

P = Protocol(steps=3, resolution=16)
CAPTIONS = {f"shapes_{i}": f"a red circle and {i + 1} blue squares" for i in range(5)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def questions(workdir):
    return write_question_file(workdir / "questions.json", CAPTIONS)


@pytest.fixture(scope="module")
def trainer_ckpt(workdir):
    """A checkpoint as the trainer writes it: model dir with training tags, plus training_state/."""
    model = tiny_model(vae=False)
    model.info.tags = {"run": "tiny-run", "step": 120, "train_flops": 1.5e12, "samples_seen": 960}
    path = model.save(workdir / "run" / "checkpoint-120")
    (path / "training_state").mkdir()
    (path / "training_state" / "optimizer.safetensors").write_bytes(b"not part of the model")
    return path


def tifa_options(questions):
    return {"tifa": {"vqa": "shapes-measure", "questions": str(questions)}}


def test_checkpoint_end_to_end_with_tags_store_and_resume(trainer_ckpt, questions, tmp_path):
    db = tmp_path / "store.sqlite"
    out = tmp_path / "out"
    result = evaluate(trainer_ckpt, ["tifa"], protocol=P, out_dir=out, db=db, scorer_options=tifa_options(questions),
                      batch_size=2, progress=False)
    on_disk = json.loads((out / RESULTS_FILE).read_text())
    assert on_disk["manifest_hash"] == result["manifest_hash"]
    tifa = on_disk["metrics"]["tifa"]
    items = on_disk["per_item"]["tifa"]
    assert [it["id"] for it in items] == list(CAPTIONS) and tifa["n_items"] == 5
    assert tifa["value"] == pytest.approx(sum(it["value"] for it in items) / 5)
    assert all((out / "images" / it["image"]).is_file() for it in items)
    assert tifa["manifest"]["protocol"]["steps"] == 3 and tifa["manifest"]["seeds"] == {
        "first": 0, "last": 4, "rule": "base_seed + index"}
    assert set(tifa["manifest"]["libraries"]) >= {"torch", "diffusers", "transformers", "open_clip_torch"}
    # tags come from the trainer checkpoint; params from the variant registry
    from t2ibench.variants import compute_stats

    (row,) = ResultsStore(db).query()
    assert (row.run, row.step, row.train_flops, row.metric) == ("tiny-run", 120, 1.5e12, "tifa")
    assert row.params == compute_stats(tiny_spec(3, 16)).params and row.variant == "sdxl"
    assert row.ckpt_hash == on_disk["checkpoint"]["hash"] and row.manifest_hash == tifa["manifest_hash"]
    assert row.value == tifa["value"] and row.version == tifa["version"]
    # rerun: nothing regenerated, same numbers, and no second row for the same result
    images = sorted((out / "images").rglob("*.png"))
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in images]
    again = evaluate(trainer_ckpt, ["tifa"], protocol=P, out_dir=out, db=db, scorer_options=tifa_options(questions),
                     batch_size=3, progress=False)
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted((out / "images").rglob("*.png"))] == stamps
    assert again["metrics"]["tifa"]["value"] == tifa["value"] and ResultsStore(db).query() == [row]
    assert again["metrics"]["tifa"]["manifest_hash"] == tifa["manifest_hash"]


def test_in_memory_model_with_explicit_tags(questions, tmp_path):
    model = tiny_model(vae=True)
    model.backbone.train()
    result = evaluate(model, ["tifa"], protocol=P, out_dir=tmp_path / "o", db=tmp_path / "db.sqlite", run="live",
                      variant="sdxl_micro", step=7, train_flops=3.0e9, scorer_options=tifa_options(questions),
                      progress=False)
    assert model.backbone.training  # the trainer's mode is restored
    (row,) = ResultsStore(tmp_path / "db.sqlite").query()
    assert (row.run, row.variant, row.step, row.train_flops) == ("live", "sdxl_micro", 7, 3.0e9)
    assert result["checkpoint"]["source"] == "<in memory>" and len(row.ckpt_hash) == 64


def test_manifest_changes_with_every_protocol_setting(trainer_ckpt, questions, tmp_path):
    def run(i, **change):
        protocol = Protocol(**{**P.to_dict(), **change.pop("protocol", {})})
        return evaluate(trainer_ckpt, ["tifa"], protocol=protocol, out_dir=tmp_path / f"o{i}", store=False,
                        scorer_options=tifa_options(questions), image_dir=tmp_path / "cache", progress=False, **change)

    variants = [{}, {"protocol": {"steps": 4}}, {"protocol": {"cfg": 3.0}}, {"protocol": {"resolution": 24}},
                {"protocol": {"base_seed": 9}}, {"protocol": {"eta": 0.5}}, {"limit": 3}]
    results = [run(i, **v) for i, v in enumerate(variants)]
    per_metric = [r["metrics"]["tifa"]["manifest_hash"] for r in results]
    assert len(set(per_metric)) == len(variants) and len({r["manifest_hash"] for r in results}) == len(variants)
    assert len({r["checkpoint"]["hash"] for r in results}) == 1
    same = run(99)  # a new out dir, same everything: same manifest
    assert same["metrics"]["tifa"]["manifest_hash"] == per_metric[0]


def _cli(capsys, *args) -> tuple[int, str]:
    code = main(["eval", *map(str, args)])
    return code, capsys.readouterr().err


def test_bad_inputs_are_one_line_and_lose_nothing(trainer_ckpt, questions, tmp_path, capsys, shared_data):
    common = ["--metrics", "tifa", "--tifa-vqa", "shapes-measure", "--tifa-questions", questions,
              "--steps", "3", "--resolution", "16", "--no-store", "--format", "json"]
    not_ckpt = tmp_path / "empty"
    not_ckpt.mkdir()
    code, err = _cli(capsys, "--ckpt", not_ckpt, *common, "--out", tmp_path / "x")
    assert code == 2 and "is not a checkpoint" in err and err.count("\n") == 1
    code, err = _cli(capsys, "--ckpt", trainer_ckpt.parent, *common, "--out", tmp_path / "x")
    assert code == 2 and "checkpoint-120" in err  # points at the checkpoint inside the run dir

    from t2ibench.model import build_model

    mismatched = build_model(tiny_spec(3, 16), text_encoder=tiny_text_encoder(width=24), resolution=16)
    bad = mismatched.save(tmp_path / "mismatched")
    code, err = _cli(capsys, "--ckpt", bad, *common, "--out", tmp_path / "x")
    assert code == 2 and "16-d text tokens" in err and "24" in err

    code, err = _cli(capsys, "--ckpt", trainer_ckpt, "--metrics", "tifa,nope", "--out", tmp_path / "x")
    assert code == 2 and "unknown metric" in err
    code, err = _cli(capsys, "--ckpt", trainer_ckpt, "--metrics", "clip", "--prompts", "no-such-set",
                     "--out", tmp_path / "x")
    assert code == 2 and "unknown prompt set" in err
    assert not (tmp_path / "x").exists()  # nothing was started

    out = tmp_path / "done"
    assert _cli(capsys, "--ckpt", trainer_ckpt, *common, "--out", out)[0] == 0
    before = (out / RESULTS_FILE).read_bytes()
    code, err = _cli(capsys, "--ckpt", trainer_ckpt, *[c if c != "3" else "4" for c in common], "--out", out)
    assert code == 2 and "different protocol" in err and "steps 3 vs 4" in err
    other = tiny_model(vae=False, seed=5).save(tmp_path / "other")
    code, err = _cli(capsys, "--ckpt", other, *common, "--out", out)
    assert code == 2 and "another checkpoint" in err
    assert (out / RESULTS_FILE).read_bytes() == before


def test_ema_is_opt_in(tmp_path, questions):
    model = tiny_model(vae=False)
    path = model.save(tmp_path / "no-ema")
    with pytest.raises(UserError, match="no EMA weights"):
        evaluate(path, ["tifa"], protocol=P, out_dir=tmp_path / "o", ema=True, store=False,
                 scorer_options=tifa_options(questions), progress=False)
