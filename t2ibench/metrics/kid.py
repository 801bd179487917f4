"""KID (Binkowski et al., 2018) with torch-fidelity: the unbiased MMD^2 estimate with the cubic
polynomial kernel on Inception features, averaged over `subsets` random subsets of `subset_size`
images per side (torch-fidelity's defaults 100 x 1000, its seed 2020). Reads the same cached Inception
features as FID; the value is the mean, `extra["kid_std"]` the spread over subsets."""

from __future__ import annotations

from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.distribution import FeatureDistributionScorer

DEFAULT_SUBSETS, DEFAULT_SUBSET_SIZE = 100, 1000


def _positive_int(value: Any, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 2:
        raise UserError(f"kid: {what} must be an integer >= 2; got {value!r}")
    return n


class KID(FeatureDistributionScorer):
    name: ClassVar[str] = "kid"
    extractor: ClassVar[str] = "inception"

    def __init__(self, device: str = "cpu", weights=None, *, subsets: int | str = DEFAULT_SUBSETS,
                 subset_size: int | str = DEFAULT_SUBSET_SIZE, **options: Any):
        self.subsets = _positive_int(subsets, "subsets")
        self.subset_size = _positive_int(subset_size, "subset_size")
        self.min_images = self.subset_size  # torch-fidelity draws subsets without replacement
        super().__init__(device, weights, subsets=self.subsets, subset_size=self.subset_size, **options)

    @classmethod
    def declared_version(cls, resize: str | None = None, **options: Any) -> str:
        from importlib.metadata import version

        from t2ibench.metrics.fid import DEFAULT_RESIZE, check_resize

        subsets = int(options.get("subsets", DEFAULT_SUBSETS))
        size = int(options.get("subset_size", DEFAULT_SUBSET_SIZE))
        return (f"{cls.name}/torch-fidelity-{version('torch-fidelity')}:inception-v3-compat/"
                f"{check_resize(resize or DEFAULT_RESIZE)}/poly3-{subsets}x{size}")

    def distance(self, generated, real) -> tuple[float, dict[str, Any]]:
        from torch_fidelity.metric_kid import (
            KEY_METRIC_KID_MEAN,
            KEY_METRIC_KID_STD,
            kid_features_to_metric,
        )

        out = kid_features_to_metric(generated, real, kid_subsets=self.subsets, kid_subset_size=self.subset_size,
                                     verbose=False)
        return out[KEY_METRIC_KID_MEAN], {"kid_std": out[KEY_METRIC_KID_STD]}
