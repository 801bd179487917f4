"""Exponential moving average of the trained weights, kept exact under FSDP.

The average is taken element by element over the parameters as this rank holds them: whole tensors
under DDP, this rank's shards under FSDP. Element-wise updates commute with sharding, so the gathered
EMA equals the EMA a single process would keep. Shadows are fp32 whatever the training precision.
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, params, decay: float):
        self.params = [p for p in params if p.requires_grad]
        self.decay = decay
        self.shadow = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        # shadow <- decay * shadow + (1 - decay) * param
        current = [p.detach().float() for p in self.params]
        torch._foreach_lerp_(self.shadow, current, 1.0 - self.decay)
