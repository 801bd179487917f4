"""GPU precision benchmark: bf16 vs fp32 images/s of t2ibench's sampler on a real-size SDXL-topology UNet
(the `sdxl` variant of t2ibench.variants, random weights, OpenCLIP-H-size text tower, SDXL-size VAE) at
256 and 1024 px, one run, baseline beside; plus torch.compile's effect and the pipeline execution
options (CPU offload changes no numbers; SDXL in fp16 decodes through the VAE's fp32 upcast).

    python benchmarks/bench_generate_gpu.py                 # on a CUDA GPU, about 3 minutes on an H200
    python benchmarks/bench_generate_gpu.py --dry-run       # tiny models on the CPU: exercises every path
    python benchmarks/bench_generate_gpu.py --json out.json --steps 10 --no-compile

Timed: t2ibench's `sample_batch` (text encoding, `--steps` DDIM steps with CFG, VAE decode), best of
`--repeats` after a warm-up; images/s is at `--steps` steps (protocol: 50; the ratio does not depend on
it much since the UNet dominates). fp32 runs with TF32 matmuls off (PyTorch's default), as `--dtype fp32`
does. Image differences are in uint8 levels against fp32 (eager) with the same seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
PROMPTS = [f"a photo of {i} {c} cubes on a wooden table" for i, c in zip(range(64), ["red", "blue"] * 32)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _diff(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    d = np.abs(a.astype(int) - b.astype(int))
    return {"mean_levels": round(float(d.mean()), 4), "max_levels": int(d.max()),
            "share_differing": round(float((d > 0).mean()), 4)}


def build_model(dry_run: bool, device: str):
    from t2ibench.model import SDXL_VAE_SCALING, OpenClipTextEncoder, build_model
    from t2ibench.variants import get_variant

    if dry_run:
        from tiny_t2i import tiny_text_encoder, tiny_vae

        text, vae = tiny_text_encoder(width=16), tiny_vae()
        spec = get_variant("sdxl").scaled(channels=8, channel_mult=(1, 2), res_blocks=1, transformer_depth=(0, 1),
                                          norm_groups=4, head_dim=8, in_channels=4, sample_size=8, context_dim=16)
    else:
        from diffusers import AutoencoderKL

        torch.manual_seed(0)
        text = OpenClipTextEncoder.from_open_clip_config("ViT-H-14")  # 1024-d tokens, the study's context
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=1024,
                            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=SDXL_VAE_SCALING, force_upcast=True)
        spec = get_variant("sdxl")
    torch.manual_seed(1)
    model = build_model(spec, text_encoder=text, vae=vae, resolution=256, device=device)
    return model.to(device).eval(), spec


def time_sampler(sampler, protocol, batch: int, repeats: int, device: str) -> tuple[float, np.ndarray]:
    from t2ibench.generate import sample_batch

    prompts, seeds = PROMPTS[:batch], list(range(batch))
    sample_batch(sampler, prompts, seeds, protocol)  # warm-up (and compilation, if any)
    best, images = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        images = sample_batch(sampler, prompts, seeds, protocol)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return batch / best, images


def real_size(args, device: str) -> list[dict]:
    from t2ibench.generate import Protocol, T2IModelSampler
    from t2ibench.variants import compute_stats

    model, spec = build_model(args.dry_run, device)
    sampler = T2IModelSampler(model)
    print(f"UNet {spec.name}: {compute_stats(spec).params / 1e9:.3f} B params; text tower "
          f"{sum(p.numel() for p in model.text_encoder.parameters()) / 1e6:.0f} M; VAE "
          f"{sum(p.numel() for p in model.vae.parameters()) / 1e6:.0f} M", flush=True)
    rows = []
    sizes = ((16, 2), (32, 2)) if args.dry_run else ((256, args.batch_256), (1024, args.batch_1024))
    for res, batch in sizes:
        out = {}
        for dtype in ("fp32", "bf16"):
            ips, images = time_sampler(sampler, Protocol(steps=args.steps, resolution=res, dtype=dtype), batch,
                                       args.repeats, device)
            out[dtype] = (ips, images)
        row = {"resolution": res, "batch": batch, "steps": args.steps, "fp32_images_per_s": round(out["fp32"][0], 4),
               "bf16_images_per_s": round(out["bf16"][0], 4), "bf16_over_fp32": round(out["bf16"][0] / out["fp32"][0], 3),
               "bf16_vs_fp32_images": _diff(out["fp32"][1], out["bf16"][1])}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if res == sizes[0][0] and not args.no_compile and not args.dry_run:
            eager_ips, eager = out["bf16"]
            t0 = time.perf_counter()
            compiled = Protocol(steps=args.steps, resolution=res, dtype="bf16", compile=True)
            ips, images = time_sampler(sampler, compiled, batch, args.repeats, device)
            comp = {"resolution": res, "batch": batch, "compile": True, "bf16_eager_images_per_s": round(eager_ips, 4),
                    "bf16_compiled_images_per_s": round(ips, 4), "compiled_over_eager": round(ips / eager_ips, 3),
                    "seconds_incl_compilation": round(time.perf_counter() - t0, 1),
                    "compiled_vs_eager_images": _diff(eager, images)}
            print(json.dumps(comp), flush=True)
            rows.append(comp)
    del model, sampler
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def pipeline_options(args, device: str) -> list[dict]:
    """Tiny pipelines: CPU offload (model, sequential) vs none, and SDXL fp16 vs fp32, on `device`."""
    from builders.pipelines import build_pipeline_dir
    from t2ibench.generate import Protocol, load_sampleable, sample_batch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in ("sdxl", "flux-dev"):
            directory = build_pipeline_dir(family, Path(tmp) / family)
            protocol = Protocol(steps=4, resolution=16)
            base = sample_batch(load_sampleable(directory, device=device), PROMPTS[:2], [0, 1], protocol)
            row = {"family": family}
            for offload in ("model", "sequential") if device.startswith("cuda") else ():
                images = sample_batch(load_sampleable(directory, device=device, offload=offload), PROMPTS[:2], [0, 1],
                                      protocol)
                row[f"offload_{offload}_identical"] = bool(np.array_equal(base, images))
            low = "fp16" if device.startswith("cuda") else "bf16"
            images = sample_batch(load_sampleable(directory, device=device, dtype=low), PROMPTS[:2], [0, 1],
                                  Protocol(steps=4, resolution=16, dtype=low))
            row[f"{low}_vs_fp32_images"] = _diff(base, images)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny models on the CPU, 2 steps: checks the script runs")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-256", type=int, default=8)
    ap.add_argument("--batch-1024", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args()
    if args.dry_run:
        args.steps, args.repeats = 2, 1
        torch.set_num_threads(1)
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: run with --dry-run")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32}
    print(json.dumps(env), flush=True)
    t0 = time.perf_counter()
    rows = {"env": env, "real_size": real_size(args, device), "pipelines": pipeline_options(args, device)}
    rows["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"done in {rows['seconds']} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
