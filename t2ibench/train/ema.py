"""Exponential moving average of the trained weights, kept exact under FSDP.

The average is taken element by element over the parameters as this rank holds them: whole tensors
under DDP, this rank's shards (DTensors) under FSDP2. Element-wise updates commute with sharding, so
the gathered EMA equals the EMA a single process would keep. Shadows are fp32 whatever the training
precision. Gathering/scattering goes through DTensor's own full_tensor / distribute_tensor.
"""

from __future__ import annotations

import torch


def _is_dtensor(t) -> bool:
    return type(t).__name__ == "DTensor"


class EMA:
    def __init__(self, named_params, decay: float):
        named = [(n, p) for n, p in named_params if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.decay = decay
        self.shadow = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        # shadow <- decay * shadow + (1 - decay) * param
        current = [p.detach().float() for p in self.params]
        torch._foreach_lerp_(self.shadow, current, 1.0 - self.decay)

    def full_state(self, model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`model_state` (a full state dict, for the buffers) with every trained parameter replaced by
        its average, gathered to whole CPU tensors. Every rank must call this (FSDP gathers)."""
        out = dict(model_state)
        for name, shadow in zip(self.names, self.shadow):
            full = shadow.full_tensor() if _is_dtensor(shadow) else shadow
            out[name] = full.detach().cpu()
        return out

    @torch.no_grad()
    def load_full_state(self, state: dict[str, torch.Tensor]) -> None:
        from torch.distributed.tensor import distribute_tensor

        for i, (name, p) in enumerate(zip(self.names, self.params)):
            full = state[name].float()
            if _is_dtensor(p):
                self.shadow[i] = distribute_tensor(full.to(p.device), p.device_mesh, p.placements)
            else:
                self.shadow[i] = full.to(p.device)
