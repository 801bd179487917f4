"""Feature extraction for the distribution metrics: images/s of t2ibench's cached, batched path
against each reference's own loop, in one run, on the same image files and weights.

    python benchmarks/bench_features.py --dry-run                    # tiny CLIP/DINOv2, 4 images (CI)
    python benchmarks/bench_features.py --size tiny --n 32           # tiny CLIP/DINOv2, real-size Inception
    python benchmarks/bench_features.py --size real --n 512 --device cuda --batch-size 64

Both sides read the same PNG files (decoding counts on both sides) and must give the same features
(checked before any time is reported). Sides:
  * t2ibench cold: `FeatureSource.of_files` on an empty cache: decode, hash, resize on a thread pool,
    batches of one input size, write the cache;  t2ibench warm: the same call again (a cache hit).
  * inception: torch-fidelity's own folder loop (`extract_featuresdict_from_input_id`, same batch size).
  * dinov2-vit-l14: dgm-eval's loop: a DataLoader over the files with its torchvision transform
    (Resize((224, 224), BICUBIC), ToTensor, Normalize), one worker, the same batch size.
  * clip-vit-l14-336: the reference (google-research/cmmd) is JAX, with no PyTorch loop to run; the
    baseline is the same model called once per image (what a plain per-image script does).
`--size real` builds the published architectures (CLIP ViT-L/14@336, DINOv2 ViT-L/14) with random
weights; compute then dominates as with the real checkpoints. Timings are the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ALL = ("inception", "clip-vit-l14-336", "dinov2-vit-l14")


def make_files(folder: Path, n: int, size: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) // 2)
        arr[i % (size // 2):, : size // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
        paths.append(folder / f"{i:05d}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def build_weights(name: str, size: str, folder: Path) -> Path:
    if name == "inception":
        from tiny_scorers import build_inception_weights

        return build_inception_weights(folder / "inception.pth")
    if size == "tiny":
        from builders.distribution_models import (
            build_tiny_clip_vision,
            build_tiny_dinov2,
        )

        return build_tiny_clip_vision(folder / "clip") if name.startswith("clip") else build_tiny_dinov2(folder / "dino")
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        Dinov2Config,
        Dinov2Model,
    )

    if name.startswith("clip"):  # openai/clip-vit-large-patch14-336's vision tower
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
            image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu"))
        path = folder / "clip"
    else:  # facebook/dinov2-large
        model = Dinov2Model(Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                         mlp_ratio=4, image_size=518, patch_size=14, layerscale_value=1e-5))
        path = folder / "dino"
    model.save_pretrained(path)
    return path


def baseline(name: str, weights: Path, files: list[Path], device: str, batch_size: int):
    """The reference's own loop; returns (N, dim) float32 features on the CPU."""
    import numpy as np
    import torch
    from PIL import Image

    if name == "inception":
        from torch_fidelity.utils import (
            create_feature_extractor,
            extract_featuresdict_from_input_id,
        )

        cuda = device.startswith("cuda")
        ex = create_feature_extractor("inception-v3-compat", ["2048"], cuda=cuda, verbose=False,
                                      feature_extractor_weights_path=str(weights))
        return extract_featuresdict_from_input_id(1, ex, input1=str(files[0].parent), cuda=cuda, batch_size=batch_size,
                                                  save_cpu_ram=True, verbose=False)["2048"].float().cpu()
    if name == "dinov2-vit-l14":
        import torchvision.transforms as TF
        from transformers import Dinov2Model

        model = baseline.models.setdefault(name, Dinov2Model.from_pretrained(str(weights)).to(device).eval())
        tf = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor(),
                         TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))])

        class Files(torch.utils.data.Dataset):
            def __len__(self):
                return len(files)

            def __getitem__(self, i):
                return tf(Image.open(files[i]).convert("RGB")).float()

        out = []
        for batch in torch.utils.data.DataLoader(Files(), batch_size=batch_size, num_workers=1):
            with torch.no_grad():
                out.append(model(pixel_values=batch.to(device)).pooler_output.float().cpu())
        return torch.cat(out)
    from transformers import CLIPVisionModelWithProjection

    from t2ibench.metrics.features import CLIP_MEAN, CLIP_STD, center_crop_resize

    model = baseline.models.setdefault(name, CLIPVisionModelWithProjection.from_pretrained(str(weights)).to(device).eval())
    size = model.config.image_size
    out = []
    for f in files:
        x = np.asarray(center_crop_resize(Image.open(f), size)).astype(np.float32) / 255.0
        x = (x - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
        with torch.no_grad():
            e = model(pixel_values=torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None].to(device)).image_embeds
        out.append(torch.nn.functional.normalize(e.float(), dim=-1).cpu())
    return torch.cat(out)


baseline.models = {}


def best_of(repeat: int, fn, sync):
    best, out = float("inf"), None
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--extractors", default=",".join(ALL))
    ap.add_argument("--dry-run", action="store_true", help="tiny models, 4 images, one repeat (for CI)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.size, args.n, args.repeat, args.image_size, args.batch_size = "tiny", 4, 1, 64, 4
    import torch

    from t2ibench.metrics import features

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    names = [n.strip() for n in args.extractors.split(",") if n.strip()]
    print(f"device={args.device} size={args.size} n={args.n} image={args.image_size}px batch={args.batch_size} "
          f"threads={torch.get_num_threads()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = make_files(tmp / "images", args.n, args.image_size)
        for name in names:
            weights = build_weights(name, args.size, tmp / "w")
            resize = "torch-fidelity" if name == "inception" else None  # the library's own protocol

            runs = iter(range(1 << 30))

            def ours(name=name, weights=weights, resize=resize, runs=runs):
                # a fresh cache each run: cold extraction
                src = features.feature_source(name, weights, resize=resize, device=args.device,
                                              cache_dir=tmp / f"cache-{name}-{next(runs)}", batch_size=args.batch_size)
                return src.of_files(files)[0], src

            ref, t_ref = best_of(args.repeat, lambda name=name, weights=weights: baseline(
                name, weights, files, args.device, args.batch_size), sync)
            (got, src), t_cold = best_of(args.repeat, ours, sync)
            _, t_warm = best_of(args.repeat, lambda src=src: src.of_files(files), sync)
            worst = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
            if worst > 1e-3:
                raise SystemExit(f"{name}: t2ibench features differ from the reference loop (max rel {worst:.2e})")
            n = len(files)
            rows.append((name, n / t_ref, n / t_cold, n / t_warm, worst))
            print(f"{name:17} reference {n / t_ref:8.1f} img/s   t2ibench cold {n / t_cold:8.1f} img/s "
                  f"({t_ref / t_cold:5.2f}x)   warm cache {n / t_warm:9.1f} img/s ({t_ref / t_warm:7.1f}x)   "
                  f"max rel diff {worst:.1e}", flush=True)
            features._LOADED.clear()
            baseline.models.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
