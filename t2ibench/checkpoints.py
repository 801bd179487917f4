"""What `--ckpt` may name, and the checkpoint hash that keys the image cache and every result.

* a t2ibench checkpoint directory (`t2ibench_model.json`; a trainer checkpoint is this plus
  `training_state/`): backbone (non-EMA by default, `ema=True` for `ema_backbone/`), text encoder, VAE;
* a diffusers pipeline directory (`model_index.json`), sampled with its own components;
* a Hugging Face hub id of a diffusers pipeline, where a network (or the HF cache) has it.

The hash is the sha256 of what is loaded: each weight/config file's sha256 (cached by path, size and
mtime in `~/.cache/t2ibench/file_hashes.json`, so a 5 GB checkpoint is read once), and, for frozen
components stored by reference, the pinned reference itself. Training tags are not hashed: the same
weights are the same checkpoint whatever the trainer wrote about them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from t2ibench.atomic import write_json_atomic
from t2ibench.deprecation import moved_names
from t2ibench.errors import UserError

_HASHED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".txt", ".model")


def _hash_cache_path() -> Path:
    from t2ibench.paths import cache_root

    return cache_root() / "file_hashes.json"


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so big weights are hashed once."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _hash_cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    # drop this file's old entries and those of files that are gone (temporary dirs of past runs)
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{path}|") and os.path.exists(k.split("|", 1)[0])}
    cache[key] = digest
    try:  # best effort: a lost update only costs a re-hash later
        write_json_atomic(cache_file, cache, indent=None)
    except OSError:
        pass
    return digest


def tree_sha256(root: Path, subdirs: list[str] | None = None, extra: Any = None) -> str:
    """sha256 over (relative path, file sha256) of the weight/config files under `subdirs` of `root`."""
    root = Path(root)
    entries = []
    for sub in subdirs if subdirs is not None else [""]:
        base = root / sub if sub else root
        if base.is_file():
            entries.append((sub, file_sha256(base)))
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and p.suffix in _HASHED_SUFFIXES and not any(part.startswith(".") for part in rel.split("/")):
                entries.append((rel, file_sha256(p)))
    payload = json.dumps({"files": entries, "extra": extra}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def state_hash(*modules) -> str:
    """sha256 of the parameters and buffers of in-memory modules (the trainer's current weights)."""
    import torch

    h = hashlib.sha256()
    for module in modules:
        if module is None:
            h.update(b"<none>")
            continue
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def t2ibench_hash(directory: Path, ema: bool) -> str:
    from t2ibench.model import read_model_file

    info = read_model_file(directory)
    subdirs = ["ema_backbone" if ema else "backbone"]
    subdirs += [d for d in ("text_encoder", "vae") if (directory / d).is_dir()]
    # what decides the images besides the files: schedule, references to frozen parts, resolution
    extra = {k: info.get(k) for k in ("schedule", "text_encoder", "vae", "variant", "resolution")}
    return tree_sha256(directory, subdirs, extra)


def describe_dir(path: Path) -> str:
    from t2ibench.model import MODEL_FILE

    if (path / MODEL_FILE).is_file():
        return "t2ibench"
    if (path / "model_index.json").is_file():
        return "diffusers"
    return ""


def resolve_ckpt_path(ckpt: str | os.PathLike[str]) -> Path:
    """A trainer's run directory or its `latest` pointer -> the newest checkpoint's model directory.

    Accepted: RUN_DIR, RUN_DIR/latest, RUN_DIR/checkpoints, RUN_DIR/checkpoints/latest (a text file
    naming the newest complete checkpoint), RUN_DIR/checkpoints/step-N; anything else is returned as is.
    (The layout is t2ibench.train.state's; the names are repeated here because train sits above.)"""
    path = Path(os.fspath(ckpt)).expanduser()
    if path.name == "latest" and not path.is_dir():
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        if (run / "checkpoints").is_dir():
            return _newest_checkpoint(run / "checkpoints", path) / "model"
        return path
    if path.is_dir() and not describe_dir(path):
        if (path / "model").is_dir() and describe_dir(path / "model"):
            return path / "model"
        root = path if path.name == "checkpoints" else path / "checkpoints"
        if root.is_dir() and (any(root.glob("step-*")) or (root / "latest").is_file()):
            return _newest_checkpoint(root, path) / "model"
    return path


def _newest_checkpoint(root: Path, asked: Path) -> Path:
    pointer = root / "latest"
    if pointer.is_file():
        try:
            named = root / pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            named = None
        if named is not None and named.name and (named / "model").is_dir():
            return named
    done = sorted(p for p in root.glob("step-*") if (p / "model").is_dir())
    if not done:
        raise UserError(f"{asked}: the run has no complete checkpoint yet (nothing under {root})")
    return done[-1]


def precheck(ckpt: str | os.PathLike[str], ema: bool = False) -> str:
    """Cheap validation of `--ckpt` (no weights read): returns its kind, or raises a UserError. Callers
    above `generate` use `t2ibench.generate.check_checkpoint`, which also inspects a pipeline directory."""
    text = os.fspath(ckpt)
    path = resolve_ckpt_path(text)
    if path.is_dir():
        kind = describe_dir(path)
        if not kind:
            inner = sorted(p.name for p in path.iterdir() if p.is_dir() and describe_dir(p))
            hint = f"; it holds checkpoints {', '.join(inner[:5])}: pass one of them" if inner else ""
            raise UserError(f"{path} is not a checkpoint (no t2ibench_model.json or model_index.json){hint}")
        if ema and kind == "t2ibench" and not (path / "ema_backbone" / "config.json").is_file():
            raise UserError(f"{path} has no EMA weights (train with ema=true, or evaluate without --ema)")
        if ema and kind == "diffusers":
            raise UserError(f"{path}: --ema applies to t2ibench checkpoints; a diffusers pipeline has one set of weights")
        return kind  # a diffusers directory's contents: t2ibench.generate.check_checkpoint
    if path.exists():
        raise UserError(f"{path} is not a checkpoint directory")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return "hub"
    raise UserError(f"checkpoint {text} does not exist (give a checkpoint directory or a hub id like org/name)")


# Loading moved to t2ibench.generate (it builds samplers; this module only hashes and checks paths).
__getattr__ = moved_names(__name__, {"load_checkpoint": "t2ibench.generate:load_sampleable"})

