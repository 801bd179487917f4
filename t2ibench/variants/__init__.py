"""Backbone variants of the study: `VARIANTS` (name -> spec), `get_variant`, and compute accounting.

    from t2ibench.variants import get_variant, compute_stats
    spec = get_variant("sdxl_td4_8")
    model = spec.scaled(channels=32, transformer_depth=(0, 1, 1), in_channels=3, context_dim=64).build()
"""

from t2ibench.variants.registry import VARIANTS, get_variant
from t2ibench.variants.spec import PixArtSpec, UNetSpec, VariantSpec

__all__ = [
    "VARIANTS", "get_variant", "VariantSpec", "UNetSpec", "PixArtSpec",
    "compute_stats", "protocol_stats", "ComputeStats",
]


def __getattr__(name):
    # compute.py imports torch; keep `import t2ibench.variants` light for the CLI's start-up.
    if name in ("compute_stats", "protocol_stats", "ComputeStats"):
        from t2ibench.variants import compute

        return getattr(compute, name)
    raise AttributeError(name)
