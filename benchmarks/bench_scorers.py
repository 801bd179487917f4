"""Throughput of t2ibench's batched scorers against each library's own per-image loop, in one run.

    python benchmarks/bench_scorers.py                     # tiny models, 32 images, batch 32
    python benchmarks/bench_scorers.py --size real --n 8   # real-size architectures (random weights)

Both sides get the same images and prompts and the same weights; per-item numbers are checked equal
(1e-4 relative) before timing is reported. Baselines:
  * imagereward: `ImageReward.score(prompt, image)` per image (the library's entry point; model loaded once).
  * hpsv2:       `hpsv2.img_score.score(image, prompt, cp=checkpoint)` per image (the library's entry point;
                 it reloads the checkpoint on every call), and, separately, the library's per-image forward
                 without that reload (its model, preprocess and tokenizer, one image at a time).
  * clip:        open_clip encode_image / encode_text + cosine, one image at a time.
  * fid:         torch_fidelity.calculate_metrics on the two folders (already batched: expect ~1x).
Each row also gives the batched path's achieved FLOP/s (torch's FlopCounterMode over one batched scoring
pass, math attention so the attention products are counted) and its fraction of this machine's fp32
peak, a 2048^3 GEMM measured at the start of the same run (MFU).
`--size tiny` uses the tests' tiny models (tests/tiny_scorers.py): per-call overhead dominates there.
`--size real` uses the published architectures (BLIP ViT-L/16 + 12-layer BERT; open_clip ViT-H-14)
with random weights: compute dominates, as it does with the real checkpoints.
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

TEXTS = ["a photo of a cat on a sofa", "a red car parked on a street", "two dogs playing in the snow",
         "a bowl of fruit on a wooden table", "a man riding a horse on the beach", "an empty room with a window",
         "a plate of pasta", "snow on a mountain at sunset"]


REPEAT = 3
PEAK = None  # this machine's measured fp32 GEMM peak (t2ibench.hardware.Peak), set in main()


def flops_of(fn) -> float:
    """FLOPs of one call of `fn`, counted by torch (math SDPA: the counter has no CPU flash formula)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def timed(fn):
    """Best of REPEAT runs: the machine may be shared, and the minimum is the least disturbed run."""
    best = float("inf")
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def check_equal(name, ours, ref):
    worst = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(ours, ref))
    if worst > 1e-4:
        raise SystemExit(f"{name}: batched scores differ from the library's (max rel {worst:.2e})")
    return worst


def report(name, n, t_ours, t_lib, baseline, worst, flops=None):
    mfu = ""
    if flops:
        achieved = flops / t_ours / 1e12
        mfu = f"   batched {achieved * 1e3:6.1f} GFLOP/s = {100 * PEAK.fraction(achieved):4.1f}% of peak"
    print(f"{name:12} n={n:3d}  t2ibench {n / t_ours:7.2f} img/s   {baseline:38} {n / t_lib:7.2f} img/s   "
          f"ratio {t_lib / t_ours:6.2f}x   max rel diff {worst:.1e}{mfu}", flush=True)


def inputs(root: Path, n: int):
    from t2ibench.images import load_image
    from t2ibench.metrics import PromptRecord
    from tiny_scorers import make_images

    images = [load_image(p) for p in make_images(root / "img", n, size=(256, 256), seed=1)]
    prompts = [PromptRecord(f"{i:05d}", TEXTS[i % len(TEXTS)] + f" #{i}") for i in range(n)]
    return images, prompts


def bench_imagereward(root, images, prompts, bs, size):
    from t2ibench.metrics import scorer_class
    from tiny_scorers import build_tiny_imagereward

    if size == "real":
        w = build_tiny_imagereward(root / "ir", vit_width=1024, vit_depth=24, vit_patch=16, text_layers=12,
                                   intermediate_size=3072)
    else:
        w = build_tiny_imagereward(root / "ir")
    scorer = scorer_class("imagereward")(weights={k: w for k in ("imagereward", "med_config", "bert_vocab")})
    scorer.score(images[:2], prompts[:2], batch_size=2)  # warm-up
    ours, t_ours = timed(lambda: [it.value for it in scorer.score(images, prompts, batch_size=bs).per_item])
    lib, t_lib = timed(lambda: [scorer.model.score(p.text, im) for im, p in zip(images, prompts)])
    flops = flops_of(lambda: scorer.score(images, prompts, batch_size=bs))
    report("imagereward", len(images), t_ours, t_lib, "ImageReward.score per image", check_equal("imagereward", ours, lib),
           flops)


