"""The shared frame of the feature-distribution metrics (FID, KID, precision/recall, CMMD, FD-DINOv2).

Each compares the features of the generated images with those of a real image set, both read through
the feature cache (`t2ibench.metrics.features`). The real side is either a folder of real images
(`real_images=DIR`) or, for COCO prompt sets, the COCO val2014 images named by each scored prompt's
`meta["coco_image_id"]` under `coco_dir=DIR` (`COCO_val2014_000000xxxxxx.jpg`, `000000xxxxxx.jpg` or
`<id>.jpg`).

Checks happen before any feature is extracted: the number of generated images (when the driver knows
it) and of real files against the metric's minimum, and one size for all generated images (a set of
mixed sizes is images of different runs or resolutions; real photographs may differ in size, the
resize protocol makes them one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.base import ImageLike, MetricResult, PromptRecord, Scorer
from t2ibench.metrics.features import FeatureSource, extractor_spec, feature_source
from t2ibench.weights import WeightFile


def coco_image_path(coco_dir: Path, image_id: Any) -> Path | None:
    i = int(image_id)
    for name in (f"COCO_val2014_{i:012d}.jpg", f"{i:012d}.jpg", f"{i}.jpg", f"COCO_val2014_{i:012d}.png"):
        if (coco_dir / name).is_file():
            return coco_dir / name
    return None


class FeatureDistributionScorer(Scorer):
    """A distribution metric over one extractor's features. Subclasses set `extractor` and implement
    `distance(generated, real) -> (value, extra)` on (N, dim) float32 tensors."""

    kind: ClassVar[str] = "distribution"
    higher_is_better: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 32
    extractor: ClassVar[str] = "inception"
    min_images: ClassVar[int] = 2

    @classmethod
    def weight_files(cls, **_: Any) -> list[WeightFile]:
        return [extractor_spec(cls.extractor).weights]

    def __init__(self, device: str = "cpu", weights=None, *, real_images: str | Path | None = None,
                 coco_dir: str | Path | None = None, resize: str | None = None,
                 cache_dir: str | Path | None = None, **options: Any):
        super().__init__(device, weights, **options)
        spec = extractor_spec(self.extractor)
        self.source: FeatureSource = feature_source(self.extractor, self.paths[spec.weights.key], resize=resize,
                                                    device=device, cache_dir=cache_dir,
                                                    batch_size=self.default_batch_size)
        self.resize = self.source.resize
        self.real_images = Path(real_images) if real_images else None
        self.coco_dir = Path(coco_dir) if coco_dir else None
        if self.real_images is not None:
            from t2ibench.images import list_images

            if not self.real_images.is_dir():
                raise UserError(f"{self.name}: real image folder {self.real_images} does not exist")
            self.check_count(len(list_images(self.real_images)), "real")
        if self.coco_dir is not None and not self.coco_dir.is_dir():
            raise UserError(f"{self.name}: COCO folder {self.coco_dir} does not exist")
        if self.real_images is None and self.coco_dir is None:
            raise UserError(f"{self.name} needs real images: --option {self.name}.real_images=DIR, or "
                            f"{self.name}.coco_dir=DIR (COCO val2014 images) with a prompt set that has coco_image_id")
        self._features: list[Any] = []
        self._coco_ids: list[Any] = []
        self._size: tuple[int, int] | None = None

    @classmethod
    def declared_version(cls, resize: str | None = None, **options: Any) -> str:
        spec = extractor_spec(cls.extractor)
        return f"{cls.name}/{spec.network}:{spec.weights.repo_id}/{spec.check_resize(resize)}{cls.variant(**options)}"

    @classmethod
    def variant(cls, **options: Any) -> str:
        """What else changes the numbers (e.g. KID's subset size), as a version suffix."""
        return ""

    @property
    def version(self) -> str:
        return self.declared_version(self.resize, **self.options)

    # -- inputs --------------------------------------------------------------------------------------
    def check_count(self, n: int, side: str = "generated") -> None:
        if n < self.min_images:
            raise UserError(f"{self.name} needs at least {self.min_images} {side} images; got {n}")

    def features(self, images: Sequence[ImageLike], batch_size: int | None = None):
        """(N, dim) float32 features, in input order, through the cache."""
        return self.source.of_images(images)

    def update(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> None:
        sizes = {im.size for im in images}
        if self._size is not None:
            sizes.add(self._size)
        if len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise UserError(f"{self.name}: generated images have mixed sizes ({a[0]}x{a[1]} and {b[0]}x{b[1]}); "
                            "score one run at one resolution")
        self._size = next(iter(sizes), self._size)
        self._features.append(self.features(images))
        self._coco_ids.extend(p.meta.get("coco_image_id") for p in prompts)

    # -- real side -----------------------------------------------------------------------------------
    def real_files(self) -> list[Path]:
        from t2ibench.images import list_images

        if self.real_images is not None:
            return list_images(self.real_images)
        if any(i is None for i in self._coco_ids):
            raise UserError(f"{self.name}: the prompt set has no coco_image_id for every prompt; "
                            "pass real_images=DIR instead")
        files, missing = [], []
        for i in dict.fromkeys(self._coco_ids):
            p = coco_image_path(self.coco_dir, i)
            (files if p else missing).append(p or i)
        if missing:
            raise UserError(f"{self.name}: {len(missing)} COCO images not found in {self.coco_dir} (e.g. id {missing[0]})")
        return files

    def real_features(self):
        """(features, n_unreadable) of the real side; the file count is checked before extraction."""
        files = self.real_files()
        self.check_count(len(files), "real")
        feats, skipped = self.source.of_files(files)
        self.check_count(len(feats), "readable real")
        return feats, skipped

    def generated_features(self):
        import torch

        return torch.cat(self._features) if self._features else torch.empty(0, self.source.spec.dim)

    # -- result --------------------------------------------------------------------------------------
    def distance(self, generated, real) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    def compute(self) -> MetricResult:
        gen = self.generated_features()
        self.check_count(len(gen))
        real, real_skipped = self.real_features()
        value, extra = self.distance(gen, real)
        result = MetricResult(metric=self.name, version=self.version, value=float(value), n_items=len(gen),
                              extra={"n_real": len(real), "n_real_skipped": real_skipped, "resize": self.resize,
                                     "extractor": self.source.cache_id, **extra})
        self.reset()  # one score() call is one pass; the scorer can be reused for the next image set
        return result

    def reset(self) -> None:
        self._features.clear()
        self._coco_ids.clear()
        self._size = None
