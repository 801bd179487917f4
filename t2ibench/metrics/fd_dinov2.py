"""FD-DINOv2 (Stein et al., NeurIPS 2023): the Frechet distance between Gaussians fitted to DINOv2
ViT-L/14 features, as dgm-eval computes it.

Features: `facebook/dinov2-large` through transformers' Dinov2Model, the CLS token after the final
layer norm (the torch.hub model's output that dgm-eval reads); images resized to 224x224 with PIL
bicubic, no crop, ImageNet mean/std (dgm-eval's default, non-"clean" resize). Distance: in float64,
mean and covariance (`np.cov`, rows are images), then |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrtm(S1 S2),
with scipy's `sqrtm`; a non-finite root is retried with 1e-6 added to both diagonals, and an imaginary
part above 1e-3 on the diagonal is an error, as in dgm-eval.
"""

from __future__ import annotations

from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.distribution import FeatureDistributionScorer


def gaussian_statistics(features):
    import numpy as np

    reps = np.asarray(features, dtype=np.float64)
    return np.atleast_1d(reps.mean(axis=0)), np.atleast_2d(np.cov(reps, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    import numpy as np
    from scipy import linalg

    root = linalg.sqrtm(sigma1 @ sigma2)  # dgm-eval passes disp=False, deprecated in SciPy 1.17: same result
    if not np.isfinite(root).all():  # a near-singular product: regularise both covariances
        offset = np.eye(len(sigma1)) * eps
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise UserError(f"fd: the covariance product has an imaginary square root "
                            f"(|imag| up to {np.abs(root.imag).max():.3g}); too few images for the dimension?")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


class FDDinov2(FeatureDistributionScorer):
    name: ClassVar[str] = "fd-dinov2"
    extractor: ClassVar[str] = "dinov2-vit-l14"

    @classmethod
    def variant(cls, **_: Any) -> str:
        return "/dgm-eval-fd"

    def distance(self, generated, real) -> tuple[float, dict[str, Any]]:
        mu_r, sigma_r = gaussian_statistics(real)
        mu_g, sigma_g = gaussian_statistics(generated)
        return frechet_distance(mu_r, sigma_r, mu_g, sigma_g), {}