def bench_hpsv2(root, images, prompts, bs, size):
    import hpsv2.img_score as img_score
    import torch
    from hpsv2.src.open_clip import create_model_and_transforms, get_tokenizer

    from t2ibench.metrics import scorer_class
    from tiny_scorers import build_tiny_hps

    if size == "real":
        from hpsv2.src.open_clip import create_model

        arch = "ViT-H-14"
        (root / "hps").mkdir(parents=True, exist_ok=True)
        cp = root / "hps" / "HPS_v2_compressed.pt"
        torch.save({"state_dict": create_model(arch, None, precision="fp32", device="cpu").state_dict()}, cp)
    else:
        arch, cp = build_tiny_hps(root / "hps")
    model, _, preprocess_val = create_model_and_transforms(
        arch, None, precision="amp", device="cpu", jit=False, force_quick_gelu=False, force_custom_text=False,
        force_patch_dropout=False, force_image_size=None, pretrained_image=False, image_mean=None, image_std=None,
        light_augmentation=True, aug_cfg={}, output_dict=True, with_score_predictor=False, with_region_predictor=False)
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)  # its cache; skips the laion download
    scorer = scorer_class("hpsv2")(weights={"hps": cp}, arch=arch)
    scorer.score(images[:2], prompts[:2], batch_size=2)
    ours, t_ours = timed(lambda: [it.value for it in scorer.score(images, prompts, batch_size=bs).per_item])
    lib, t_lib = timed(lambda: [float(img_score.score(im, p.text, cp=str(cp))[0]) for im, p in zip(images, prompts)])
    flops = flops_of(lambda: scorer.score(images, prompts, batch_size=bs))
    report("hpsv2", len(images), t_ours, t_lib, "hpsv2.img_score.score per image", check_equal("hpsv2", ours, lib), flops)

    tokenizer = get_tokenizer(arch)

    def forward_only():
        out = []
        with torch.no_grad():
            for im, p in zip(images, prompts):
                o = model(preprocess_val(im).unsqueeze(0), tokenizer([p.text]))
                out.append(float((o["image_features"] @ o["text_features"].T)[0, 0]))
        return out

    lib2, t_lib2 = timed(forward_only)
    report("hpsv2", len(images), t_ours, t_lib2, "its per-image forward, no reload", check_equal("hpsv2", ours, lib2))


def bench_clip(root, images, prompts, bs, size):
    import open_clip
    import torch

    from t2ibench.metrics import scorer_class
    from tiny_scorers import build_tiny_clip

    if size == "real":
        arch, path = "ViT-L-14", root / "clip.bin"
        torch.save(open_clip.create_model(arch, pretrained=None, force_quick_gelu=True).state_dict(), path)
        opts = {"arch": arch, "pretrained": "random", "quick_gelu": True}
    else:
        arch, path = build_tiny_clip(root / "clip")
        opts = {"arch": arch, "pretrained": "tiny"}
    scorer = scorer_class("clip")(weights={"clip": path}, **opts)
    model, preprocess, tok = scorer.model, scorer.preprocess, scorer.tokenizer
    scorer.score(images[:2], prompts[:2], batch_size=2)
    ours, t_ours = timed(lambda: [it.value for it in scorer.score(images, prompts, batch_size=bs).per_item])

    def per_image():
        out = []
        with torch.no_grad():
            for im, p in zip(images, prompts):
                i = model.encode_image(preprocess(im).unsqueeze(0))
                t = model.encode_text(tok([p.text]))
                out.append(float(torch.nn.functional.cosine_similarity(i, t)[0]))
        return out

    lib, t_lib = timed(per_image)
    flops = flops_of(lambda: scorer.score(images, prompts, batch_size=bs))
    report("clip", len(images), t_ours, t_lib, "open_clip encode + cosine per image", check_equal("clip", ours, lib), flops)


def bench_fid(root, images, prompts, bs, size, n_fid):
    import torch_fidelity

    from t2ibench.images import list_images, load_image
    from t2ibench.metrics import scorer_class
    from tiny_scorers import build_inception_weights, make_images

    w = build_inception_weights(root / "inception.pth")
    make_images(root / "fid_fake", n_fid, size=(256, 256), seed=2)
    make_images(root / "fid_real", n_fid, size=(256, 256), seed=3)
    fake = [load_image(p) for p in list_images(root / "fid_fake")]
    runs = iter(range(1 << 30))

    def ours_cold():  # an empty feature cache each run: both sides extract (the library caches nothing either)
        scorer = scorer_class("fid")(weights={"inception": w}, real_images=root / "fid_real", resize="torch-fidelity",
                                     cache_dir=root / f"cache-{next(runs)}")
        return scorer.score(fake, prompts[:n_fid], batch_size=bs).value

    ours, t_ours = timed(ours_cold)
    lib, t_lib = timed(lambda: torch_fidelity.calculate_metrics(
        input1=str(root / "fid_fake"), input2=str(root / "fid_real"), fid=True, cuda=False, verbose=False,
        cache=False, batch_size=bs, feature_extractor_weights_path=str(w))["frechet_inception_distance"])
    report("fid", n_fid, t_ours, t_lib, "torch_fidelity.calculate_metrics", check_equal("fid", [ours], [lib]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="images per scorer")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--metrics", default="imagereward,hpsv2,clip,fid")
    ap.add_argument("--fid-n", type=int, default=8, help="images per FID side (full InceptionV3 on each)")
    ap.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs")
    args = ap.parse_args()
    global REPEAT
    REPEAT = args.repeat
    import torch

    from t2ibench.hardware import measure_gemm_peak

    global PEAK
    PEAK = measure_gemm_peak("cpu", torch.float32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, size={args.size}, batch {args.batch_size}, "
          f"best of {REPEAT}; peak {PEAK.tflops * 1e3:.0f} GFLOP/s ({PEAK.source})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, prompts = inputs(root, args.n)
        for name in args.metrics.split(","):
            if name == "fid":
                bench_fid(root, images, prompts, args.batch_size, args.size, args.fid_n)
            else:
                globals()[f"bench_{name}"](root, images, prompts, args.batch_size, args.size)


if __name__ == "__main__":
    main()
