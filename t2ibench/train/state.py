"""Checkpoints that resume exactly, saved atomically by every rank together.

    <out>/checkpoints/step-00001000/
        model/                 TextToImageModel.save: backbone (+ ema_backbone), frozen parts or
                               references to them, t2ibench_model.json (tags: run, step, samples_seen,
                               train_flops, recipe_hash) -- what `t2ibench eval --ckpt` reads
        training_state/
            state.json         step, samples_seen, data_position, cumulative FLOPs, wall-clock, skips
            config.json        the full run config (recipe hash inside state.json)
            optimizer.pt       full (unsharded) AdamW state, torch.save of tensors and numbers only
                               (DDP and single-process runs)
            sharded/           FSDP runs instead: backbone weights and AdamW state as each rank holds
                               them (torch.distributed.checkpoint, one file per rank + .metadata);
                               loads into any process count, and into DDP runs too
            scheduler.json     LR scheduler state
            ema.safetensors    full EMA weights (when train.ema)
            rng-rank<R>.json   python, numpy and torch (CPU and CUDA) RNG states of rank R
    <out>/checkpoints/latest   name of the newest complete checkpoint

Every rank takes part in gathering the full weights for model/ (FSDP shards them) and writes its own RNG file into a
`.partial` directory; rank 0 renames it into place after all ranks are done and only then updates
`latest`, so a crash mid-save (or a kill -9) leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2ibench.atomic import write_text_atomic
from t2ibench.errors import UserError
from t2ibench.model import replace_dir

STATE_DIR = "training_state"
SHARDED = "sharded"
LATEST = "latest"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    samples_seen: int = 0  # global positions consumed (= data position)
    train_flops: float = 0.0  # exact count: registry FLOPs per training sample x samples
    train_flops_paper: float = 0.0  # paper's axis: 3 x forward FLOPs (paper GMACs x 2) x samples
    wall_s: float = 0.0  # training wall-clock over all sessions
    skipped: dict[str, int] = field(default_factory=dict)
    recipe_hash: str = ""
    variant: str = ""
    processes: int = 1


def checkpoint_root(out: Path) -> Path:
    return Path(out) / "checkpoints"


def latest_checkpoint(out: Path) -> Path | None:
    root = checkpoint_root(out)
    pointer = root / LATEST
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if (path / STATE_DIR / "state.json").is_file():
            return path
    done = sorted(p for p in root.glob("step-*") if (p / STATE_DIR / "state.json").is_file())
    return done[-1] if done else None


def find_intact(out: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(newest complete checkpoint whose files all read back, [(newer damaged checkpoint, why)])."""
    done = sorted((p for p in checkpoint_root(out).glob("step-*") if (p / STATE_DIR / "state.json").is_file()),
                  reverse=True)
    damaged = []
    for ckpt in done:
        reason = damage(ckpt)
        if reason is None:
            return ckpt, damaged
        damaged.append((ckpt, reason))
    return None, damaged


