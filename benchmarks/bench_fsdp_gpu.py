"""FSDP2 training steps of the real-size `sdxl` backbone (random weights) on GPUs, sharded by the
trainer's own `shard_backbone` (t2ibench/train/distributed.py): step time, MFU against a bf16 GEMM
peak measured in the same run (and against the nominal peak), and peak memory per GPU.

One GPU (about 2 minutes):
    python benchmarks/bench_fsdp_gpu.py --batch 32 --steps 10
Several (same script, the trainer's launch):
    torchrun --nproc_per_node 8 benchmarks/bench_fsdp_gpu.py --batch 32
CPU smoke test of the same code path (tiny scaled UNet, fp32; what the test suite runs):
    python benchmarks/bench_fsdp_gpu.py --dry-run

A step is the trainer's: bf16 compute parameters, fp32 gradient reduce-scatter, fp32 sharded AdamW
master weights, per-sample MSE on the protocol's shapes (latent 4x32x32 at 256 px, 77 OpenCLIP-H tokens
of width 1024). FLOPs per sample are the registry's exact training count (t2ibench/train/flops.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gemm_peak_tflops(device, dtype, size: int, repeats: int) -> float:
    """Achieved TFLOP/s of a square matmul: the measured peak MFU is reported against."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e12


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="sdxl")
    parser.add_argument("--batch", type=int, default=32, help="samples per GPU per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--nominal-tflops", type=float, default=989.0, help="per GPU, dense bf16 (H100/H200 SXM)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny scaled UNet, fp32: checks the code path")
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()

    import torch
    import torch.distributed as dist

    from t2ibench.train.distributed import shard_backbone
    from t2ibench.train.flops import account_for
    from t2ibench.variants import get_variant

    if args.dry_run:
        torch.set_num_threads(1)
        device, precision = torch.device("cpu"), "no"
        spec = get_variant(args.variant).scaled(channels=8, transformer_depth=(0, 1, 1), norm_groups=8, head_dim=8,
                                                context_dim=32, context_tokens=8, sample_size=8)
        args.batch, args.steps, args.warmup = 2, 2, 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry-run on a CPU")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device, precision = torch.device("cuda", local), "bf16"
        spec = get_variant(args.variant)
        if "WORLD_SIZE" in os.environ and not dist.is_initialized():
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    account = account_for(spec)
    peak = gemm_peak_tflops(device, torch.float32 if args.dry_run else torch.bfloat16,
                            256 if args.dry_run else 8192, 5 if args.dry_run else 50)
    backbone = spec.build(device=device, seed=0)  # random init on the GPU: seconds, not a minute on the CPU
    if args.gradient_checkpointing:
        backbone.enable_gradient_checkpointing()
    backbone.train()
    sharding = shard_backbone(backbone, device, precision)
    world, rank = dist.get_world_size(), dist.get_rank()
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=1e-5, weight_decay=0.01)
    gen = torch.Generator(device=device).manual_seed(rank)
    x, t, context = (v.to(device) for v in spec.dummy_inputs(args.batch))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> float:
        noise = torch.randn(x.shape, device=device, generator=gen)
        timesteps = torch.randint(0, 1000, t.shape, device=device, generator=gen)
        pred = spec.denoise(backbone, x + noise, timesteps, context)
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    _sync(device)
    step_s = (time.perf_counter() - t0) / args.steps
    flops_per_step = account.flops_per_sample * args.batch  # per GPU
    result = {
        "variant": spec.name, "params": account.params, "world": world, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "precision": sharding.mixed_precision,
        "local_params": sharding.local_params, "total_params": sharding.total_params,
        "batch_per_gpu": args.batch, "steps": args.steps, "step_s": step_s,
        "samples_per_s": args.batch * world / step_s, "train_flops_per_sample": account.flops_per_sample,
        "achieved_tflops_per_gpu": flops_per_step / step_s / 1e12,
        "gemm_peak_tflops": peak, "mfu_vs_gemm_peak": flops_per_step / step_s / 1e12 / peak,
        "mfu_vs_nominal": flops_per_step / step_s / 1e12 / args.nominal_tflops,
        "peak_mem_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "peak_mem_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None,
        "final_loss": float(loss), "sharded": local_share_ok(backbone, world),
    }
    if rank == 0:
        print(json.dumps(result, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    dist.barrier()
    dist.destroy_process_group()


def local_share_ok(backbone, world: int) -> bool:
    from t2ibench.train.distributed import is_sharded, param_share

    local, total = param_share(backbone)
    return is_sharded(backbone) and local <= total / world * 1.1 + 1024


if __name__ == "__main__":
    main()
