"""The evaluation protocol: the generation settings every result records, with the paper's defaults.

DDIM, 50 steps, CFG 7.5, 256x256, fp32, one image per prompt, image i seeded `base_seed + i`, non-EMA
weights (DESIGN.md). This dataclass is the one place these defaults live: `t2ibench generate`/`eval`
take their flag defaults from it, and so does the trainer's in-training evaluation
(`t2ibench.train.config.EvalConfig`). Also here: the seed rule with K images per prompt, the dtypes,
and `Sampleable`, what a model (t2ibench's own or a diffusers pipeline) offers to be sampled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from t2ibench.errors import UserError

UNCOND_PROMPT = ""
SAMPLERS = ("ddim",)
DTYPES = ("fp32", "bf16", "fp16")
# Image j of prompt i gets seed base_seed + i + SEED_STRIDE * j: image 0 keeps the K=1 protocol's seed
# (so K=4 extends K=1 results and reuses their cached images) and no two images of a set under
# SEED_STRIDE prompts share a seed.
SEED_STRIDE = 1_000_000


def image_seed(base_seed: int, prompt_index: int, image_index: int = 0) -> int:
    return int(base_seed) + int(prompt_index) + SEED_STRIDE * int(image_index)


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def resolve_dtype(name: str, device: str) -> str:
    """`auto`: bf16 on a CUDA GPU that supports it, else fp32 (CPU, or a GPU without bf16)."""
    if name != "auto":
        if name not in DTYPES:
            raise UserError(f"--dtype must be auto or one of {', '.join(DTYPES)}, got {name!r}")
        return name
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def scheduler_record(scheduler) -> dict[str, Any]:
    """Class and config of a diffusers scheduler, JSON-safe and stable (no private keys such as the
    unordered `_use_default_values`)."""
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    return {"class": type(scheduler).__name__, "config": json.loads(json.dumps(config, default=str))}


@dataclass(frozen=True)
class Protocol:
    """Generation settings; every field is recorded in each result's manifest."""

    sampler: str = "ddim"
    steps: int = 50
    cfg: float = 7.5
    resolution: int = 256
    base_seed: int = 0
    eta: float = 0.0
    dtype: str = "fp32"  # fp32 | bf16 | fp16 (resolve "auto" with resolve_dtype first)
    compile: bool = False  # torch.compile the denoiser: an execution option, recorded since it may round differently
    images_per_prompt: int = 1  # K; image j of prompt i is seeded image_seed(base_seed, i, j)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        if int(self.steps) < 1:
            raise UserError(f"steps must be at least 1, got {self.steps}")
        if int(self.resolution) < 8 or int(self.resolution) % 8:
            raise UserError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        if not 0.0 <= float(self.eta) <= 1.0:
            raise UserError(f"eta must be in [0, 1], got {self.eta}")
        if self.dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 1 <= int(self.images_per_prompt) <= 1000:
            raise UserError(f"images per prompt must be between 1 and 1000, got {self.images_per_prompt}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sampleable:
    """The few things the sampler needs, over a t2ibench model or a diffusers pipeline."""

    kind: str = ""
    ema: bool = False
    ckpt_hash: str = ""
    source: str = ""
    tags: dict[str, Any] = {}
    variant: dict[str, Any] | None = None

    def scheduler(self):
        raise NotImplementedError

    def noise_shape(self, resolution: int) -> tuple[int, int, int]:
        raise NotImplementedError

    def encode_text(self, prompts: list[str]):
        raise NotImplementedError

    def predict_noise(self, x, t, context):
        raise NotImplementedError

    def decode(self, x):
        """Backbone space -> pixels in [-1, 1] (not yet clamped)."""
        raise NotImplementedError

    @property
    def device(self):
        raise NotImplementedError

    def use_compiled(self, compiled: bool) -> None:
        if compiled:
            raise UserError(f"--compile is not supported for {type(self).__name__}")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "hash": self.ckpt_hash, "ema": self.ema}

    def sampling(self, protocol: Protocol) -> dict[str, Any]:
        """What the model samples with under `protocol` (scheduler, guidance, ...), for the manifest."""
        return {"scheduler": scheduler_record(self.scheduler()),
                "guidance": {"kind": "cfg", "scale": float(protocol.cfg)},
                "negative_prompt": {"text": UNCOND_PROMPT, "conditioning": '""'}, "dtype": protocol.dtype,
                "compile": bool(protocol.compile)}


GENERATION_BATCH_SIZE = 8  # images per generation batch (not part of the protocol: results do not depend on it)
PROTOCOL_DEFAULTS = Protocol()