def damage(ckpt: Path) -> str | None:
    """Why a complete-looking checkpoint cannot be resumed (a truncated or corrupt file), else None.
    Reads headers and checksums only: safetensors lengths, zip CRCs of optimizer.pt, JSON syntax."""
    import zipfile

    for path in sorted(ckpt.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(ckpt)
        try:
            if path.suffix == ".safetensors":
                problem = _safetensors_problem(path)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
                problem = None
            elif path.suffix == ".pt":
                with zipfile.ZipFile(path) as zf:
                    bad = zf.testzip()
                problem = f"member {bad} fails its CRC" if bad else None
            else:
                continue
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            problem = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        if problem:
            return f"{rel}: {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than a safetensors header"
        n = int.from_bytes(head, "little")
        if 8 + n > size:
            return f"header of {n} bytes but the file has {size}"
        header = json.loads(fh.read(n))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"truncated: {size} bytes, its header describes {8 + n + end}"
    return None


def set_aside(ckpt: Path, kept: Path) -> None:
    """Move a damaged checkpoint out of the way of resume and pruning, keeping every byte."""
    import os

    if kept.exists():
        kept = kept.with_name(f"{kept.name}-{os.getpid()}")
    os.replace(ckpt, kept)


def read_state(ckpt: Path) -> TrainState:
    return TrainState(**json.loads((ckpt / STATE_DIR / "state.json").read_text()))


def check_compatible(ckpt: Path, config) -> TrainState:
    """The checkpoint's state, or one line saying why this run (a RunConfig) cannot continue from it."""
    from t2ibench.train.config import RunConfig

    state, variant = read_state(ckpt), config.variant
    if state.variant != variant:
        raise UserError(f"{ckpt} is a checkpoint of variant {state.variant!r}, not {variant!r}; "
                        "use another --out or the same variant")
    if state.recipe_hash != config.recipe_hash():
        old = json.loads((ckpt / STATE_DIR / "config.json").read_text())
        diff = _recipe_diff(RunConfig.from_dict(old).recipe(), config.recipe()) or "a field changed meaning"
        raise UserError(f"{ckpt} was trained with a different recipe ({diff}); resume with the same "
                        "settings or use another --out")
    return state


def _recipe_diff(old: dict, new: dict, prefix: str = "") -> str:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = _recipe_diff(a, b, f"{prefix}{key}.")
            if sub:
                diffs.append(sub)
        elif (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
            diffs.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return "; ".join(diffs[:3])


# -- RNG states ---------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    out = {"python": [py[0], list(py[1]), py[2]],
           "numpy": [np_state[0], np_state[1].tolist(), *[float(x) if isinstance(x, float) else int(x) for x in np_state[2:]]],
           "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# -- full (unsharded) states, the same for single process, DDP and FSDP -------------------------

def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def full_model_state(module) -> dict[str, torch.Tensor]:
    """The full state dict (on CPU) of a plain, DDP or FSDP module; every rank must call this."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options())


def load_full_model_state(module, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(module, state, options=_options())


def _raw_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps one


# -- save / load --------------------------------------------------------------------------------

def save_checkpoint(accelerator, out: Path, *, model, backbone, optimizer, scheduler, ema, state: TrainState,
                    config_dict: dict, keep: int, embed_frozen: bool) -> Path:
    """Write checkpoint `step-<state.step>` atomically; all ranks must call this together."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    root = checkpoint_root(out)
    name = f"step-{state.step:08d}"
    final, partial = root / name, root / f".{name}.partial"
    rank0 = accelerator.is_main_process
    if rank0:
        shutil.rmtree(partial, ignore_errors=True)
        (partial / STATE_DIR).mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Collectives first, on every rank: full weights, EMA weights, optimizer state.
    weights = full_model_state(backbone)
    ema_weights = ema.full_state(weights) if ema is not None else None
    sharded = _is_sharded(backbone)
    if sharded:  # each rank writes its own shards of the weights and the optimizer state
        import torch.distributed.checkpoint as dcp

        dcp.save(_sharded_state(backbone, optimizer), checkpoint_id=str(partial / STATE_DIR / SHARDED))
        optim_state = None
    else:
        optim_state = get_optimizer_state_dict(backbone, _raw_optimizer(optimizer), options=_options())
    _write_json(partial / STATE_DIR / f"rng-rank{accelerator.process_index}.json", rng_state())
    if rank0:
        from safetensors.torch import save_file

        _save_model_part(model, weights, ema_weights, partial / "model", embed_frozen)
        if optim_state is not None:
            torch.save(optim_state, partial / STATE_DIR / "optimizer.pt")
        _write_json(partial / STATE_DIR / "scheduler.json", scheduler.state_dict())
        if ema_weights is not None:
            save_file({k: v.contiguous() for k, v in ema_weights.items()}, str(partial / STATE_DIR / "ema.safetensors"))
        _write_json(partial / STATE_DIR / "config.json", config_dict)
        _write_json(partial / STATE_DIR / "state.json", asdict(state))  # written last: marks completeness
    accelerator.wait_for_everyone()
    if rank0:
        replace_dir(partial, final)
        write_text_atomic(root / LATEST, name)
        _prune(root, keep, name)
    accelerator.wait_for_everyone()
    return final


def _save_model_part(model, weights, ema_weights, directory: Path, embed_frozen: bool) -> None:
    """TextToImageModel.save of the gathered weights (a CPU copy, so FSDP shards are not touched)."""
    from t2ibench.model import TextToImageModel

    def copy_with(state):
        net = type(model.backbone).from_config(model.backbone.config)
        net.load_state_dict(state)
        return net

    info = type(model.info)(**asdict(model.info))
    snapshot = TextToImageModel(copy_with(weights), model.text_encoder, model.vae, info,
                                ema_backbone=copy_with(ema_weights) if ema_weights is not None else None)
    snapshot.save(directory, embed_frozen=embed_frozen)


def load_checkpoint(ckpt: Path, accelerator, *, backbone, optimizer, scheduler, ema) -> TrainState:
    """Restore everything `save_checkpoint` wrote into the prepared objects; all ranks call this."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    state_dir = ckpt / STATE_DIR
    weights = load_file(str(ckpt / "model" / "backbone" / "diffusion_pytorch_model.safetensors"))
    if ema is not None:
        if not (state_dir / "ema.safetensors").is_file():
            raise UserError(f"{ckpt} has no EMA state but train.ema=true")
        ema.load_full_state(load_file(str(state_dir / "ema.safetensors")))
    if (state_dir / SHARDED).is_dir():  # an FSDP run's checkpoint: resharded to this run's layout by DCP
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        target = _sharded_state(backbone, optimizer)
        dcp.load(target, checkpoint_id=str(state_dir / SHARDED))
        set_model_state_dict(backbone, target["model"])
        set_optimizer_state_dict(backbone, _raw_optimizer(optimizer), target["optim"])
    else:
        load_full_model_state(backbone, weights)
        optim_state = torch.load(state_dir / "optimizer.pt", map_location="cpu", weights_only=True)
        set_optimizer_state_dict(backbone, _raw_optimizer(optimizer), optim_state, options=_options())
    scheduler.load_state_dict(json.loads((state_dir / "scheduler.json").read_text()))
    rng_file = state_dir / f"rng-rank{accelerator.process_index}.json"
    if rng_file.is_file():  # absent when resuming with more processes than before
        set_rng_state(json.loads(rng_file.read_text()))
    return read_state(ckpt)


def _is_sharded(module) -> bool:
    return any(hasattr(p, "to_local") for p in module.parameters())


def _sharded_state(backbone, optimizer) -> dict:
    """This rank's part of the weights and optimizer state (DTensors under FSDP), for DCP."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"model": get_model_state_dict(backbone),
            "optim": get_optimizer_state_dict(backbone, _raw_optimizer(optimizer))}


def _prune(root: Path, keep: int, newest: str) -> None:
    if keep <= 0:
        return
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[:-keep]:
        if old.name != newest:
            shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=_json_default))


def _json_default(obj):
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")
