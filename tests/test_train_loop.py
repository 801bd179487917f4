"""The reference training loop on CPU with scaled-down registered variants (UNet and PixArt families),
pixel space and a tiny frozen text encoder: learning, exact resume, multi-process equivalence, EMA,
cached embeddings, in-training evaluation and the bad-input stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t2ibench.errors import UserError
from t2ibench.train.loop import TrainingDiverged, train
from train_helpers import backbone_weights, kill_after_checkpoint, make_config, tiny_overrides, write_folder

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("train_data") / "shapes", 8)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """4 steps without interruption: the reference for the resume, multi-process and cache tests."""
    return train(make_config(data, tmp_path_factory.mktemp("straight") / "run"))


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("variant", ["sdxl", "pixart_h1152_d28"])
def test_loss_falls_on_a_fixed_batch(tmp_path, variant):
    # 4 images, global batch 4: every step sees the same batch (new noise and timesteps each time).
    fixed = write_folder(tmp_path / "fixed", 4)
    result = train(make_config(fixed, tmp_path / "run", variant, **{"train.steps": 30, "checkpoint.every": 100}))
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 30 and all(map(lambda x: x == x, losses))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, (first, last)
    assert result.step == 30 and result.samples_seen == 120
    assert result.train_flops > 0 and result.train_flops_paper > 0
    assert (result.model_dir / "t2ibench_model.json").is_file()


def test_checkpoint_is_a_loadable_model_with_tags(straight):
    from t2ibench.model import TextToImageModel

    model = TextToImageModel.load(straight.model_dir)
    tags = model.info.tags
    assert (tags["step"], tags["samples_seen"], tags["run"]) == (4, 16, "run")
    assert tags["train_flops"] == pytest.approx(straight.train_flops)
    # FLOPs: the registry's per-sample training count x samples seen
    from t2ibench.variants import VariantSpec, compute_stats

    per_sample = compute_stats(VariantSpec.from_dict(model.info.variant)).train_flops_per_sample
    assert straight.train_flops == pytest.approx(per_sample * 16)
    assert _equal(model.backbone.state_dict(), backbone_weights(straight.checkpoint))


def test_resume_is_exact(data, straight, tmp_path):
    out = tmp_path / "run"
    train(make_config(data, out, **{"train.steps": 2}))
    resumed = train(make_config(data, out), resume=True)
    assert resumed.step == 4 and resumed.samples_seen == straight.samples_seen
    assert [loss for _, loss in resumed.losses] == [loss for s, loss in straight.losses if s > 2]
    assert _equal(backbone_weights(resumed.checkpoint), backbone_weights(straight.checkpoint))
    assert _equal(*(backbone_weights(r.checkpoint, "ema_backbone") for r in (resumed, straight)))
    a = torch.load(resumed.checkpoint / "training_state" / "optimizer.pt", weights_only=True)
    b = torch.load(straight.checkpoint / "training_state" / "optimizer.pt", weights_only=True)
    assert all(torch.equal(a["state"][k]["exp_avg_sq"], b["state"][k]["exp_avg_sq"]) for k in b["state"])
    assert resumed.train_flops == straight.train_flops


def test_resume_after_kill_9(data, straight, tmp_path):
    """A run killed with SIGKILL (possibly mid-save) resumes from its newest complete checkpoint."""
    out = tmp_path / "run"
    kill_after_checkpoint(data, out)
    resumed = train(make_config(data, out, **{"checkpoint.every": 1}), resume=True)
    assert resumed.step == 4
    assert _equal(backbone_weights(resumed.checkpoint), backbone_weights(straight.checkpoint))


def test_two_processes_match_one(data, straight, tmp_path):
    """torchrun, 2 CPU processes (gloo), micro-batch 2 each, no accumulation == 1 process, micro-batch 2,
    accumulation 2. Tolerance: 1e-6 absolute on every weight (the loss scaling makes it bitwise in practice)."""
    out = tmp_path / "run"
    overrides = tiny_overrides(data, out, **{"train.cpu": True})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29561",
           "-m", "t2ibench", "train", "sdxl"] + [f"{k}={v}" for k, v in overrides.items()]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = out / "checkpoints" / "step-00000004"
    assert (ckpt / "training_state" / "rng-rank1.json").is_file()  # both ranks took part in the save
    two, one = backbone_weights(ckpt), backbone_weights(straight.checkpoint)
    assert max((two[k] - one[k]).abs().max().item() for k in one) <= 1e-6


def _same_training(a, b, lr: float = 1e-3) -> None:
    """Two runs whose inputs differ only by float rounding (the frozen encoders batched differently):
    the first loss agrees tightly; weights agree to Adam's resolution (a near-zero gradient whose sign
    flips moves a weight by up to 2 x lr per step)."""
    assert abs(a.losses[0][1] - b.losses[0][1]) < 1e-5 * abs(a.losses[0][1])
    wa, wb = backbone_weights(a.checkpoint), backbone_weights(b.checkpoint)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 2 * lr * a.step + 1e-6


def test_cached_embeddings_train_the_same(data, straight, tmp_path):
    # the defaults (straight) train from the cache on a dataset this small; the uncached run is the reference
    assert len(list((straight.out_dir / "cache" / "items").rglob("*.safetensors"))) == 8
    uncached = train(make_config(data, tmp_path / "run", **{"data.cache": False}))
    _same_training(straight, uncached)
    assert not (tmp_path / "run" / "cache").exists()


def test_default_step_follows_the_reference_step_for_20_steps(data, tmp_path):
    """The fast defaults (latent/text cache, fused AdamW) against the reference step (frozen encoders every
    step, torch's per-tensor AdamW): the same loss trajectory up to float rounding."""
    common = {"train.steps": 20, "checkpoint.every": 20, "train.ema": False}
    fast = train(make_config(data, tmp_path / "fast", **common))
    reference = train(make_config(data, tmp_path / "ref", **common, **{"data.cache": False,
                                                                        "train.optimizer_impl": "for-loop"}))
    assert [s for s, _ in fast.losses] == [s for s, _ in reference.losses] == list(range(1, 21))
    for (_, a), (_, b) in zip(fast.losses, reference.losses):
        assert abs(a - b) <= 1e-4 * abs(b) + 1e-6, (fast.losses, reference.losses)


def test_tiny_vae_latent_space_with_and_without_cache(data, tmp_path):
    runs = [train(make_config(data, tmp_path / f"run{c}", **{"model.vae": "tiny", "train.steps": 2, "data.cache": c}))
            for c in (False, True)]
    _same_training(*runs)
    from t2ibench.model import TextToImageModel

    assert TextToImageModel.load(runs[0].model_dir).vae is not None


def test_ema_is_the_exact_average(data, tmp_path):
    # one step with decay 0.5: ema = 0.5 * initial + 0.5 * trained, checked against a fresh init
    from t2ibench.train.components import new_run_model

    config = make_config(data, tmp_path / "run", **{"train.ema": True, "train.ema_decay": 0.5, "train.steps": 1})
    result = train(config)
    from safetensors.torch import load_file

    init = new_run_model(config).backbone.state_dict()
    trained = backbone_weights(result.checkpoint)
    ema = load_file(str(result.model_dir / "ema_backbone" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(init[k], trained[k]) for k in init)
    for k in init:
        torch.testing.assert_close(ema[k], 0.5 * init[k] + 0.5 * trained[k], rtol=0, atol=1e-6)


def test_resume_refuses_another_variant_or_recipe(data, straight):
    out = straight.out_dir
    with pytest.raises(UserError, match="variant 'sdxl', not 'pixart_h1152_d28'"):
        train(make_config(data, out, "pixart_h1152_d28"), resume=True)
    with pytest.raises(UserError, match=r"different recipe \(optim.lr: 0.001 there, 0.002 now\)"):
        train(make_config(data, out, **{"optim.lr": 2e-3}), resume=True)
    with pytest.raises(UserError, match="already holds a checkpoint"):
        train(make_config(data, out))
    assert _equal(backbone_weights(straight.checkpoint), backbone_weights(out / "checkpoints" / "step-00000004"))


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"diverged: loss nan at step 2, not applied; last good checkpoint .*step-00000001"):
        train(make_config(data, out, **{"optim.lr": 1e30, "checkpoint.every": 1, "train.steps": 6}))
    weights = backbone_weights(out / "checkpoints" / "step-00000001")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (out / "checkpoints" / "step-00000002").exists()


def test_in_training_evaluation_writes_the_store(tmp_path):
    import json
    import shutil

    from t2ibench.demo.datasets import write_eval_set, write_training_set
    from t2ibench.demo.shapes import ShapesWorld
    from t2ibench.store import ResultsStore

    world = ShapesWorld()
    shapes = write_training_set(tmp_path / "shapes", world, 8)
    questions = write_eval_set(tmp_path / "eval_set", world, 2, reference_images=False)["questions"]
    db = tmp_path / "results.sqlite"
    options = json.dumps({"tifa": {"vqa": "shapes-measure", "questions": str(questions)}})
    result = train(make_config(shapes, tmp_path / "run", **{
        "train.steps": 2, "eval.every": 1, "eval.metrics": "tifa", "eval.steps": 2, "eval.limit": 2,
        "eval.db": str(db), "eval.options": options}))
    assert [e["step"] for e in result.evaluations] == [1, 2]
    rows = sorted(ResultsStore(db).query(), key=lambda r: r.step)
    assert [(r.run, r.metric, r.step, r.variant) for r in rows] == [("run", "tifa", 1, "sdxl"), ("run", "tifa", 2, "sdxl")]
    assert rows[1].train_flops == pytest.approx(2 * rows[0].train_flops) and rows[0].train_flops > 0
    assert all(0.0 <= r.value <= 1.0 for r in rows)

    # A run stopped between its step-2 checkpoint and that step's evaluation: resuming evaluates the
    # restored weights first (with checkpoint.keep=1 the checkpoint is gone by the next save), and the
    # scores equal the uninterrupted run's.
    step2 = tmp_path / "run" / "eval" / "step-00000002"
    first = json.loads((step2 / "results.json").read_text())
    shutil.rmtree(step2)
    resumed = train(make_config(shapes, tmp_path / "run", **{
        "train.steps": 3, "eval.every": 1, "eval.metrics": "tifa", "eval.steps": 2, "eval.limit": 2,
        "eval.db": str(db), "eval.options": options, "checkpoint.keep": 1}), resume=True)
    assert [e["step"] for e in resumed.evaluations] == [2, 3]
    again = json.loads((step2 / "results.json").read_text())
    assert again["per_item"] == first["per_item"]
    assert again["metrics"]["tifa"]["value"] == first["metrics"]["tifa"]["value"]


def test_fsdp2_ema_and_full_states(tmp_path):
    """accelerate runs FSDP on GPUs only; the trainer's FSDP-specific parts (EMA over DTensor shards,
    full-state gather/scatter of weights, EMA and optimizer) are checked here with FSDP2 on 2 CPU ranks."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29563",
           str(Path(__file__).with_name("train_fsdp_worker.py"))]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and "FSDP2 OK" in done.stdout, (done.stdout + done.stderr)[-3000:]
