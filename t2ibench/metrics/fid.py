"""FID with torch-fidelity's InceptionV3 (the TF-FID-compatible `inception-v3-compat` extractor).

The real side (a folder, or the COCO images of the scored prompts) and the feature cache are shared
with the other distribution metrics: see `t2ibench.metrics.distribution` and `.features`. The real
side's features are cached keyed by the image list (names, sizes, mtimes), the resize protocol and the
Inception weights file; per-image features by pixel content.

Resize protocols (part of the version, applied to real and generated images alike):
  * `center-crop-N` (default N=256, the paper's "real images resized to the generation resolution"):
    PIL bicubic resize of the shorter side to N, centre crop NxN, then torch-fidelity's own resize.
  * `pil-bicubic-299` (clean-fid style): PIL bicubic resize of the whole image to 299x299.
  * `torch-fidelity`: images as they are; torch-fidelity's TF1-style bilinear resize to 299 inside
    the extractor (what `torch_fidelity.calculate_metrics` does on a folder).
"""

from __future__ import annotations

from typing import Any, ClassVar

from t2ibench.metrics.distribution import FeatureDistributionScorer, coco_image_path
from t2ibench.metrics.features import DEFAULT_INCEPTION_RESIZE as DEFAULT_RESIZE
from t2ibench.metrics.features import INCEPTION_URL, extractor_spec
from t2ibench.metrics.features import inception_resize as apply_resize

FEATURE_LAYER = "2048"

__all__ = ["DEFAULT_RESIZE", "FID", "INCEPTION_URL", "apply_resize", "check_resize", "coco_image_path"]


def check_resize(protocol: str) -> str:
    return extractor_spec("inception").check_resize(protocol)


class FID(FeatureDistributionScorer):
    name: ClassVar[str] = "fid"
    extractor: ClassVar[str] = "inception"

    @classmethod
    def declared_version(cls, resize: str | None = None, **_: Any) -> str:
        from importlib.metadata import version

        return f"{cls.name}/torch-fidelity-{version('torch-fidelity')}:inception-v3-compat/{check_resize(resize or DEFAULT_RESIZE)}"

    def real_statistics(self) -> tuple[dict[str, Any], int, int]:
        """(stats, n_real, n_real_skipped) of the real side, from cached features when seen before."""
        from torch_fidelity.metric_fid import fid_features_to_statistics

        feats, skipped = self.real_features()
        return fid_features_to_statistics(feats), len(feats), skipped

    def distance(self, generated, real) -> tuple[float, dict[str, Any]]:
        from torch_fidelity.metric_fid import (
            KEY_METRIC_FID,
            fid_features_to_statistics,
            fid_statistics_to_metric,
        )

        stats_real = fid_features_to_statistics(real)
        stats_fake = fid_features_to_statistics(generated)
        value = float(fid_statistics_to_metric(stats_real, stats_fake, verbose=False)[KEY_METRIC_FID])
        # The interval resamples the generated images against the fixed real statistics (t2ibench.stats).
        from t2ibench.stats import fid_bootstrap

        features = generated.double().numpy() if hasattr(generated, "double") else generated
        interval = fid_bootstrap(features, stats_real["mu"], stats_real["sigma"]).to_dict()
        # kept for `t2ibench compare` (a permutation test over two runs' generated features)
        self.last_features, self.last_real = features, (stats_real["mu"], stats_real["sigma"])
        return value, {"interval": interval}
