"""The evaluation protocol: the generation settings every result records, with the paper's defaults.

DDIM, 50 steps, CFG 7.5, 256x256, image i seeded `base_seed + i`, non-EMA weights (DESIGN.md). This
dataclass is the one place these defaults live: `t2ibench generate`/`eval` take their flag defaults
from it, and so does the trainer's in-training evaluation (`t2ibench.train.config.EvalConfig`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from t2ibench.errors import UserError

UNCOND_PROMPT = ""
SAMPLERS = ("ddim",)


@dataclass(frozen=True)
class Protocol:
    """Generation settings; every field is recorded in each result's manifest."""

    sampler: str = "ddim"
    steps: int = 50
    cfg: float = 7.5
    resolution: int = 256
    base_seed: int = 0
    eta: float = 0.0

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        if int(self.steps) < 1:
            raise UserError(f"steps must be at least 1, got {self.steps}")
        if int(self.resolution) < 8 or int(self.resolution) % 8:
            raise UserError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        if not 0.0 <= float(self.eta) <= 1.0:
            raise UserError(f"eta must be in [0, 1], got {self.eta}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


GENERATION_BATCH_SIZE = 8  # images per generation batch (not part of the protocol: results do not depend on it)
PROTOCOL_DEFAULTS = Protocol()
