"""t2ibench generation vs diffusers' own StableDiffusionPipeline, same model, prompts and noise, one run.

    python benchmarks/bench_generate.py [--images 8] [--batch 8] [--steps 50] [--channels 64] [--device cpu]

Both sides sample the same randomly initialised SDXL-topology UNet (scaled down), the same tiny
AutoencoderKL and the same text context (t2ibench's open_clip text tower; the pipeline gets it as
prompt_embeds), with DDIM, CFG 7.5 and the per-image seeded noise of the protocol. Prints images/s of
each, the ratio, and whether the uint8 images are identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def build(channels: int, device: str):
    from t2ibench.model import build_model
    from t2ibench.variants import get_variant
    from tiny_t2i import tiny_text_encoder, tiny_vae

    te = tiny_text_encoder(width=64)
    spec = get_variant("sdxl").scaled(channels=channels, transformer_depth=(0, 1, 2), in_channels=4, sample_size=16,
                                      context_dim=64)
    torch.manual_seed(0)
    return build_model(spec, text_encoder=te, vae=tiny_vae(), resolution=32).to(device).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds; the best of each side counts")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from diffusers import StableDiffusionPipeline

    from t2ibench.generate import Protocol, T2IModelSampler, initial_noise, sample_batch

    model = build(args.channels, args.device)
    sampler = T2IModelSampler(model)
    protocol = Protocol(steps=args.steps, resolution=32)
    prompts = [f"a photo of {i} {c} cubes on a table" for i, c in zip(range(args.images), ["red", "blue"] * args.images)]
    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=None, tokenizer=None, unet=model.backbone,
                                   scheduler=model.schedule.ddim(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.vae.config.scaling_factor = model.vae_scaling  # decode with the t2ibench model's scaling
    pipe.set_progress_bar_config(disable=True)
    params = sum(p.numel() for p in model.backbone.parameters())
    print(f"model: UNet {params / 1e6:.2f}M params, latent 4x16x16 -> 32x32 px, {args.steps} DDIM steps, "
          f"CFG 7.5, batch {args.batch}, {args.images} images, device {args.device}, threads {torch.get_num_threads()}")

    def ours():
        out = []
        for s in range(0, args.images, args.batch):
            out.append(sample_batch(sampler, prompts[s:s + args.batch], list(range(s, s + args.batch))[:len(prompts[s:s + args.batch])], protocol))
        return np.concatenate(out)

    def diffusers_pipe():
        out = []
        for s in range(0, args.images, args.batch):
            batch = prompts[s:s + args.batch]
            seeds = list(range(s, s + len(batch)))
            with torch.no_grad():
                cond = model.encode_text(batch)
                uncond = model.encode_text([""] * len(batch))
            latents, _ = initial_noise(sampler.noise_shape(32), seeds)
            images = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=32, width=32,
                          num_inference_steps=args.steps, guidance_scale=7.5, latents=latents.to(args.device),
                          output_type="np").images
            out.append((images * 255).round().astype("uint8"))
        return np.concatenate(out)

    ours(), diffusers_pipe()  # warm-up (allocator, kernels)
    timings = {"t2ibench": float("inf"), "diffusers": float("inf")}
    results = {}
    for _ in range(args.repeats):  # alternate the two and keep each one's best time: robust to a busy machine
        for name, fn in (("t2ibench", ours), ("diffusers", diffusers_pipe)):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            results[name] = fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            timings[name] = min(timings[name], time.perf_counter() - t0)
    a, b = results["t2ibench"], results["diffusers"]
    diff = np.abs(a.astype(int) - b.astype(int))
    for name, t in timings.items():
        print(f"{name:10} {args.images / t:8.2f} images/s  ({t:.2f} s)")
    print(f"ratio t2ibench/diffusers: {timings['diffusers'] / timings['t2ibench']:.3f}x")
    print(f"images identical: {bool(np.array_equal(a, b))} (max |diff| {diff.max()}, "
          f"{(diff > 0).mean() * 100:.4f}% of values differ)")


if __name__ == "__main__":
    main()
