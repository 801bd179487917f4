"""CMMD (Jayasumana et al., CVPR 2024, "Rethinking FID"): MMD between CLIP embeddings of the real
and generated images, as google-research/cmmd computes it.

Embeddings: OpenAI CLIP ViT-L/14@336 (`openai/clip-vit-large-patch14-336` through transformers'
CLIPVisionModelWithProjection), images centre-cropped to a square and resized to 336 with PIL bicubic,
scaled to [0, 1] and CLIP-normalised; embeddings L2-normalised. Distance: the minimum-variance (biased,
V-statistic) MMD^2 estimate with a Gaussian RBF kernel, sigma = 10, times 1000. Computed in float64,
a block of rows at a time so 30K x 30K kernels never sit in memory at once.
"""

from __future__ import annotations

from typing import Any, ClassVar

from t2ibench.metrics.distribution import FeatureDistributionScorer

SIGMA = 10.0
SCALE = 1000.0


def _kernel_mean(a, b, sq_a, sq_b, gamma: float, block: int = 4096) -> float:
    import torch

    total = 0.0
    for s in range(0, len(a), block):
        d2 = sq_a[s:s + block, None] + sq_b[None, :] - 2 * a[s:s + block] @ b.T
        total += float(torch.exp(-gamma * d2).sum())
    return total / (len(a) * len(b))


def mmd(x, y, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y)), k = exp(-|a - b|^2 / (2 sigma^2)),
    diagonals included (the official estimator)."""
    x, y = x.double(), y.double()
    sq_x, sq_y = (x * x).sum(1), (y * y).sum(1)
    gamma = 1.0 / (2 * sigma ** 2)
    k_xx = _kernel_mean(x, x, sq_x, sq_x, gamma)
    k_yy = _kernel_mean(y, y, sq_y, sq_y, gamma)
    k_xy = _kernel_mean(x, y, sq_x, sq_y, gamma)
    return scale * (k_xx + k_yy - 2 * k_xy)


class CMMD(FeatureDistributionScorer):
    name: ClassVar[str] = "cmmd"
    extractor: ClassVar[str] = "clip-vit-l14-336"

    @classmethod
    def variant(cls, **_: Any) -> str:
        return "/rbf-sigma10-x1000"

    def distance(self, generated, real) -> tuple[float, dict[str, Any]]:
        return mmd(real, generated), {}
