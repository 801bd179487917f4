"""The GenEval scorer end to end on tiny random models in the real formats (a transformers Mask2Former
saved with save_pretrained, an open_clip checkpoint), loaded through the real code. Colours are checked
against clip_benchmark's own zero-shot classifier (the library the official code calls); verdicts against
the rules applied to the detector's own per-image output."""

from __future__ import annotations

import pytest

from builders.alignment_models import build_tiny_mask2former
from t2ibench.metrics.base import PromptRecord
from t2ibench.metrics.geneval import rules
from t2ibench.metrics.geneval.detector import COLOR_TEMPLATES, OBJECT_NAMES
from t2ibench.metrics.geneval.scorer import GenEvalScore
from tiny_scorers import build_tiny_clip

DOG = OBJECT_NAMES.index("dog")
PROMPTS = [
    PromptRecord("p0", "a photo of a dog", "single_object", {"include": [{"class": "dog", "count": 1}]}),
    PromptRecord("p1", "a photo of a red dog", "colors", {"include": [{"class": "dog", "count": 1, "color": "red"}]}),
    PromptRecord("p2", "a photo of two dogs", "counting", {"include": [{"class": "dog", "count": 2}],
                                                           "exclude": [{"class": "dog", "count": 3}]}),
]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    root = tmp_path_factory.mktemp("geneval")
    detector = build_tiny_mask2former(root / "m2f", seed=1, boost_label=DOG)
    arch, clip = build_tiny_clip(root / "clip", seed=2)
    return GenEvalScore(weights={"detector": detector, "clip": clip}, clip_arch=arch, clip_pretrained="tiny")


def images(n: int):
    from PIL import Image

    return [Image.effect_noise((72 + 8 * (i % 3), 64), 40 + 9 * i).convert("RGB") for i in range(n)]


def test_colours_equal_clip_benchmark(scorer):
    zsc = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")
    import torch

    image = images(1)[0]
    objs = [rules.Detection((0, 0, 40, 30), 0.9), rules.Detection((10, 5, 70, 60), 0.8),
            rules.Detection((30, 20, 60, 50), 0.7)]
    cc = scorer.colors
    templates = [t.format(cls="dog") for t in COLOR_TEMPLATES]
    head = zsc.zero_shot_classifier(cc.model, cc.tokenizer, list(rules.COLORS), templates, "cpu", amp=False)
    crops = torch.stack([cc.transform(c) for c in cc.crops(image, objs)])
    loader = torch.utils.data.DataLoader(list(zip(crops, [0] * len(objs))), batch_size=16)
    logits, _ = zsc.run_classification(cc.model, head, loader, "cpu", amp=False)
    assert torch.allclose(head, cc.head("dog"), atol=1e-6)
    assert cc.colors(image, objs, "dog") == [rules.COLORS[i] for i in logits.argmax(1).tolist()]


def test_scorer_matches_per_image_rules_and_reports_tags(scorer):
    import torch

    ims = images(6)
    records = [p for p in PROMPTS for _ in range(2)]  # 2 images per prompt (the official protocol has 4)
    result = scorer.score(ims, records, batch_size=4)
    assert result.version.endswith("/k=2") and result.extra["images_per_prompt"] == 2 and "rules=official@af4902f2" in result.version
    assert set(result.categories) == {"single_object", "colors", "counting"}

    proc, model = scorer.detector.processor, scorer.detector.model
    verdicts = []
    for im, rec in zip(ims, records):  # one image at a time, straight through transformers
        with torch.no_grad():
            out = model(**proc(images=[im], return_tensors="pt"))
        res = proc.post_process_instance_segmentation(out, threshold=0.0, target_sizes=[(im.height, im.width)],
                                                      return_binary_maps=True)[0]
        raw: dict = {}
        for k, seg in enumerate(res["segments_info"]):
            mask = res["segmentation"][k].numpy().astype(bool)
            if mask.any():
                ys, xs = mask.nonzero()
                raw.setdefault(OBJECT_NAMES[seg["label_id"]], []).append(
                    rules.Detection((float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                                    float(seg["score"]), mask))
        kept = rules.keep_detections(raw, rec.category)
        verdicts.append(rules.evaluate(kept, rec.meta, lambda objs, c, im=im: scorer.colors.colors(im, objs, c))[0])
    assert [it.details["correct"] for it in result.per_item] == verdicts
    n_dogs = [len(it.details["detections"].get("dog", [])) for it in result.per_item]
    assert max(n_dogs) > 0  # the boosted class clears the 0.3 threshold somewhere: not a degenerate run
    expected = rules.summarize([(r.id, r.category, v) for r, v in zip(records, verdicts)])
    assert result.value == pytest.approx(expected.overall) and result.categories == pytest.approx(expected.by_tag)
