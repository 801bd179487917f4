"""Shared by tests/test_train*.py: tiny image-text datasets and a CPU-size run config."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}


def shape_image(i: int, size: tuple[int, int] = (40, 36)) -> tuple[Image.Image, str]:
    """A coloured circle or square on white; deterministic in i. Slightly non-square (tests the crop)."""
    color = list(COLORS)[i % 4]
    shape = "circle" if (i // 4) % 2 else "square"
    im = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(im)
    x, y = 2 + (3 * i) % 14, 2 + (5 * i) % 10
    (d.ellipse if shape == "circle" else d.rectangle)([x, y, x + 18, y + 18], fill=COLORS[color])
    return im, f"a {color} {shape}"


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write_folder(root: Path, n: int, *, synthetic: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im, cap = shape_image(i)
        im.save(root / f"{i:04d}.png")
        (root / f"{i:04d}.txt").write_text(cap)
        if synthetic:
            record = {"captions": [f"syn{k} {cap}" for k in range(5)], "scores": [-0.1 * k for k in range(5)],
                      "model": "test", "method": "beam", "version": 1}
            (root / f"{i:04d}.syn.json").write_text(json.dumps(record))
    return root


def tiny_overrides(data: Path, out: Path, variant: str = "sdxl", **extra) -> dict:
    """A pixel-space, tiny-text-encoder run at 32 px that takes well under a second per step on a CPU."""
    o = {"resolution": 32, "out": str(out), "data.path": str(data), "data.num_workers": 0,
         "model.text_encoder": "tiny", "model.tiny_text_width": 32, "model.tiny_text_tokens": 8, "model.vae": "none",
         "train.global_batch": 4, "train.micro_batch": 2, "train.mixed_precision": "no", "train.steps": 4,
         "train.deterministic": True, "train.ema": True, "train.ema_decay": 0.9, "optim.lr": 1e-3, "optim.warmup_steps": 0, "checkpoint.every": 2,
         "log.every": 1, "log.progress": False, "log.tensorboard": False}
    if variant.startswith("pixart"):
        o.update({"model.hidden": 32, "model.depth": 2, "model.heads": 2})
    else:
        o.update({"model.channels": 8, "model.transformer_depth": "0,1,1", "model.norm_groups": 8, "model.head_dim": 8})
    o.update(extra)
    return o


def make_config(data: Path, out: Path, variant: str = "sdxl", **extra):
    from t2ibench.train.config import RunConfig, apply_overrides

    return apply_overrides(RunConfig(variant=variant), tiny_overrides(data, out, variant, **extra))


def backbone_weights(ckpt: Path, part: str = "backbone") -> dict:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model" / part / "diffusion_pytorch_model.safetensors"))


def write_shards(root: Path, n: int, per_shard: int, *, index: bool = True) -> Path:
    """The samples of write_folder(n) as webdataset tar shards of `per_shard` samples (+ their metadata)."""
    import tarfile

    root.mkdir(parents=True, exist_ok=True)
    for s in range(0, n, per_shard):
        with tarfile.open(root / f"shard-{s // per_shard:05d}.tar", "w") as tar:
            for i in range(s, min(n, s + per_shard)):
                im, cap = shape_image(i)
                for name, data in ((f"{i:04d}.png", png_bytes(im)), (f"{i:04d}.txt", cap.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    if index:
        from t2ibench.data.shard_index import index_shards

        index_shards(root)
    return root


def kill_after_checkpoint(data: Path, out: Path, step: int = 2, steps: int = 4) -> None:
    """`t2ibench train` in a subprocess, SIGKILLed as soon as checkpoint `step` exists (a crash mid-run)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    overrides = tiny_overrides(data, out, **{"checkpoint.every": 1, "train.steps": steps})
    cmd = [sys.executable, "-m", "t2ibench", "train", "sdxl"] + [f"{k}={v}" for k, v in overrides.items()]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,  # same threads as the tests: CPU sums depend on them
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    done = out / "checkpoints" / f"step-{step:08d}"
    deadline = time.time() + 240
    while not done.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done.is_dir(), proc.stderr.read().decode()[-2000:]
