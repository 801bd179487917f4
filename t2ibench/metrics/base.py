"""The one scorer interface behind every metric.

A scorer is built from its weights and a device, takes batches of (image, prompt record) and returns
a `MetricResult`: an aggregate, per-item values and, where the metric has them, per-category values.

* Per-image scorers (CLIP, ImageReward, HPSv2, TIFA) implement `score_batch`, which returns one
  `ItemScore` per image; `Scorer.score` batches, shows progress, skips unreadable images (counted)
  and aggregates the mean.
* Distribution scorers (FID) implement `update` and `compute` instead.

`name` is stable; `version` is explicit and changes whenever the numbers would (model, checkpoint,
scale, resize protocol, VQA backend). Results with different versions are never compared.
"""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.prompts.record import PromptRecord  # re-exported: `from t2ibench.metrics.base import PromptRecord`
from t2ibench.weights import WeightFile, resolve

__all__ = ["ImageLike", "ItemScore", "MetricResult", "PromptRecord", "Scorer", "map_images"]


_PREPROCESS_POOL = None


def map_images(fn: Callable[[Any], Any], images: Sequence[Any]) -> list[Any]:
    """`[fn(im) for im in images]` on a small shared thread pool. The per-image PIL steps of the
    libraries' preprocessing (resize, crop) release the GIL, so a batch's images are resized in
    parallel while each image's numbers stay exactly the library's."""
    global _PREPROCESS_POOL
    if len(images) < 4:
        return [fn(im) for im in images]
    if _PREPROCESS_POOL is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _PREPROCESS_POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                              thread_name_prefix="t2ibench-preprocess")
    return list(_PREPROCESS_POOL.map(fn, images))


@dataclass
class ItemScore:
    id: str
    value: float | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricResult:
    metric: str
    version: str
    value: float
    n_items: int
    n_skipped: int = 0
    categories: dict[str, float] = field(default_factory=dict)
    per_item: list[ItemScore] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, per_item: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not per_item:
            d.pop("per_item")
        return d


ImageLike = Any  # PIL.Image.Image, or None for an image that could not be read


class Scorer(ABC):
    name: ClassVar[str]
    kind: ClassVar[str] = "per-image"  # or "distribution"
    higher_is_better: ClassVar[bool] = True
    default_prompt_set: ClassVar[str] = "coco-10k"
    default_batch_size: ClassVar[int] = 32

    def __init__(self, device: str = "cpu", weights: Mapping[str, Path | str] | None = None, **options: Any):
        self.device = device
        self.options = options
        explicit = {k: Path(v) for k, v in (weights or {}).items()}
        unknown = set(explicit) - {wf.key for wf in self.weight_files(**options)}
        if unknown:
            raise UserError(f"{self.name}: unknown weights key(s) {sorted(unknown)}; known: "
                            f"{[wf.key for wf in self.weight_files(**options)]}")
        # Resolve every file before any work, so a missing one stops the run at once.
        self.paths: dict[str, Path] = {
            wf.key: resolve(wf, explicit.get(wf.key), metric=self.name) for wf in self.weight_files(**options)
        }

    @classmethod
    def weight_files(cls, **options: Any) -> list[WeightFile]:
        return []

    @property
    def version(self) -> str:
        raise NotImplementedError

    @classmethod
    def check_prompts(cls, records: Sequence[PromptRecord], images_per_prompt: int | None = None,
                      **options: Any) -> None:
        """Stop with one line, before any model loads, when these prompts (and K images per prompt)
        cannot be scored by this metric, e.g. prompts without the metric's questions."""

    @classmethod
    def declared_version(cls, **options: Any) -> str:
        """The version of this configuration as far as it is known without loading weights (for
        `t2ibench metrics`); the loaded scorer's `version` is authoritative and goes into results."""
        return f"{cls.name} (version known once loaded)"

    # -- per-image scorers ---------------------------------------------------------------------
    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        raise NotImplementedError

    # -- distribution scorers ------------------------------------------------------------------
    def update(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> None:
        raise NotImplementedError

    def compute(self) -> MetricResult:
        raise NotImplementedError

    def check_count(self, n: int, side: str = "generated") -> None:
        """Distribution scorers: refuse a set too small for the metric before any feature is extracted."""

    # -- the driver ----------------------------------------------------------------------------
    def score(self, images: Iterable[ImageLike], prompts: Iterable[PromptRecord], batch_size: int | None = None,
              progress: Callable[[int], None] | None = None) -> MetricResult:
        """Score paired images and prompts. `None` images (unreadable) are skipped and counted."""
        bs = batch_size or self.default_batch_size
        if self.kind == "distribution" and isinstance(prompts, Sized):
            self.check_count(len(prompts))  # the driver knows the count: say it before the first batch
        items: list[ItemScore] = []
        skipped = 0
        batch_i: list[ImageLike] = []
        batch_p: list[PromptRecord] = []

        def flush() -> None:
            if not batch_i:
                return
            if self.kind == "distribution":
                self.update(batch_i, batch_p)
            else:
                items.extend(self.score_batch(batch_i, batch_p))
            if progress:
                progress(len(batch_i))
            batch_i.clear()
            batch_p.clear()

        for image, prompt in zip(images, prompts, strict=True):
            if image is None:
                skipped += 1
                continue
            batch_i.append(image)
            batch_p.append(prompt)
            if len(batch_i) >= bs:
                flush()
        flush()
        if self.kind == "distribution":
            result = self.compute()
            result.n_skipped += skipped
            return result
        return self.aggregate(items, skipped)

    def aggregate(self, items: list[ItemScore], skipped: int = 0) -> MetricResult:
        values = [it.value for it in items if it.value is not None and not math.isnan(it.value)]
        if not values:
            raise UserError(f"{self.name}: no image could be scored ({skipped} unreadable)")
        return MetricResult(metric=self.name, version=self.version, value=sum(values) / len(values),
                            n_items=len(values), n_skipped=skipped, per_item=items)
