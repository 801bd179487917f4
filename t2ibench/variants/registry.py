"""Every backbone of the study: Table 1 (UNets) and Table 2 (PixArt-alpha DiTs), name -> spec.

Names follow the paper's tables (`../shared/data/paper/table{1,2}_*.csv`). All use the study's
conditioning: OpenCLIP-H tokens (77 x 1024) as cross-attention context, no extra embeddings, except
`pixart_xl2_original`, which keeps PixArt-alpha's Flan-T5-XXL tokens (120 x 4096).
"""

from __future__ import annotations

from t2ibench.errors import UserError
from t2ibench.variants.spec import PixArtSpec, UNetSpec, VariantSpec


def _sd2(name: str, channels: int, description: str) -> UNetSpec:
    # SD2: 4 levels (x1, x2, x4, x4), attention at the first three, 1 transformer block each.
    return UNetSpec(
        name=name, family="SD2", channels=channels, channel_mult=(1, 2, 4, 4), res_blocks=2,
        transformer_depth=(1, 1, 1, 0), description=description,
    )


def _ifxl(name: str, channels: int, description: str) -> UNetSpec:
    # DeepFloyd IF-I-XL topology: mult (1, 2, 3, 4), 3 resnets per level, IF's "simple" cross-attention
    # at IF's attention resolutions 32, 16, 8 -- the first three levels of a 32x32 latent.
    return UNetSpec(
        name=name, family="IF-XL", channels=channels, channel_mult=(1, 2, 3, 4), res_blocks=3,
        transformer_depth=(1, 1, 1, 0), attention="simple", description=description,
    )


def _sdxl(name: str, channels: int = 320, depth: tuple[int, int] = (2, 10), description: str = "") -> UNetSpec:
    # SDXL: 3 levels (x1, x2, x4), no attention at the first, `depth` transformer blocks at the others.
    return UNetSpec(
        name=name, family="SDXL", channels=channels, channel_mult=(1, 2, 4), res_blocks=2,
        transformer_depth=(0, *depth), description=description,
    )


def _pixart(name: str, hidden: int, depth: int, description: str, **kw) -> PixArtSpec:
    return PixArtSpec(name=name, family="PixArt", hidden=hidden, depth=depth, heads=16, patch=2,
                      description=description, **kw)


_ALL: tuple[VariantSpec, ...] = (
    # Table 1: UNets
    _sd2("sd2", 320, "SD2 UNet with OpenCLIP-H context"),
    _sd2("sd2_c512", 512, "SD2 UNet, base channels 512"),
    _ifxl("ifxl_c512", 512, "DeepFloyd IF-I-XL UNet adapted to latents + OpenCLIP-H (see docs/variants.md)"),
    _ifxl("ifxl_c704", 704, "IF-XL UNet, base channels 704"),
    _sdxl("sdxl_c128", 128, description="SDXL, base channels 128"),
    _sdxl("sdxl_c192", 192, description="SDXL, base channels 192"),
    _sdxl("sdxl", description="SDXL UNet without micro-conditioning, 1024-d context"),
    _sdxl("sdxl_c384", 384, description="SDXL, base channels 384"),
    _sdxl("sdxl_td2", depth=(2, 2), description="SDXL, 2 transformer blocks at the x4 level"),
    _sdxl("sdxl_td4", depth=(2, 4), description="SDXL, 4 transformer blocks at the x4 level"),
    _sdxl("sdxl_td12", depth=(2, 12), description="SDXL, 12 transformer blocks at the x4 level"),
    _sdxl("sdxl_td14", depth=(2, 14), description="SDXL, 14 transformer blocks at the x4 level"),
    _sdxl("sdxl_td4_4", depth=(4, 4), description="SDXL, 4+4 transformer blocks (paper: 45% fewer params)"),
    _sdxl("sdxl_td4_8", depth=(4, 8), description="SDXL, 4+8 transformer blocks (paper: ~SDXL scores)"),
    _sdxl("sdxl_td4_12", depth=(4, 12), description="SDXL, 4+12 transformer blocks"),
    _sdxl("sdxl_c384_td4_12", 384, (4, 12), description="SDXL, base channels 384, 4+12 transformer blocks"),
    # Table 2: PixArt-alpha
    _pixart("pixart_xl2_original", 1152, 28, "PixArt-alpha XL/2 with its Flan-T5-XXL tokens",
            context_dim=4096, context_tokens=120),
    _pixart("pixart_h1152_d28", 1152, 28, "PixArt-alpha XL/2 with OpenCLIP-H tokens"),
    _pixart("pixart_h1536_d28", 1536, 28, "PixArt-alpha, hidden 1536"),
    _pixart("pixart_h1024_d28", 1024, 28, "PixArt-alpha, hidden 1024, no caption projection",
            caption_projection=False),
    _pixart("pixart_h1024_d56", 1024, 56, "PixArt-alpha, hidden 1024, depth 56, no caption projection",
            caption_projection=False),
)

VARIANTS: dict[str, VariantSpec] = {spec.name: spec for spec in _ALL}


def get_variant(name: str) -> VariantSpec:
    """The registered spec called `name`; a UserError listing the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UserError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None
