"""Training-step throughput: t2ibench's loop vs a diffusers-style step, with and without cached latents.

The diffusers-style step is what diffusers' examples/text_to_image/train_text_to_image.py does every
step: torchvision transforms in a DataLoader, tokenize, run the frozen text encoder, encode with the
frozen VAE and sample the posterior, add noise, backbone forward/backward, clip, AdamW. It runs on the
same backbone, frozen parts, data, batch and precision as the t2ibench runs, in the same process.

    python benchmarks/bench_train.py                    # scaled-down SDXL, tiny frozen parts (fast)
    python benchmarks/bench_train.py --frozen study     # real OpenCLIP-H text tower + SDXL VAE
                                                        # architectures (random weights), 256 px
    python benchmarks/bench_train.py --compile          # also the torch.compile'd backbone

Prints samples/s of each, the ratios, the backbone's achieved FLOP/s (the trainer's count: 3 x forward
FLOPs per sample) and its fraction of this machine's fp32 GEMM peak, measured in the same run.
Timings exclude start-up, the one-off cache build and compilation.

Methods: the diffusers-style step (baseline); t2ibench's reference step (frozen encoders every step,
torch's per-tensor AdamW: the trainer before the fast defaults); t2ibench's defaults (latent/text cache,
fused AdamW); optionally the defaults with `train.compile=true`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_data(root: Path, n: int, size: int) -> Path:
    from PIL import Image, ImageDraw

    root.mkdir(parents=True, exist_ok=True)
    colors = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 30)]
    for i in range(n):
        im = Image.new("RGB", (size, size), (255, 255, 255))
        d = ImageDraw.Draw(im)
        s = size // 3
        x, y = (i * 7) % (size - s), (i * 11) % (size - s)
        (d.ellipse if i % 2 else d.rectangle)([x, y, x + s, y + s], fill=colors[i % 4])
        im.save(root / f"{i:05d}.png")
        (root / f"{i:05d}.txt").write_text(f"a {['red', 'green', 'blue', 'yellow'][i % 4]} {['square', 'circle'][i % 2]}")
    return root


def study_weights(root: Path) -> Path:
    """Random weights of the study's frozen architectures, in their real formats, under T2IBENCH_WEIGHTS."""
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from t2ibench.model import OPENCLIP_H, SDXL_VAE, OpenClipTextEncoder

    text = root / OPENCLIP_H.repo_id / OPENCLIP_H.filename
    if not text.is_file():
        text.parent.mkdir(parents=True, exist_ok=True)
        enc = OpenClipTextEncoder.from_open_clip_config("ViT-H-14")
        save_file({k: v.contiguous() for k, v in enc.tower.state_dict().items() if k != "attn_mask"}, str(text))
    vae_dir = root / SDXL_VAE.repo_id
    if not (vae_dir / "config.json").is_file():
        AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                      down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                      block_out_channels=(128, 256, 512, 512), sample_size=1024,
                      scaling_factor=0.13025).save_pretrained(vae_dir)
    return root


