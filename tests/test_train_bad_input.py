"""Training never loses work to bad input (issue 14): a damaged newest checkpoint is skipped (and kept)
on resume with the same final weights as an uninterrupted run; everything the run will use is checked
before step 1 and a failed start leaves no run directory; a non-TTY log shows progress as it goes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_helpers import backbone_weights, make_config, tiny_overrides, write_folder

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("bad_train_data") / "shapes", 8)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """4 steps, checkpoints at 2 and 4, uninterrupted: the reference the resumed runs must equal."""
    from t2ibench.train.loop import train

    return train(make_config(data, tmp_path_factory.mktemp("straight") / "run", **{"train.steps": 4}))


@pytest.mark.parametrize("damaged_file", ["training_state/optimizer.pt",
                                          "model/backbone/diffusion_pytorch_model.safetensors"])
def test_resume_skips_a_truncated_newest_checkpoint_and_keeps_it(data, straight, tmp_path, damaged_file):
    import shutil

    from t2ibench.train.loop import train

    out = tmp_path / "run"
    shutil.copytree(straight.out_dir, out)  # the same run, whose last save was then cut short
    newest = out / "checkpoints" / "step-00000004"
    victim = newest / damaged_file
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])  # a save cut short
    damaged = _tree(newest)

    resumed = train(make_config(data, out, **{"train.steps": 4}), resume=True)
    assert [s for s, _ in resumed.losses] == [3, 4]  # resumed from step 2, the newest intact one
    assert _equal(backbone_weights(resumed.checkpoint), backbone_weights(straight.checkpoint))
    assert _equal(*(backbone_weights(r.checkpoint, "ema_backbone") for r in (resumed, straight)))
    kept = out / "checkpoints" / "damaged-step-00000004"
    assert _tree(kept) == damaged  # never deleted, never overwritten: every byte is still there


def test_damage_check_reads_headers_not_names(straight, tmp_path):
    import shutil

    from t2ibench.train.state import damage, find_intact

    out = tmp_path / "run"
    shutil.copytree(straight.out_dir, out)
    older, newest = out / "checkpoints" / "step-00000002", out / "checkpoints" / "step-00000004"
    assert damage(newest) is None and find_intact(out) == (newest, [])
    (newest / "training_state" / "scheduler.json").write_text("{")
    assert "scheduler.json" in damage(newest)
    assert find_intact(out) == (older, [(newest, damage(newest))])


def _cli(args: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "T2IBENCH_CACHE": str(cwd / "cache"), "T2IBENCH_WEIGHTS": str(cwd / "cache" / "no-weights"),
           "T2IBENCH_PROMPTS_DIR": str(cwd / "cache" / "no-prompts")}
    return subprocess.run([sys.executable, "-m", "t2ibench", "train", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # stdout is a pipe: not a TTY


def _overrides(data: Path, run_dir: Path, **extra) -> list[str]:
    o = tiny_overrides(data, extra.pop("out", run_dir), **{"train.ema": False, "log.progress": True, **extra})
    return [f"{k}={v}" for k, v in o.items()]


def test_non_tty_log_shows_progress_every_log_every_steps(data, tmp_path):
    done = _cli(["sdxl", *_overrides(data, tmp_path / "run", **{"train.steps": 10, "log.every": 5,
                                                                 "checkpoint.every": 10})], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    progress = [line for line in lines if " step " in line and " loss " in line]
    assert [line.split(" step ")[1].split()[0] for line in progress] == ["5/10", "10/10"], done.stdout
    for field in ("lr ", "samples/s", "MFU", "ETA"):
        assert field in progress[0]
    assert any("1 process, no distribution, precision fp32" in line for line in lines), done.stdout
    assert "NO, no" not in done.stdout
    # the summary is on the same stream as the progress, after it
    assert lines.index(progress[-1]) < next(i for i, line in enumerate(lines) if line.startswith("trained "))


@pytest.mark.parametrize("extra,expected", [
    ({"eval.every": 2, "eval.metrics": "nope"}, "unknown metric"),
    ({"eval.every": 2, "eval.metrics": "tifa", "eval.options": "{not json"}, "eval.options is not JSON"),
    ({"eval.every": 2, "eval.metrics": "tifa", "eval.options": '{"tifa": {"vqa": "shapes-measure", "nope": 1}}'},
     "has no option 'nope'"),
    ({"eval.every": 2, "eval.metrics": "tifa,imagereward"}, "inputs are missing"),
    ({"eval.every": 2, "eval.metrics": "tifa", "eval.db": "a_file/store.sqlite"}, "eval.db"),
    ({"model.text_encoder": "openclip-h", "model.vae": "sdxl-vae"}, "t2ibench weights fetch --trainer"),
    ({"log.every": 0}, "log.every must be >= 1"),
    ({"out": "a_file/run"}, "a_file/run"),
], ids=["metric", "options-json", "options-key", "eval-weights", "eval-db", "frozen-weights", "log-every", "out"])
def test_everything_is_checked_before_step_1(data, tmp_path, extra, expected):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "run"
    if "out" in extra:
        extra = {**extra, "out": tmp_path / extra["out"]}
        out = extra["out"]
    done = _cli(["sdxl", *_overrides(data, out, **extra)], tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr, done.stderr
    assert not out.exists()  # a failed start leaves no run directory (nor TensorBoard files)


def test_frozen_weights_are_listed_together(data, tmp_path):
    done = _cli(["sdxl", *_overrides(data, tmp_path / "run", **{"model.text_encoder": "openclip-h",
                                                                "model.vae": "sdxl-vae"})], tmp_path)
    assert done.returncode == 2 and "(1)" in done.stderr and "(2)" in done.stderr, done.stderr
    assert "open_clip_model.safetensors" in done.stderr and "sdxl-vae" in done.stderr
    assert "--metrics" not in done.stderr  # the scorer-only command would not help
