"""The GenEval scorer: detector + colour classifier -> the official rules -> per-tag and overall scores.

A prompt's record carries GenEval's metadata in `meta` (`include`, `exclude`; the tag is the record's
category), as the `geneval` prompt set provides. Each image is judged correct or not; a tag's score is
the mean over its images; GenEval is the mean over tags (evaluation/summary_scores.py).

Images per prompt: the official protocol generates 4 per prompt (generation/diffusers_generate.py,
`--n_samples 4`). `k="official"` (default) stops, before any model loads, when a run has another count;
`k="any"` scores whatever count is given and records it in the version (`k=<K>`), so such a result is
never ranked with 4-image results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.base import (
    ImageLike,
    ItemScore,
    MetricResult,
    PromptRecord,
    Scorer,
)
from t2ibench.metrics.geneval import rules
from t2ibench.metrics.geneval.detector import (
    DEFAULT_DETECTOR,
    DETECTORS,
    ColorClassifier,
    Mask2FormerDetector,
    detector_weight,
)
from t2ibench.metrics.images_per_prompt import check_k, count_images_per_prompt
from t2ibench.metrics.tifa.vqa import snapshot_tag, to_rgb
from t2ibench.weights import WeightFile

OFFICIAL_IMAGES_PER_PROMPT = 4


class GenEvalScore(Scorer):
    name: ClassVar[str] = "geneval"
    default_prompt_set: ClassVar[str] = "geneval"
    default_batch_size: ClassVar[int] = 8

    def __init__(self, device: str = "cpu", weights: Mapping[str, Path | str] | None = None, *,
                 detector: str = DEFAULT_DETECTOR, k: str = "official", images_per_prompt: int | None = None,
                 clip_arch: str = "ViT-L-14", clip_pretrained: str = "openai", clip_quick_gelu: bool | None = None,
                 **threshold_options: Any):
        if detector not in DETECTORS:
            raise UserError(f"geneval: unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
        self.thresholds = _thresholds(threshold_options)
        super().__init__(device, weights, detector=detector, clip_arch=clip_arch, clip_pretrained=clip_pretrained,
                         clip_quick_gelu=clip_quick_gelu)
        from t2ibench.metrics.clip import clip_model_spec

        self.k_policy, self.declared_k = k, images_per_prompt
        self.detector_name = detector
        self.clip_spec = clip_model_spec(clip_arch, clip_pretrained, clip_quick_gelu)
        self.detector = Mask2FormerDetector(self.paths["detector"], device)
        self.colors = ColorClassifier(self.paths["clip"], self.clip_spec.arch, self.clip_spec.quick_gelu, device)
        self._k: int | None = None

    @classmethod
    def weight_files(cls, detector: str = DEFAULT_DETECTOR, clip_arch: str = "ViT-L-14",
                     clip_pretrained: str = "openai", clip_quick_gelu: bool | None = None, **_: Any) -> list[WeightFile]:
        from t2ibench.metrics.clip import clip_model_spec

        files = [detector_weight(detector)] if detector in DETECTORS else []
        spec = clip_model_spec(clip_arch, clip_pretrained, clip_quick_gelu)
        return files + [WeightFile("clip", spec.repo_id, spec.filename)]

    @classmethod
    def check_prompts(cls, records: Sequence[PromptRecord], images_per_prompt: int | None = None,
                      k: str = "official", **options: Any) -> None:
        lacking = [r.id for r in records if "include" not in r.meta or not r.category]
        if lacking:
            raise UserError(f"geneval: prompt {lacking[0]!r} (and {len(lacking) - 1} more) has no GenEval metadata "
                            "(tag, include/exclude); use the prompt set `geneval`")
        check_k(cls.name, count_images_per_prompt(records, images_per_prompt), OFFICIAL_IMAGES_PER_PROMPT, k)

    @classmethod
    def declared_version(cls, detector: str = DEFAULT_DETECTOR, clip_arch: str = "ViT-L-14",
                         clip_pretrained: str = "openai", k: str = "official", **options: Any) -> str:
        kk = OFFICIAL_IMAGES_PER_PROMPT if k == "official" else "K"
        return (f"geneval/det={detector}/color=open_clip:{clip_arch}/{clip_pretrained}/"
                f"rules={_thresholds(options).tag()}@af4902f2/k={kk}")

    @property
    def version(self) -> str:
        k = self._k or self.declared_k or OFFICIAL_IMAGES_PER_PROMPT
        return (f"geneval/det={self.detector_name}@{snapshot_tag(self.paths['detector'])}/"
                f"color=open_clip:{self.clip_spec.arch}/{self.clip_spec.pretrained}/"
                f"rules={self.thresholds.tag()}@af4902f2/k={k}")

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        rgb = [to_rgb(im) for im in images]
        raw = self.detector.detect(rgb)
        items = []
        for image, prompt, found in zip(rgb, prompts, raw, strict=True):
            kept = rules.keep_detections(found, prompt.category or "", self.thresholds)
            ok, reason = rules.evaluate(kept, prompt.meta,
                                        lambda objs, cls, im=image: self.colors.colors(im, objs, cls),
                                        self.thresholds.position_threshold)
            items.append(ItemScore(prompt.id, float(ok), {
                "tag": prompt.category, "correct": ok, "reason": reason,
                "detections": {c: [[*d.box, d.score] for d in ds] for c, ds in kept.items()}}))
        return items

    def aggregate(self, items: list[ItemScore], skipped: int = 0) -> MetricResult:
        if not items:
            raise UserError(f"geneval: no image could be scored ({skipped} unreadable)")
        self._k = count_images_per_prompt([PromptRecord(it.id, "") for it in items], self.declared_k)
        summary = rules.summarize([(it.id, it.details["tag"], it.details["correct"]) for it in items])
        return MetricResult(metric=self.name, version=self.version, value=summary.overall, n_items=len(items),
                            n_skipped=skipped, categories=summary.by_tag, per_item=items,
                            extra={"n_prompts": summary.n_prompts, "correct_images": summary.correct_images,
                                   "correct_prompts": summary.correct_prompts, "images_per_prompt": self._k,
                                   "official_detector": DETECTORS[self.detector_name].official})


def _thresholds(options: Mapping[str, Any]) -> rules.Thresholds:
    known = set(rules.Thresholds.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise UserError(f"geneval: unknown option(s) {', '.join(sorted(unknown))}; known: detector, k, "
                        f"images_per_prompt, clip_arch, clip_pretrained, {', '.join(sorted(known))}")
    try:
        return rules.Thresholds(**{k: type(getattr(rules.Thresholds(), k))(v) for k, v in options.items()})
    except (TypeError, ValueError) as exc:
        raise UserError(f"geneval: bad threshold option ({exc})") from None
