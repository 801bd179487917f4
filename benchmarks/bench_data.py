"""Throughput (samples/s) of `t2ibench data filter|caption|stats` on this machine, each against a
baseline measured in the same run:

- filter, cheap filters (size, aspect, pHash dedup) vs a plain shard copy (decode + rewrite, no filter);
- filter with the NSFW and aesthetic models: tiny models end to end, and the real-size architectures
  (randomly initialised open_clip ViT-L/14 + MLP head, ViT-base/16 NSFW classifier) per model batch;
- caption with a tiny BLIP-2, batched vs one image at a time (real-size BLIP-2 OPT-2.7B is 3.9B
  parameters: not run on a CPU);
- stats: our tagger-only spaCy pipeline vs spaCy's full en_core_web_sm pipeline.

Run: python benchmarks/bench_data.py [--images 96]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from builders import curation_models as tiny  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _dataset(root: Path, n: int) -> Path:
    words = tiny.TOKENIZER_WORDS
    samples = [{"key": f"{i:06d}", "image": tiny.encode(tiny.noise_image(i, (256, 256)), "JPEG", quality=90),
                "ext": "jpg", "caption": f"a photo of a {words[i % len(words)]} and a {words[(i * 7) % len(words)]}",
                "syn": {"captions": [f"a {words[(i + k) % len(words)]} on the {words[(i * 3 + k) % len(words)]}"
                                     for k in range(5)], "scores": [-0.1, -0.2, -0.3, -0.4, -0.5],
                        "model": "bench", "method": "beam", "version": 1}} for i in range(n)]
    shards = [samples[i:i + 32] for i in range(0, n, 32)]
    return tiny.write_dataset(root, "webdataset", shards)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--real-size", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    import torch

    from t2ibench.data.caption import CaptionConfig, run_caption
    from t2ibench.data.filter import FilterConfig, run_filter
    from t2ibench.data.stats import NounExtractor, StatsConfig, run_stats

    n = args.images
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = _dataset(tmp / "data", n)
        models = {"clip": tiny.make_open_clip_dir(tmp / "clip"), "head": tiny.make_aesthetic_head(tmp / "head.pth"),
                  "nsfw": tiny.make_nsfw_dir(tmp / "nsfw"), "blip2": tiny.make_blip2_dir(tmp / "blip2")}

        _, base = _timed(lambda: run_filter(FilterConfig(str(data), tmp / "copy", progress=False)))
        _, cheap = _timed(lambda: run_filter(FilterConfig(str(data), tmp / "cheap", min_size=64, max_aspect=3,
                                                          dedup="phash", progress=False)))
        rows.append(("filter size+aspect+phash", n / cheap, "plain shard copy", n / base))
        _, tiny_models = _timed(lambda: run_filter(FilterConfig(
            str(data), tmp / "models", nsfw_threshold=0.99, nsfw_weights=str(models["nsfw"]),
            aesthetic_threshold=-1e9, clip_weights=str(models["clip"]), aesthetic_weights=str(models["head"]),
            progress=False)))
        rows.append(("filter +nsfw +aesthetic (tiny models, incl. load)", n / tiny_models, "plain shard copy", n / base))

        if args.real_size:
            import open_clip
            from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

            from t2ibench.data.aesthetic import AestheticScorer, build_head
            from t2ibench.data.nsfw import NsfwClassifier
            from t2ibench.data.readers import decode_image

            images = [decode_image(tiny.encode(tiny.noise_image(i, (256, 256)))) for i in range(16)]
            clip, _, preprocess = open_clip.create_model_and_transforms("ViT-L-14", force_quick_gelu=True)
            scorer = AestheticScorer(clip.eval(), preprocess, build_head("mlp").eval())
            scorer.score(images[:1])
            _, t_aes = _timed(lambda: scorer.score(images))
            nsfw = NsfwClassifier(ViTForImageClassification(ViTConfig(num_labels=2)).eval(),
                                  ViTImageProcessor(), (1,))
            _, t_nsfw = _timed(lambda: nsfw.unsafe_prob(images))
            rows.append(("aesthetic ViT-L/14 + MLP, real size, batch 16", 16 / t_aes, "-", None))
            rows.append(("nsfw ViT-B/16, real size, batch 16", 16 / t_nsfw, "-", None))
            del clip, scorer, nsfw

        from t2ibench.data.caption import Captioner
        from t2ibench.data.readers import decode_image

        m = min(n, 32)
        images = [decode_image(tiny.encode(tiny.noise_image(i, (256, 256)))) for i in range(m)]
        captioner = Captioner.load(CaptionConfig("-", weights=str(models["blip2"]), max_new_tokens=10))
        captioner.caption(images[:2])  # warm-up: first-call initialisation is not throughput
        _, t_b1 = _timed(lambda: [captioner.caption([im]) for im in images])
        _, t_b8 = _timed(lambda: [captioner.caption(images[i:i + 8]) for i in range(0, m, 8)])
        rows.append(("caption tiny BLIP-2, 5 beams, 10 tokens, batch 8", m / t_b8, "batch 1", m / t_b1))
        _, t_run = _timed(lambda: run_caption(CaptionConfig(str(data), tmp / "cap", weights=str(models["blip2"]),
                                                            max_new_tokens=10, progress=False, overwrite=True)))
        rows.append(("caption command end to end (incl. model load)", n / t_run, "-", None))

        nlp_full = NounExtractor()
        import spacy

        nlp_full.nlp = spacy.load(nlp_full.model.split()[0])  # every component: parser and NER too
        texts = [f"a photo of a {w} sitting next to the {v} in a house with two windows"
                 for w in tiny.TOKENIZER_WORDS for v in tiny.TOKENIZER_WORDS][:600]
        _, t_full = _timed(lambda: nlp_full.nouns(texts))
        _, t_stats = _timed(lambda: run_stats(StatsConfig(str(data), progress=False)))
        rows.append(("stats (alt-text + 5 syn captions per image)", n / t_stats,
                     "full spaCy pipeline, 6 captions/image", len(texts) / 6 / t_full))

    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, {n} images of 256x256")
    print(f"{'command':55s} {'samples/s':>10s}   baseline (samples/s)          ratio")
    for name, rate, bname, brate in rows:
        base = f"{bname} ({brate:.1f})" if brate else "-"
        ratio = f"{rate / brate:.2f}x" if brate else ""
        print(f"{name:55s} {rate:10.1f}   {base:30s}{ratio}")


if __name__ == "__main__":
    main()
