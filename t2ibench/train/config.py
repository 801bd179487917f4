"""The run config of a reference training run: typed dataclasses whose defaults ARE the paper's recipe.

    config = RunConfig(variant="sdxl_td4_8")                      # the study's recipe
    config = apply_overrides(config, ["model.channels=32", "optim.lr=1e-4", "train.mixed_precision=no"])

Every field can be overridden as `key=value` (dotted keys, checked against the field's type; an unknown
key or a value of the wrong type is a UserError). Fields marked `recipe=False` (paths, logging,
micro-batch size, ...) may differ between a run and its resumption; every other field is part of the
recipe hash stored in each checkpoint, and `--resume` refuses a directory whose hash differs.

The paper does not state a caption-dropout rate for classifier-free guidance; we use 0.1 (SD2's
fine-tuning value and diffusers' common choice) and record it in every checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from t2ibench.errors import UserError
from t2ibench.protocol import GENERATION_BATCH_SIZE, PROTOCOL_DEFAULTS


def _run_only(default: Any = dataclasses.MISSING, **kw) -> Any:
    """A field that is not part of the recipe (may change on resume)."""
    if default is dataclasses.MISSING:
        return field(metadata={"recipe": False}, **kw)
    return field(default=default, metadata={"recipe": False}, **kw)


@dataclass
class ModelConfig:
    # Width/depth of the registered topology (None = the variant's own). UNet: channels,
    # transformer_depth (one entry per level). PixArt: hidden, depth.
    channels: int | None = None
    transformer_depth: tuple[int, ...] | None = None
    hidden: int | None = None
    depth: int | None = None
    heads: int | None = None  # PixArt heads (scaled-down PixArt needs fewer than 16)
    head_dim: int | None = None  # UNet per-head width
    norm_groups: int | None = None  # UNet GroupNorm groups (scaled-down UNets need fewer than 32)
    # Frozen text encoder: "openclip-h" (the study's), "tiny" (random, for CPU runs), or a path to an
    # open_clip ViT-H-14 checkpoint file.
    text_encoder: str = "openclip-h"
    tiny_text_width: int = 64
    tiny_text_layers: int = 2
    tiny_text_tokens: int = 77
    # Frozen VAE: "sdxl-vae" (the study's), "none" (pixel space), "tiny" (random AutoencoderKL, x8),
    # or a path to a diffusers AutoencoderKL directory.
    vae: str = "sdxl-vae"
    weights_dir: str | None = _run_only(None)  # explicit location of the frozen weights
    # DDPM noise schedule: the paper's "setup of LDM" (SD2-base) by default. Pixel-space runs want
    # DDPM's own `linear` 1e-4..0.02: the latent schedule leaves ~7% of the signal at t=T, and in pixel
    # space the noise's per-image mean is then read as the image's colour (see docs/training.md).
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction_type: str = "epsilon"  # or v_prediction
    zero_terminal_snr: bool = False  # rescale betas to zero signal at t=T (needs v_prediction)


@dataclass
class DataConfig:
    path: str | None = _run_only(None)  # folder, *.tar shards, *.parquet, or a glob
    kind: str = _run_only("auto")  # auto | folder | webdataset | parquet
    # Smallest usable shorter side (None = the training resolution; smaller images are skipped).
    min_side: int | None = None
    # Synthetic-caption mixing (paper Sec. 5): alt-text with this probability, else one of the top-k
    # ranked synthetic captions uniformly at random. top_k=1 is the "always best caption" ablation.
    alt_text_prob: float = 0.5
    synthetic_top_k: int = 5
    num_workers: int = _run_only(2)
    # Precompute VAE latents (mean/std) and text embeddings of every caption candidate once, so a step
    # runs the backbone only. None = auto: on for an indexed dataset of at most cache_max_items items
    # (the trainer prints why when it is off); true/false force it.
    cache: bool | None = _run_only(None)
    cache_max_items: int = _run_only(200_000)
    cache_dir: str | None = _run_only(None)  # default <out>/cache


@dataclass
class OptimConfig:
    lr: float = 8e-5
    warmup_steps: int = 10_000  # linear warmup, then constant
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.01
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global L2 norm; 0 disables


@dataclass
class TrainConfig:
    steps: int = _run_only(600_000)  # optimizer steps to reach (the paper: up to 600K)
    global_batch: int = 2048
    micro_batch: int = _run_only(32)  # per device; accumulation = global / (micro x processes)
    mixed_precision: str = "bf16"  # bf16 (autocast, fp32 master weights) | fp16 | no
    distributed: str = _run_only("ddp")  # ddp | fsdp
    gradient_checkpointing: bool = _run_only(False)
    caption_dropout: float = 0.1  # for classifier-free guidance (paper: unstated; see module doc)
    ema: bool = False
    ema_decay: float = 0.9999
    deterministic: bool = _run_only(False)  # torch deterministic algorithms (bitwise resume on CPU)
    cpu: bool = _run_only(False)  # force CPU even when a GPU is present
    compile: bool = _run_only(False)  # torch.compile the backbone (same losses within float tolerance)
    # AdamW implementation: auto = fused (one kernel over all parameters) unless sharded by FSDP, where
    # foreach is used; for-loop is torch's per-tensor reference. All give the same update up to rounding.
    optimizer_impl: str = _run_only("auto")  # auto | fused | foreach | for-loop


@dataclass
class CheckpointConfig:
    every: int = _run_only(5000)  # steps; the final step is always saved
    keep: int = _run_only(3)  # most recent checkpoints kept (0 = all)
    embed_frozen: bool = _run_only(False)  # copy the frozen text encoder/VAE into each checkpoint
    # (the study's are stored as references resolved through t2ibench.weights; tiny ones are always copied)


@dataclass
class EvalConfig:
    every: int = _run_only(0)  # steps; 0 disables in-training evaluation
    metrics: str = _run_only("tifa")
    prompts: str | None = _run_only(None)  # prompt set name (None: each metric's default)
    limit: int | None = _run_only(64)  # prompts per evaluation
    db: str | None = _run_only(None)  # results store: SQLite path or postgresql:// URL (None: $T2IBENCH_DB or ./results)
    # sampling: the protocol's defaults (t2ibench/protocol.py)
    steps: int = _run_only(PROTOCOL_DEFAULTS.steps)  # DDIM steps
    cfg: float = _run_only(PROTOCOL_DEFAULTS.cfg)
    seed: int = _run_only(PROTOCOL_DEFAULTS.base_seed)
    batch_size: int = _run_only(GENERATION_BATCH_SIZE)  # images per generation batch
    dtype: str = _run_only("auto")  # auto (bf16 on a CUDA GPU that supports it, else fp32) | fp32 | bf16 | fp16
    prompts_dir: str | None = _run_only(None)  # where prompt sets live (None: t2ibench's default)
    # Per-scorer options as JSON, e.g. {"tifa": {"vqa": "shapes-measure", "questions": "q.json"}}
    options: str | None = _run_only(None)

    def scorer_options(self) -> dict[str, dict[str, Any]] | None:
        """`options` parsed: {metric: {key: value}}."""
        if not self.options:
            return None
        try:
            options = json.loads(self.options)
        except ValueError as exc:
            raise UserError(f"eval.options is not JSON ({exc}): {self.options!r}") from None
        if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
            raise UserError('eval.options must be a JSON object of metric -> options, e.g. '
                            '{"tifa": {"vqa": "shapes-measure"}}')
        return options

    def protocol(self, resolution: int, device: str = "cpu"):
        """The generation protocol of these evaluations at the run's resolution (dtype "auto" resolved
        for `device`)."""
        from t2ibench.protocol import Protocol, resolve_dtype

        return Protocol(steps=self.steps, cfg=self.cfg, resolution=resolution, base_seed=self.seed,
                        dtype=resolve_dtype(self.dtype, device))


@dataclass
class LogConfig:
    every: int = _run_only(10)  # steps between logged scalars
    tensorboard: bool = _run_only(True)
    wandb: bool = _run_only(False)
    progress: bool = _run_only(True)
    # Per-device peak TFLOP/s that MFU is measured against; 0 = auto: a known GPU's datasheet dense peak
    # for the training dtype (t2ibench.hardware.KNOWN_PEAK_TFLOPS), else a GEMM measured at start-up.
    peak_tflops: float = _run_only(0.0)


@dataclass
class RunConfig:
    variant: str = "sdxl"
    resolution: int = 256
    seed: int = 0
    run: str | None = _run_only(None)  # run name (None: the output directory's name)
    out: str | None = _run_only(None)  # output directory (None: runs/<variant>)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    # -- derived ------------------------------------------------------------------------------
    @property
    def out_dir(self) -> str:
        return self.out or f"runs/{self.run or self.variant}"

    @property
    def run_name(self) -> str:
        from pathlib import Path

        return self.run or Path(self.out_dir).name

    def to_dict(self) -> dict[str, Any]:
        """The config as saved (config.json, checkpoints) and logged (trackers): a password in eval.db is
        left out; the run reads it from $PGPASSWORD or ~/.pgpass when resumed from the saved config."""
        from t2ibench.store.location import redact

        d = dataclasses.asdict(self)
        d["eval"]["db"] = redact(d["eval"]["db"])
        return d

    def recipe(self) -> dict[str, Any]:
        """The fields that define what is trained (everything not marked recipe=False)."""
        return _recipe_of(self)

    def recipe_hash(self) -> str:
        text = json.dumps(self.recipe(), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def validate(self):
        """See `validate`: every value this run will use, checked before anything is built."""
        return validate(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return _from_dict(cls, data, "")


def _recipe_of(obj) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        if not f.metadata.get("recipe", True):
            continue
        value = getattr(obj, f.name)
        out[f.name] = _recipe_of(value) if dataclasses.is_dataclass(value) else value
    return out


def _from_dict(cls, data: dict[str, Any], prefix: str):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _from_dict(hint, value or {}, f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _coerce(value, hint, f"{prefix}{f.name}")
    return cls(**kwargs)


# -- key=value overrides ------------------------------------------------------------------------

def all_keys(cls=RunConfig, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += all_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def apply_overrides(config: RunConfig, overrides: list[str] | dict[str, Any]) -> RunConfig:
    """A copy of `config` with `key=value` overrides applied; bad keys/values raise UserError."""
    config = copy.deepcopy(config)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, raw in items:
        parts = key.split(".")
        target = config
        for part in parts[:-1]:
            sub = getattr(target, part, None)
            if not dataclasses.is_dataclass(sub):
                raise _unknown(key)
            target = sub
        names = {f.name for f in dataclasses.fields(target)}
        if parts[-1] not in names or dataclasses.is_dataclass(getattr(target, parts[-1])):
            raise _unknown(key)
        hint = typing.get_type_hints(type(target))[parts[-1]]
        setattr(target, parts[-1], _coerce(raw, hint, key))
    return config


def _split(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {item!r} is not key=value (e.g. optim.lr=1e-4)")
    return key.strip(), value.strip()


def _unknown(key: str) -> UserError:
    import difflib

    close = difflib.get_close_matches(key, all_keys(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `t2ibench train --help` for the keys"
    return UserError(f"unknown config key {key!r}{hint}")


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint, key: str):
    """`value` (a string from the command line, or a JSON value) as the type `hint`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
            return None
        rest = [a for a in args if a is not type(None)]
        if rest[0] is bool and isinstance(value, str) and value.lower() == "auto":
            return None  # an optional switch whose None means "decide from the data" (data.cache)
        return _coerce(value, rest[0], key)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").strip("()[]").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} expects a comma-separated list like 0,1,1, got {value!r}")
        return tuple(_coerce(v, item, key) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise UserError(f"{key} expects true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise UserError(f"{key} expects an integer, got {value!r}")
        try:
            as_float = float(value)  # accept 1e4 / 10000.0 when they are whole numbers
            if as_float != int(as_float):
                raise ValueError
            return int(as_float) if not isinstance(value, int) else value
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"{key} expects an integer, got {value!r}") from None
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key} expects a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{key} expects a string, got {value!r}")
        return value
    raise UserError(f"{key}: cannot parse a value of type {_type_name(hint)}")


