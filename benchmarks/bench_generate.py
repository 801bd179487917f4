"""t2ibench generation vs each pipeline's own call, per family, same model, prompts and seeds, one run.

    python benchmarks/bench_generate.py [--families sd,sdxl,...,t2ibench] [--images 8] [--batch 4] [--steps 10]

For each diffusers family (tiny random pipelines of tests/builders/pipelines.py, saved with
save_pretrained and loaded through `--ckpt`'s code path) it times t2ibench's `generate` against the
pipeline's own batched call `pipe(prompts, generator=[torch.Generator().manual_seed(s) ...])` with the
scheduler and guidance t2ibench chose, and prints images/s of each, their ratio and whether the uint8
images are identical. It then samples the same images in bf16 and prints how far they are from fp32
(mean and max |difference| in uint8 levels, share of values that differ); with `--compile`, also the
compiled denoiser's speed and images against eager.

`t2ibench` is t2ibench's own checkpoint format (a scaled-down SDXL-topology UNet, open_clip text tower,
tiny VAE; with `--real-size`, the study's full `sdxl` UNet on a 4x32x32 latent) against diffusers'
StableDiffusionPipeline fed the same text context and noise, in fp32 and under bf16 autocast. It also
times t2ibench with its cross-attention K/V reuse turned off (same images), which is what that reuse
gives.
Timings: alternating rounds, best of `--repeats` per side (robust to a busy machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PROMPTS = [f"a photo of {i} {c} cubes on a table" for i, c in
           zip(range(64), ["red", "blue", "green", "yellow"] * 16)]


def _best(fns: dict, repeats: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    for fn in fns.values():  # warm-up (allocator, kernels)
        fn()
    timings, results = {k: float("inf") for k in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            timings[name] = min(timings[name], time.perf_counter() - t0)
    return timings, results


def _diff(a: np.ndarray, b: np.ndarray) -> str:
    d = np.abs(a.astype(int) - b.astype(int))
    return f"mean {d.mean():.3f} max {d.max()} levels, {(d > 0).mean() * 100:.2f}% of values differ"


def _compiled(run, protocol, eager: np.ndarray, eager_seconds: float) -> str:
    """--compile: first call (compilation included), then a timed call; images against eager fp32."""
    t0 = time.perf_counter()
    run(protocol)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = run(protocol)
    again = time.perf_counter() - t0
    return (f"compiled: first call {first:.1f} s (compilation), then {eager_seconds / again:.3f}x eager speed; "
            f"images vs eager: {_diff(eager, images)}")


def bench_family(family: str, args, workdir: Path) -> dict:
    import diffusers

    from builders.pipelines import build_pipeline_dir
    from t2ibench.generate import Protocol, load_sampleable, sample_batch

    res = 32 if family == "sana" else 16
    directory = build_pipeline_dir(family, workdir / family)
    model = load_sampleable(directory)
    protocol = Protocol(steps=args.steps, resolution=res)
    record = model.sampling(protocol)
    pipe = diffusers.DiffusionPipeline.from_pretrained(directory)
    pipe.scheduler = getattr(diffusers, record["scheduler"]["class"]).from_config(record["scheduler"]["config"])
    pipe.set_progress_bar_config(disable=True)
    prompts = PROMPTS[:args.images]
    batches = [list(range(s, min(s + args.batch, args.images))) for s in range(0, args.images, args.batch)]

    def ours(m=model, p=protocol):
        return np.concatenate([sample_batch(m, [prompts[i] for i in b], b, p) for b in batches])

    def theirs():
        out = []
        for b in batches:
            gens = [torch.Generator().manual_seed(i) for i in b]
            images = pipe([prompts[i] for i in b], generator=gens, output_type="np", **record["call"]).images
            out.append((images * 255).round().astype("uint8"))
        return np.concatenate(out)

    timings, results = _best({"t2ibench": ours, "pipeline": theirs}, args.repeats)
    bf16 = load_sampleable(directory, dtype="bf16")
    low = ours(bf16, Protocol(steps=args.steps, resolution=res, dtype="bf16"))
    row = {"family": family, "pipeline": record["pipeline"], "scheduler": record["scheduler"]["class"],
           "guidance": record["guidance"]["kind"], "timings": timings, "results": results,
           "bf16": _diff(results["t2ibench"], low)}
    if args.compile:
        compiled_model = load_sampleable(directory)
        row["compile"] = _compiled(lambda p: ours(compiled_model, p),
                                   Protocol(steps=args.steps, resolution=res, compile=True), results["t2ibench"],
                                   timings["t2ibench"])
    return row


def bench_own(args) -> dict:
    """t2ibench's own checkpoint format against StableDiffusionPipeline given the same context and noise,
    in fp32 and under bf16 autocast; also t2ibench without its cross-attention K/V reuse."""
    import contextlib

    from diffusers import StableDiffusionPipeline

    import t2ibench.cross_attention_cache as kv
    from t2ibench.generate import Protocol, T2IModelSampler, initial_noise, sample_batch
    from t2ibench.model import build_model
    from t2ibench.variants import get_variant
    from tiny_t2i import tiny_text_encoder, tiny_vae

    if args.real_size:  # the study's sdxl UNet (random weights) on the 256-px protocol's 4x32x32 latent
        spec = get_variant("sdxl")
    else:
        spec = get_variant("sdxl").scaled(channels=32, transformer_depth=(0, 1, 2), in_channels=4, sample_size=16,
                                          context_dim=64)
    torch.manual_seed(0)
    vae = tiny_vae()
    res = spec.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    model = build_model(spec, text_encoder=tiny_text_encoder(width=spec.context_dim), vae=vae, resolution=res).eval()
    sampler = T2IModelSampler(model)
    protocol = Protocol(steps=args.steps, resolution=res)
    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=None, tokenizer=None, unet=model.backbone,
                                   scheduler=model.schedule.ddim(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.vae.config.scaling_factor = model.vae_scaling  # decode with the t2ibench model's scaling
    pipe.set_progress_bar_config(disable=True)
    prompts = PROMPTS[:args.images]
    batches = [list(range(s, min(s + args.batch, args.images))) for s in range(0, args.images, args.batch)]

    def ours(p=protocol):
        return np.concatenate([sample_batch(sampler, [prompts[i] for i in b], b, p) for b in batches])

    def ours_without_reuse(p=protocol):
        with kv.disabled():
            return ours(p)

    def theirs(dtype="fp32"):
        out = []
        low = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
        for b in batches:
            with torch.no_grad():
                cond = model.encode_text([prompts[i] for i in b])
                uncond = model.encode_text([""] * len(b))
            latents, _ = initial_noise(sampler.noise_shape(res), b)
            with low:
                images = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=res, width=res,
                              num_inference_steps=args.steps, guidance_scale=7.5, latents=latents,
                              output_type="np").images
            out.append((images * 255).round().astype("uint8"))
        return np.concatenate(out)

    timings, results = _best({"t2ibench": ours, "pipeline": theirs, "no_reuse": ours_without_reuse}, args.repeats)
    assert np.array_equal(results["t2ibench"], results["no_reuse"]), "K/V reuse changed the images"
    reuse = (f"without K/V reuse {args.images / timings['no_reuse']:.3f} img/s: reuse gives "
             f"{timings['no_reuse'] / timings['t2ibench']:.3f}x at identical images")
    if args.real_size:  # bf16 autocast is emulated on most CPUs: minutes per image at this size
        return {"family": "t2ibench sdxl", "pipeline": "StableDiffusionPipeline (same UNet/VAE/context)",
                "scheduler": "DDIMScheduler", "guidance": "cfg", "timings": timings, "results": results,
                "bf16": "not run (--real-size)", "extra": reuse}
    low = ours(Protocol(steps=args.steps, resolution=res, dtype="bf16"))
    row = {"family": "t2ibench" + (" sdxl" if args.real_size else ""),
           "pipeline": "StableDiffusionPipeline (same UNet/VAE/context)",
           "scheduler": "DDIMScheduler", "guidance": "cfg", "timings": timings, "results": results,
           "bf16": _diff(results["t2ibench"], low),
           "extra": f"{reuse}; bf16 vs the pipeline under bf16 autocast: {_diff(low, theirs('bf16'))}"}
    if args.compile:
        row["compile"] = _compiled(ours, Protocol(steps=args.steps, resolution=res, compile=True), results["t2ibench"],
                                   timings["t2ibench"])
    return row


def main() -> None:
    from builders.pipelines import FAMILIES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join([*FAMILIES, "t2ibench"]))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2, help="timed rounds; the best of each side counts")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--compile", action="store_true", help="also time --compile and compare its images with eager")
    ap.add_argument("--real-size", action="store_true",
                    help="the t2ibench family with the study's full-size sdxl UNet (2.6B, latent 4x32x32); slow on a CPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    print(f"{args.images} images, batch {args.batch}, {args.steps} steps, CPU, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}")
    print(f"{'family':13} {'pipeline class':27} {'scheduler':32} {'guidance':9} {'t2ibench img/s':>14} "
          f"{'pipeline img/s':>14} {'ratio':>6}  identical (max |diff|)  bf16 vs fp32")
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            r = bench_own(args) if family == "t2ibench" else bench_family(family, args, Path(tmp))
            t, (a, b) = r["timings"], (r["results"]["t2ibench"], r["results"]["pipeline"])
            same = bool(np.array_equal(a, b))
            print(f"{r['family']:13} {r['pipeline'][:27]:27} {r['scheduler']:32} {r['guidance']:9} "
                  f"{args.images / t['t2ibench']:14.4g} {args.images / t['pipeline']:14.4g} "
                  f"{t['pipeline'] / t['t2ibench']:6.3f}  {same!s:9} ({np.abs(a.astype(int) - b.astype(int)).max()})"
                  f"           {r['bf16']}", flush=True)
            for extra in ("extra", "compile"):
                if extra in r:
                    print(f"{'':13} {r[extra]}", flush=True)


if __name__ == "__main__":
    main()
