"""Precision and recall (Kynkaanniemi et al., 2019) with torch-fidelity; density and coverage (Naeem
et al., 2020) with `prdc`, the authors' package. All on the cached Inception features FID reads.

Four registered metrics, one number each, so the leaderboard can show them apart: `precision` and
`recall` (torch-fidelity, k=3 neighbours, `<=` ball test), `density` and `coverage` (prdc, k=5, the
paper's default). Every result's `extra` carries all four of its own computation."""

from __future__ import annotations

import contextlib
import io
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.distribution import FeatureDistributionScorer

DEFAULT_K = {"precision": 3, "recall": 3, "density": 5, "coverage": 5}


class _Manifold(FeatureDistributionScorer):
    higher_is_better: ClassVar[bool] = True
    extractor: ClassVar[str] = "inception"
    component: ClassVar[str] = ""

    def __init__(self, device: str = "cpu", weights=None, *, k: int | str | None = None, **options: Any):
        try:
            self.k = int(k if k is not None else DEFAULT_K[self.component])
        except (TypeError, ValueError):
            self.k = 0
        if self.k < 1:
            raise UserError(f"{self.name}: k must be a positive integer; got {k!r}")
        # the k-th neighbour of a point, itself excluded (prdc's argpartition needs one more)
        self.min_images = self.k + (1 if self.component in ("precision", "recall") else 2)
        super().__init__(device, weights, k=self.k, **options)

    @classmethod
    def declared_version(cls, resize: str | None = None, **options: Any) -> str:
        from importlib.metadata import version

        from t2ibench.metrics.fid import DEFAULT_RESIZE, check_resize

        lib = "torch-fidelity" if cls.component in ("precision", "recall") else "prdc"
        k = int(options.get("k", DEFAULT_K[cls.component]))
        return (f"{cls.name}/{lib}-{version(lib)}:inception-v3-compat/{check_resize(resize or DEFAULT_RESIZE)}/k{k}")

    def distance(self, generated, real) -> tuple[float, dict[str, Any]]:
        values = manifold_metrics(generated, real, self.k, self.component)
        return values[self.component], values


def manifold_metrics(generated, real, k: int, component: str) -> dict[str, float]:
    """torch-fidelity's precision/recall or prdc's density/coverage (plus its precision/recall)."""
    if component in ("precision", "recall"):
        from torch_fidelity.metric_prc import (
            KEY_METRIC_PRECISION,
            KEY_METRIC_RECALL,
            prc_features_to_metric,
        )

        out = prc_features_to_metric(generated, real, prc_neighborhood=k, verbose=False)
        return {"precision": float(out[KEY_METRIC_PRECISION]), "recall": float(out[KEY_METRIC_RECALL])}
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        out = compute_prdc(real_features=real.numpy(), fake_features=generated.numpy(), nearest_k=k)
    return {f"prdc_{key}" if key in ("precision", "recall") else key: float(v) for key, v in out.items()}


class Precision(_Manifold):
    name: ClassVar[str] = "precision"
    component: ClassVar[str] = "precision"


class Recall(_Manifold):
    name: ClassVar[str] = "recall"
    component: ClassVar[str] = "recall"


class Density(_Manifold):
    name: ClassVar[str] = "density"
    component: ClassVar[str] = "density"


class Coverage(_Manifold):
    name: ClassVar[str] = "coverage"
    component: ClassVar[str] = "coverage"
