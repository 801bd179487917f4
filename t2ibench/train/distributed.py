"""How the backbone is spread over the processes: DDP (accelerate's default) or FSDP2 (`fully_shard`).

`train.distributed=fsdp` always shards; it never falls back to DDP:
- where accelerate runs FSDP (several CUDA processes under `accelerate launch`/torchrun), through
  accelerate's FullyShardedDataParallelPlugin(fsdp_version=2);
- otherwise (CPU processes over gloo, a single process, a single GPU) directly with
  torch.distributed.fsdp.fully_shard on a 1-D device mesh over all processes. A single process gets a
  one-rank process group of its own.
Each transformer block and resnet block is its own FSDP unit (the paper shards its large UNets), the
rest of the backbone belongs to the root unit. Where neither way can run (no torch.distributed, an
accelerator other than CUDA, fp16), `check_fsdp` stops with one line before anything is built.

Mixed precision under the direct path is explicit: on CUDA, bf16 parameters for compute with fp32
gradient reduction (MixedPrecisionPolicy), fp32 sharded master weights; on a CPU, fp32 parameters and
fp32 gradient reduction (gloo reduces no bf16), and `train.mixed_precision=bf16` means bf16 compute
under torch.autocast. `describe` prints the choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from t2ibench.errors import UserError

SHARDED_BLOCKS = ("BasicTransformerBlock", "ResnetBlock2D")  # diffusers' UNet and PixArt blocks


@dataclass
class Sharding:
    how: str  # "accelerate" | "torch"
    mixed_precision: str  # what the run computes and reduces in, in words
    local_params: int  # parameter elements held by this rank
    total_params: int

    def describe(self, rank: int, world: int) -> str:
        share = self.local_params / max(1, self.total_params)
        via = "accelerate's FSDP2 plugin" if self.how == "accelerate" else "torch fully_shard (direct)"
        return (f"FSDP2 via {via} over {world} process(es): rank {rank} holds {self.local_params:,} of "
                f"{self.total_params:,} backbone parameters ({share:.0%}); {self.mixed_precision}")


def device_type(config) -> str:
    if torch.cuda.is_available() and not config.train.cpu:
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available() and not config.train.cpu:
        return "mps"
    return "cpu"


def check_fsdp(config) -> None:
    """One line, before anything is built, when `train.distributed=fsdp` cannot run here."""
    if config.train.distributed != "fsdp":
        return
    where = device_type(config)
    if not torch.distributed.is_available():
        raise UserError("train.distributed=fsdp needs torch.distributed, which this torch build lacks; "
                        "use train.distributed=ddp")
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401 (torch >= 2.6)
    except ImportError:
        raise UserError(f"train.distributed=fsdp needs FSDP2 (torch >= 2.6, this is {torch.__version__}); "
                        "use train.distributed=ddp") from None
    if where not in ("cuda", "cpu"):
        raise UserError(f"train.distributed=fsdp cannot run on {where} (FSDP2 runs on CUDA or on CPUs with gloo); "
                        "use train.distributed=ddp or train.cpu=true")
    if config.train.mixed_precision == "fp16":
        raise UserError("train.distributed=fsdp supports train.mixed_precision=bf16 or no, not fp16 "
                        "(FSDP2 has no loss scaler here)")


def accelerate_plugin(config):
    """accelerate's FSDP2 plugin where accelerate shards (several CUDA processes), else None."""
    if config.train.distributed != "fsdp" or device_type(config) != "cuda" or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    from accelerate import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True,
        transformer_cls_names_to_wrap=list(SHARDED_BLOCKS), state_dict_type="SHARDED_STATE_DICT")


def param_share(module) -> tuple[int, int]:
    """(elements held locally, elements in total) over the module's parameters."""
    local = total = 0
    for p in module.parameters():
        total += p.numel()
        local += p.to_local().numel() if hasattr(p, "to_local") else p.numel()
    return local, total


def is_sharded(module) -> bool:
    return any(hasattr(p, "to_local") for p in module.parameters())


def _process_group(device: torch.device) -> int:
    import torch.distributed as dist

    if not dist.is_initialized():  # one process without a launcher: a group of one
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return dist.get_world_size()


def shard_backbone(backbone: torch.nn.Module, device: torch.device, mixed_precision: str) -> Sharding:
    """Shard `backbone` in place with fully_shard (each block, then the root) over every process."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    world = _process_group(device)
    mesh = init_device_mesh(device.type, (world,))
    if device.type == "cuda" and mixed_precision == "bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        words = "bf16 compute parameters, fp32 gradient reduction, fp32 sharded master weights"
    else:
        policy = MixedPrecisionPolicy()
        compute = "bf16 compute (torch.autocast)" if mixed_precision == "bf16" else "fp32 compute"
        words = f"fp32 sharded parameters, fp32 gradient reduction, {compute}"
    backbone.to(device)
    for module in backbone.modules():
        if type(module).__name__ in SHARDED_BLOCKS:
            fully_shard(module, mesh=mesh, mp_policy=policy)
    fully_shard(backbone, mesh=mesh, mp_policy=policy)
    if not is_sharded(backbone):
        raise UserError("train.distributed=fsdp: fully_shard left the backbone unsharded")
    return Sharding("torch", words, *param_share(backbone))


def autocast(device: torch.device, mixed_precision: str, sharding: Sharding | None):
    """The compute-dtype context of a forward pass on the direct FSDP path on a CPU (accelerate applies
    its own autocast to the models it prepares)."""
    import contextlib

    if sharding is not None and sharding.how == "torch" and device.type == "cpu" and mixed_precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