def validate(config: RunConfig):
    """Everything a run will use, checked before anything is built (step 1 is hours of work away).

    Returns the evaluations' metric selection (names, options and weight files found), or None when
    the run does not evaluate. One function, one section per concern: add new checks to a section.
    """
    # -- choices ---------------------------------------------------------------------------------------
    choices = {"train.mixed_precision": ("bf16", "fp16", "no"), "train.distributed": ("ddp", "fsdp"),
               "data.kind": ("auto", "folder", "webdataset", "parquet"), "eval.dtype": ("auto", "fp32", "bf16", "fp16"),
               "train.optimizer_impl": ("auto", "fused", "foreach", "for-loop")}
    for key, allowed in choices.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    # -- ranges ----------------------------------------------------------------------------------------
    positive = {"resolution": config.resolution, "train.global_batch": config.train.global_batch,
                "train.micro_batch": config.train.micro_batch, "data.synthetic_top_k": config.data.synthetic_top_k}
    for key, value in positive.items():
        if value < 1:
            raise UserError(f"{key} must be >= 1, got {value}")
    for key, value in {"data.alt_text_prob": config.data.alt_text_prob,
                       "train.caption_dropout": config.train.caption_dropout,
                       "train.ema_decay": config.train.ema_decay}.items():
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{key} must be between 0 and 1, got {value}")
    if config.log.peak_tflops < 0:
        raise UserError(f"log.peak_tflops must be >= 0 (0 = auto), got {config.log.peak_tflops}")
    if config.optim.lr <= 0 or config.optim.warmup_steps < 0:
        raise UserError("optim.lr must be > 0 and optim.warmup_steps >= 0")
    # -- numbers: every one has a range, checked here rather than found mid-run (cli_args does the same for flags)
    at_least = {"train.steps": (config.train.steps, 1), "checkpoint.every": (config.checkpoint.every, 1),
                "log.every": (config.log.every, 1), "checkpoint.keep": (config.checkpoint.keep, 0),
                "eval.every": (config.eval.every, 0), "data.num_workers": (config.data.num_workers, 0),
                "data.min_side": (config.data.min_side, 1), "eval.limit": (config.eval.limit, 1),
                "eval.steps": (config.eval.steps, 1), "eval.batch_size": (config.eval.batch_size, 1),
                "optim.grad_clip": (config.optim.grad_clip, 0), "optim.weight_decay": (config.optim.weight_decay, 0),
                "eval.cfg": (config.eval.cfg, 0), "eval.seed": (config.eval.seed, 0)}
    for key, (value, low) in at_least.items():
        if value is not None and value < low:
            raise UserError(f"{key} must be >= {low}, got {value}")
    if not config.optim.eps > 0:  # log.peak_tflops: >= 0 above (0 = auto)
        raise UserError(f"optim.eps must be > 0, got {config.optim.eps}")
    for key, value in {"optim.beta1": config.optim.beta1, "optim.beta2": config.optim.beta2}.items():
        if not 0.0 <= value < 1.0:
            raise UserError(f"{key} must be in [0, 1), got {value}")
    # -- in-training evaluation: metrics, their options and weights, the protocol -----------------------
    if config.eval.every < 0:
        raise UserError(f"eval.every must be >= 0 (0 disables evaluation), got {config.eval.every}")
    if not config.eval.every:
        return None
    from t2ibench.train.preflight import check_eval

    config.eval.protocol(config.resolution)  # steps, resolution: the protocol's own checks
    return check_eval(config)  # metrics, options and weight files (all missing ones in one line)