def diffusers_style(config, steps: int, warmup: int) -> float:
    """samples/s of the train_text_to_image.py step on the run's model and data."""
    import torch.nn.functional as F
    from accelerate import Accelerator
    from PIL import Image
    from torchvision import transforms

    from t2ibench.train.components import new_run_model

    accelerator = Accelerator(mixed_precision=config.train.mixed_precision, cpu=config.train.cpu)
    model = new_run_model(config)
    unet, vae, text_encoder = model.backbone, model.vae, model.text_encoder
    res = config.resolution
    tf = transforms.Compose([transforms.Resize(res, interpolation=transforms.InterpolationMode.BILINEAR),
                             transforms.CenterCrop(res), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    files = sorted(Path(config.data.path).glob("*.png"))

    class Folder(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return {"pixel_values": tf(Image.open(files[i]).convert("RGB")),
                    "input_ids": text_encoder.tokenize([files[i].with_suffix(".txt").read_text()])[0]}

    loader = torch.utils.data.DataLoader(Folder(), batch_size=config.train.micro_batch, shuffle=True, drop_last=True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    unet, optimizer, loader = accelerator.prepare(unet, optimizer, loader)
    if vae is not None:
        vae.to(accelerator.device)
    text_encoder.to(accelerator.device)
    noise_scheduler = model.schedule.ddpm()
    unet.train()
    done, start = 0, None
    while done < warmup + steps:
        for batch in loader:
            if done == warmup:
                start = time.perf_counter()
            if done == warmup + steps:
                break
            with torch.no_grad():
                if vae is not None:
                    latents = vae.encode(batch["pixel_values"]).latent_dist.sample() * model.vae_scaling
                else:
                    latents = batch["pixel_values"]
                encoder_hidden_states = text_encoder(batch["input_ids"])
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                      device=latents.device).long()
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            pred = model.predict_noise(noisy, timesteps, encoder_hidden_states, backbone=unet)
            loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(unet.parameters(), config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
            done += 1
    return steps * config.train.micro_batch / (time.perf_counter() - start)


def t2ibench_rate(config, steps: int, warmup: int, out: Path, overrides: dict) -> float:
    from t2ibench.train.config import apply_overrides
    from t2ibench.train.loop import train

    # The last logging window covers exactly the `steps` measured steps.
    assert warmup == steps, "the measured window is one logging interval"
    config = apply_overrides(config, {"out": str(out), "train.steps": warmup + steps, "log.every": steps,
                                      "checkpoint.every": 10**9, **overrides})
    return train(config).samples_per_s


def flops_per_sample(config) -> float:
    """The trainer's own count for this backbone (what its MFU uses)."""
    from t2ibench.train.components import build_model
    from t2ibench.train.flops import account_for
    from t2ibench.variants import VariantSpec

    return account_for(VariantSpec.from_dict(build_model(config).info.variant)).flops_per_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frozen", choices=("tiny", "study"), default="tiny")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="also time the defaults with train.compile=true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from t2ibench.hardware import measure_gemm_peak
    from t2ibench.train.config import RunConfig, apply_overrides

    work = Path(tempfile.mkdtemp(prefix="bench_train."))
    res = 64 if args.frozen == "tiny" else 256
    data = make_data(work / "data", max(4 * args.batch, 32), res)
    common = {"resolution": res, "data.path": str(data), "data.num_workers": 0, "train.global_batch": args.batch,
              "train.micro_batch": args.batch, "train.mixed_precision": "no", "optim.warmup_steps": 0,
              "log.progress": False, "log.tensorboard": False,
              "model.channels": 32, "model.transformer_depth": "0,1,2", "model.norm_groups": 8, "model.head_dim": 32}
    if args.frozen == "tiny":
        common.update({"model.text_encoder": "tiny", "model.vae": "tiny"})
        what = "SDXL topology (channels 32, depth 0,1,2), tiny text encoder (64-d, 2 layers) + tiny VAE, 64 px"
    else:
        os.environ["T2IBENCH_WEIGHTS"] = str(study_weights(work / "weights"))
        what = "SDXL topology (channels 32, depth 0,1,2), OpenCLIP-H text tower + SDXL VAE architectures, 256 px"
    config = apply_overrides(RunConfig(variant="sdxl"), common)
    print(f"bench_train: {what}; batch {args.batch}; {args.steps} timed steps after {args.steps} warm-up; "
          f"median of {args.rounds} rounds; torch threads {torch.get_num_threads()}")
    # Rounds alternate the three methods so a busy machine slows them alike; the median is reported.
    methods = {
        "t2ibench reference step": {"data.cache": False, "train.optimizer_impl": "for-loop"},
        "t2ibench defaults (cache, fused AdamW)": {"data.cache_dir": str(work / "cache")},
    }
    if args.compile:
        methods["t2ibench defaults + compile"] = {"data.cache_dir": str(work / "cache"), "train.compile": True}
    runs: dict[str, list[float]] = {}
    for r in range(args.rounds):
        measured = {"diffusers-style step": diffusers_style(config, args.steps, args.steps)}
        for i, (name, overrides) in enumerate(methods.items()):
            measured[name] = t2ibench_rate(config, args.steps, args.steps, work / f"run{r}_{i}", overrides)
        for name, rate in measured.items():
            runs.setdefault(name, []).append(rate)
    rates = {name: sorted(v)[len(v) // 2] for name, v in runs.items()}
    peak = measure_gemm_peak("cpu", torch.float32)
    flops = flops_per_sample(config)
    print(f"  peak: {peak.tflops * 1e3:.0f} GFLOP/s ({peak.source}); backbone {flops / 1e9:.2f} GFLOP per training sample")
    base = rates["diffusers-style step"]
    for name, rate in rates.items():
        spread = ", ".join(f"{v:.2f}" for v in runs[name])
        achieved = rate * flops / 1e12
        print(f"  {name:40s} {rate:8.2f} samples/s  x{rate / base:.2f} vs diffusers-style  "
              f"{achieved * 1e3:6.1f} GFLOP/s = {100 * peak.fraction(achieved):4.1f}% of peak  (rounds: {spread})")


if __name__ == "__main__":
    main()
