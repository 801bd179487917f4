"""The GPU benchmark behind `benchmarks/gpu.sh`: one JSON of training and sampling speed against the limit.

    benchmarks/gpu.sh [--out gpu.json]          # one GPU, bf16, about 5 minutes on an H100/H200
    benchmarks/gpu.sh --dry-run                 # tiny sizes on the CPU in well under a minute (CI)

Random weights everywhere (no downloads), latents and text embeddings drawn once up front ("precomputed"),
256 px (latent 4x32x32), 77 text tokens of width 1024, as the paper's protocol. JSON fields:

- `peak`: {tflops, source} -- a dense bf16 GEMM measured in this run (8192^3 on a GPU); every `mfu` below
  is achieved / this peak.
- `train.<variant>`: {batch, samples_per_s, tflops_per_s, mfu, step_s, peak_memory_gib} for `sdxl`,
  `sdxl_td4_4` and `pixart_h1152_d28`: the trainer's step (bf16 autocast, fp32 master weights, fused
  AdamW, MSE on the noise) at the largest batch of 8, 16, ..., --max-batch that fits. FLOPs are the
  trainer's own count (3 x forward FLOPs per sample, `t2ibench.train.flops`).
- `generate`: {images, batch, steps, cfg, t2ibench_images_per_s, diffusers_images_per_s, ratio,
  max_abs_diff, identical, kv_reuse_speedup, kv_reuse_identical} -- `sdxl` at 256 px, DDIM 50, CFG 7.5,
  bf16 autocast (fp32 weights), random OpenCLIP-H-shaped text tower and SDXL-VAE-shaped decoder:
  t2ibench's sampler (`t2ibench.generate.sample_batch`, protocol dtype bf16) against diffusers'
  StableDiffusionPipeline called under the same autocast on the same UNet, text context and initial
  noise; `kv_reuse_speedup` is t2ibench without / with its cross-attention K/V reuse.
- `forward`: {baseline, candidate, time_ratio, gmacs_ratio_full, gmacs_ratio_paper, paper_gmacs_ratio}
  -- one bf16 forward pass of `sdxl_td4_4` against `sdxl` at batch --forward-batch (the paper: 143 vs
  198 GMACs, 28% less compute).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from t2ibench.hardware import measure_gemm_peak  # noqa: E402
from t2ibench.variants import VariantSpec, compute_stats, get_variant  # noqa: E402

TRAIN_VARIANTS = ("sdxl", "sdxl_td4_4", "pixart_h1152_d28")


def spec_for(name: str, dry: bool) -> VariantSpec:
    spec = get_variant(name)
    if not dry:
        return spec
    if spec.kind == "pixart":
        return spec.scaled(hidden=32, depth=2, heads=2, sample_size=8, context_dim=32)
    return spec.scaled(channels=16, transformer_depth=(0, 1, 1), norm_groups=8, head_dim=8, sample_size=8,
                       context_dim=32)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_speed(spec: VariantSpec, device: torch.device, dtype: torch.dtype, batches: list[int], steps: int) -> dict:
    """The trainer's step at the largest batch that fits: samples/s, FLOP/s and memory."""
    from t2ibench.train.flops import account_for

    flops = account_for(spec).flops_per_sample
    model = spec.build(device=device, seed=0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=8e-5, fused=True)

    def step(batch: int) -> None:
        x, t, ctx = spec.dummy_inputs(batch, device=device)
        t = torch.randint(0, 1000, (batch,), device=device)
        with torch.autocast(device.type, dtype=dtype):
            pred = spec.denoise(model, x, t, ctx)
        torch.nn.functional.mse_loss(pred.float(), torch.randn_like(pred, dtype=torch.float32)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    fits = None
    for batch in batches:  # the largest batch that fits: each is tried once, smallest first
        try:
            step(batch)
            sync(device)
            fits = batch
        except torch.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if fits is None:
        raise SystemExit(f"{spec.name}: batch {batches[0]} does not fit")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step(fits)  # warm-up at the chosen size
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(fits)
    sync(device)
    step_s = (time.perf_counter() - start) / steps
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    model = opt = None  # free the memory (the step closure holds the cells, so not `del`)
    return {"batch": fits, "samples_per_s": fits / step_s, "tflops_per_s": fits * flops / step_s / 1e12,
            "step_s": step_s, "peak_memory_gib": memory, "flops_per_sample": flops}


def forward_ratio(baseline: str, candidate: str, device: torch.device, dtype: torch.dtype, batch: int,
                  reps: int, dry: bool) -> dict:
    times = {}
    for name in (baseline, candidate):
        spec = spec_for(name, dry)
        model = spec.build(device=device, dtype=dtype, seed=0).eval()
        x, t, ctx = spec.dummy_inputs(batch, device=device, dtype=dtype)
        best = float("inf")
        with torch.inference_mode():
            for i in range(reps + 2):
                sync(device)
                start = time.perf_counter()
                spec.denoise(model, x, t, ctx)
                sync(device)
                if i >= 2:
                    best = min(best, time.perf_counter() - start)
        times[name] = best
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    base, cand = compute_stats(get_variant(baseline)), compute_stats(get_variant(candidate))
    return {"baseline": baseline, "candidate": candidate, "batch": batch,
            "time_ratio": times[candidate] / times[baseline],
            "gmacs_ratio_full": cand.gmacs / base.gmacs, "gmacs_ratio_paper": cand.gmacs_paper / base.gmacs_paper,
            "paper_gmacs_ratio": 143 / 198}


def generation(device: torch.device, dtype: torch.dtype, images: int, batch: int, steps: int, dry: bool) -> dict:
    """t2ibench's sampler vs diffusers' StableDiffusionPipeline on the same UNet, context and noise."""
    import numpy as np
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from t2ibench.generate import Protocol, T2IModelSampler, initial_noise, sample_batch
    from t2ibench.model import OpenClipTextEncoder, build_model

    spec = spec_for("sdxl", dry)
    torch.manual_seed(0)
    if dry:
        text = OpenClipTextEncoder("tiny", {"context_length": 77, "vocab_size": 49408, "width": spec.context_dim,
                                            "heads": 2, "layers": 2}, spec.context_dim)
        vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=1,
                            norm_num_groups=4, scaling_factor=0.13025)
        resolution = spec.sample_size * 2
    else:
        text = OpenClipTextEncoder.from_open_clip_config("ViT-H-14")
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            block_out_channels=(128, 256, 512, 512), scaling_factor=0.13025)
        resolution = 256
    model = build_model(spec, text_encoder=text, vae=vae, resolution=resolution).to(device).eval()
    sampler = T2IModelSampler(model)
    # t2ibench's own bf16 protocol (fp32 weights under autocast); diffusers' pipeline runs under the same
    # autocast on the same modules
    protocol = Protocol(steps=steps, resolution=resolution, dtype="bf16" if dtype == torch.bfloat16 else "fp32")
    prompts = [f"a photo of {i} red cubes on a table" for i in range(images)]
    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=None, tokenizer=None, unet=model.backbone,
                                   scheduler=model.schedule.ddim(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.vae.config.scaling_factor = model.vae_scaling
    pipe.set_progress_bar_config(disable=True)

    def ours():
        out = []
        for s in range(0, images, batch):
            chunk = prompts[s:s + batch]
            out.append(sample_batch(sampler, chunk, list(range(s, s + len(chunk))), protocol))
        return np.concatenate(out)

    def theirs():
        out = []
        for s in range(0, images, batch):
            chunk = prompts[s:s + batch]
            with torch.no_grad():
                cond, uncond = model.encode_text(chunk), model.encode_text([""] * len(chunk))
            latents, _ = initial_noise(sampler.noise_shape(resolution), list(range(s, s + len(chunk))))
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                result = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=resolution, width=resolution,
                              num_inference_steps=steps, guidance_scale=7.5, latents=latents.to(device),
                              output_type="np").images
            out.append((result * 255).round().astype("uint8"))
        return np.concatenate(out)

    def ours_without_reuse():
        from t2ibench.cross_attention_cache import disabled

        with disabled():
            return ours()

    timings, results = {"t2ibench": float("inf"), "diffusers": float("inf"), "no_reuse": float("inf")}, {}
    ours(), theirs()  # warm-up
    for _ in range(2):  # alternate; each side's best time counts
        for name, fn in (("t2ibench", ours), ("diffusers", theirs), ("no_reuse", ours_without_reuse)):
            sync(device)
            start = time.perf_counter()
            results[name] = fn()
            sync(device)
            timings[name] = min(timings[name], time.perf_counter() - start)
    diff = np.abs(results["t2ibench"].astype(int) - results["diffusers"].astype(int))
    return {"images": images, "batch": batch, "steps": steps, "cfg": 7.5, "resolution": resolution,
            "t2ibench_images_per_s": images / timings["t2ibench"], "diffusers_images_per_s": images / timings["diffusers"],
            "ratio": timings["diffusers"] / timings["t2ibench"], "max_abs_diff": int(diff.max()),
            "identical": bool(diff.max() == 0),
            "kv_reuse_speedup": timings["no_reuse"] / timings["t2ibench"],
            "kv_reuse_identical": bool(np.array_equal(results["t2ibench"], results["no_reuse"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks the script, not speed)")
    ap.add_argument("--out", default="gpu.json")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per variant")
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--forward-batch", type=int, default=8)
    ap.add_argument("--only", default="train,generate,forward", help="comma-separated parts to run")
    args = ap.parse_args()
    dry = args.dry_run
    device = torch.device("cpu" if dry or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not dry:
        raise SystemExit("no GPU here: run with --dry-run, or on a CUDA machine")
    dtype = torch.float32 if dry else torch.bfloat16  # CPU bf16 is emulated and slow: the dry run checks code
    parts = set(args.only.split(","))
    peak = measure_gemm_peak(device, dtype, n=256 if dry else None)
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
                    "torch": torch.__version__, "dry_run": dry, "peak": {"tflops": peak.tflops, "source": peak.source}}
    print(f"peak {peak.tflops:.1f} TFLOP/s ({peak.source})", flush=True)
    if "train" in parts:
        report["train"] = {}
        batches = [2] if dry else [b for b in (8, 16, 32, 64, 128, 256, 512) if b <= args.max_batch]
        for name in TRAIN_VARIANTS:
            r = train_speed(spec_for(name, dry), device, dtype, batches, 2 if dry else args.steps)
            r["mfu"] = peak.fraction(r["tflops_per_s"])
            report["train"][name] = r
            print(f"train {name}: batch {r['batch']}, {r['samples_per_s']:.1f} samples/s, "
                  f"{r['tflops_per_s']:.1f} TFLOP/s, MFU {100 * r['mfu']:.1f}%, {r['peak_memory_gib']:.1f} GiB", flush=True)
    if "generate" in parts:
        # bf16 in the dry run too: CPU autocast is slow, but at these sizes it checks the bf16 identity
        g = generation(device, torch.bfloat16, 2 if dry else args.images, 2 if dry else args.gen_batch, 3 if dry else 50, dry)
        report["generate"] = g
        print(f"generate sdxl: t2ibench {g['t2ibench_images_per_s']:.2f} images/s, diffusers "
              f"{g['diffusers_images_per_s']:.2f} images/s, ratio {g['ratio']:.3f}, max |diff| {g['max_abs_diff']}", flush=True)
    if "forward" in parts:
        f = forward_ratio("sdxl", "sdxl_td4_4", device, dtype, 1 if dry else args.forward_batch, 1 if dry else 10, dry)
        report["forward"] = f
        print(f"forward sdxl_td4_4/sdxl: time {f['time_ratio']:.3f}, GMACs full {f['gmacs_ratio_full']:.3f}, "
              f"paper convention {f['gmacs_ratio_paper']:.3f} (paper 143/198 = {f['paper_gmacs_ratio']:.3f})", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
