"""Typed specs of the study's backbones: a frozen dataclass per family that builds the diffusers model.

A spec is a pure description (JSON-able, hashable); `build()` turns it into a randomly initialised
`UNet2DConditionModel` or `PixArtTransformer2DModel`. `scaled(**overrides)` keeps the topology and
changes sizes, so a registered variant can also be built small enough to train on a CPU.

Conditioning is the study's throughout: text tokens (`context_tokens` x `context_dim`, OpenCLIP-H
77 x 1024 by default) as cross-attention context, and nothing else -- no pooled-text/time "addition"
embeddings, no size/crop micro-conditioning.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from t2ibench.errors import UserError

FAMILIES = ("SD2", "SDXL", "IF-XL", "PixArt")


def _as_int_tuple(value: Any, field: str) -> tuple[int, ...]:
    """Accept (0, 2, 10), [0, 2, 10] or "0,2,10" (the form `key=value` overrides arrive in)."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").strip("()[]").split(",") if v]
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{field} must be a list of integers like 0,2,10, got {value!r}") from None


@dataclass(frozen=True, kw_only=True)
class VariantSpec:
    """Fields every backbone has. Subclasses: `UNetSpec`, `PixArtSpec`."""

    kind: ClassVar[str] = ""
    name: str
    family: str
    in_channels: int = 4  # SDXL-VAE latent; 3 for a pixel-space micro model
    out_channels: int | None = None  # None: same as in_channels (epsilon prediction)
    sample_size: int = 32  # side of the (latent) input: 256 px / VAE factor 8
    context_dim: int = 1024  # width of the text tokens (OpenCLIP-H: 1024)
    context_tokens: int = 77  # number of text tokens (OpenCLIP: 77)
    description: str = ""

    _tuple_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise UserError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        for field in ("in_channels", "sample_size", "context_dim", "context_tokens"):
            if int(getattr(self, field)) < 1:
                raise UserError(f"{field} must be a positive integer, got {getattr(self, field)!r}")

    @property
    def out_ch(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    # --- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "VariantSpec":
        data = dict(data)
        kind = data.pop("kind", None)
        classes = {cls.kind: cls for cls in (UNetSpec, PixArtSpec)}
        if kind not in classes:
            raise UserError(f"variant spec has kind {kind!r}; expected one of {', '.join(classes)}")
        return classes[kind]._from_fields(data)

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> "VariantSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown {cls.kind} spec field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**cls._coerce(data))

    @classmethod
    def _coerce(cls, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        for key in cls._tuple_fields:
            if key in out and out[key] is not None:
                out[key] = _as_int_tuple(out[key], key)
        int_fields = {f.name for f in dataclasses.fields(cls) if f.type in ("int", "int | None")}
        for key in int_fields & set(out):
            if out[key] is None:
                continue
            try:
                out[key] = int(out[key])
            except (TypeError, ValueError):
                raise UserError(f"{key} must be an integer, got {out[key]!r}") from None
        bool_fields = {f.name for f in dataclasses.fields(cls) if f.type == "bool"}
        for key in bool_fields & set(out):
            if isinstance(out[key], str):
                if out[key].lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise UserError(f"{key} must be true or false, got {out[key]!r}")
                out[key] = out[key].lower() in ("true", "1", "yes")
        return out

    def scaled(self, **overrides: Any) -> "VariantSpec":
        """The same topology with some sizes changed, e.g. `get_variant("sdxl").scaled(channels=32,
        transformer_depth=(0, 1, 1), in_channels=3, sample_size=32, context_dim=64)`; values may be
        strings ("0,1,1", "64"), parsed here."""
        self._check_size_keys(overrides)
        return self.with_sizes(**self._coerce(overrides))

    def with_sizes(self, **sizes: Any) -> "VariantSpec":
        """`scaled` for values that are already typed (e.g. a run config's, parsed by its owner)."""
        self._check_size_keys(sizes)
        return dataclasses.replace(self, **sizes)

    def _check_size_keys(self, sizes: dict[str, Any]) -> None:
        known = {f.name for f in dataclasses.fields(self)} - {"family"}
        unknown = sorted(set(sizes) - known)
        if unknown:
            raise UserError(
                f"cannot scale {self.name} ({self.kind}) by {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )

    # --- model -------------------------------------------------------------------------------
    def diffusers_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def model_class(self):
        raise NotImplementedError

    def build(self, device: Any = "cpu", dtype: Any = None, seed: int | None = None):
        """The diffusers model with random weights. `device="meta"` allocates nothing (for counting)."""
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        with torch.device(device):
            model = self.model_class()(**self.diffusers_config())
        if dtype is not None:
            model = model.to(dtype=dtype)
        return model

    def dummy_inputs(self, batch: int = 1, device: Any = "cpu", dtype: Any = None):
        """(noisy latent, timesteps, text tokens) of the protocol's shapes for this spec."""
        import torch

        sample = torch.randn(batch, self.in_channels, self.sample_size, self.sample_size, device=device, dtype=dtype)
        timesteps = torch.full((batch,), 500, device=device, dtype=torch.long)
        context = torch.randn(batch, self.context_tokens, self.context_dim, device=device, dtype=dtype)
        return sample, timesteps, context

    def denoise(self, model, sample, timesteps, context):
        """One call that works for both families: the model's prediction, shape (B, out_ch, H, W)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class UNetSpec(VariantSpec):
    """An SD2 / SDXL / IF-style UNet.

    `transformer_depth[i]` is the number of transformer blocks after each resnet of level i (0 = no
    attention at that level); the mid block gets the depth of the deepest level with attention.
    `attention="transformer"` is the SD2/SDXL block (Transformer2DModel: self-attn, cross-attn, FF);
    `attention="simple"` is DeepFloyd IF's (text tokens joined to the self-attention's keys/values).
    Widths are `channels * channel_mult[i]`; each must be divisible by `norm_groups` (GroupNorm).
    Heads per level: max(1, width // head_dim).
    """

    kind: ClassVar[str] = "unet"
    _tuple_fields: ClassVar[tuple[str, ...]] = ("channel_mult", "transformer_depth")
    channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4)
    res_blocks: int = 2
    transformer_depth: tuple[int, ...] = (0, 2, 10)
    head_dim: int = 64
    norm_groups: int = 32
    attention: str = "transformer"  # "transformer" (SD2/SDXL) | "simple" (DeepFloyd IF)
    # DeepFloyd IF adds an attention-pooled text vector to the time embedding. Off everywhere in the
    # registry (the study: no extra embeddings); see docs/variants.md, The IF-XL rows for what it changes.
    pooled_text_embedding: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.channel_mult) != len(self.transformer_depth):
            raise UserError(
                f"{self.name}: transformer_depth needs one entry per level ({len(self.channel_mult)}), "
                f"got {len(self.transformer_depth)}"
            )
        if not any(self.transformer_depth):
            raise UserError(f"{self.name}: at least one level needs attention (a transformer_depth > 0)")
        if min(self.transformer_depth) < 0 or self.res_blocks < 1 or self.channels < 1 or self.head_dim < 1:
            raise UserError(f"{self.name}: depths must be >= 0 and channels, res_blocks, head_dim >= 1")
        if self.attention not in ("transformer", "simple"):
            raise UserError(f"{self.name}: attention must be 'transformer' or 'simple', got {self.attention!r}")
        if self.attention == "simple" and max(self.transformer_depth) > 1:
            raise UserError(f"{self.name}: IF-style 'simple' attention has one block per resnet; depth must be 0 or 1")
        for width in self.widths:
            if width % self.norm_groups:
                raise UserError(
                    f"{self.name}: width {width} is not divisible by norm_groups={self.norm_groups}; "
                    "pick channels that are a multiple of norm_groups or set norm_groups"
                )
            if self.attention == "simple" and width % self.simple_head_dim:
                raise UserError(f"{self.name}: width {width} is not divisible by the head width {self.simple_head_dim}")
            if width % self.heads_for(width):
                raise UserError(f"{self.name}: width {width} is not divisible into {self.heads_for(width)} heads")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.channels * m for m in self.channel_mult)

    def heads_for(self, width: int) -> int:
        return max(1, width // self.head_dim)

    @property
    def simple_head_dim(self) -> int:
        """IF-style blocks: one head width for all levels, capped by the narrowest attention level."""
        return min(self.head_dim, min(w for w, d in zip(self.widths, self.transformer_depth) if d))

    @property
    def mid_transformer_depth(self) -> int:
        return [d for d in self.transformer_depth if d][-1]

    def model_class(self):
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel

    def diffusers_config(self) -> dict[str, Any]:
        attn = [d > 0 for d in self.transformer_depth]
        if self.attention == "transformer":
            down_plain, down_attn = "DownBlock2D", "CrossAttnDownBlock2D"
            up_plain, up_attn = "UpBlock2D", "CrossAttnUpBlock2D"
            mid = "UNetMidBlock2DCrossAttn"
        else:
            down_plain, down_attn = "ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"
            up_plain, up_attn = "ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D"
            mid = "UNetMidBlock2DSimpleCrossAttn"
        # diffusers ties the mid block's depth to the last level's entry; a level without attention
        # ignores its entry, so it can carry the mid depth.
        layers = [max(d, 1) for d in self.transformer_depth]
        if not attn[-1]:
            layers[-1] = self.mid_transformer_depth
        config: dict[str, Any] = dict(
            sample_size=self.sample_size,
            in_channels=self.in_channels,
            out_channels=self.out_ch,
            down_block_types=tuple(down_attn if a else down_plain for a in attn),
            up_block_types=tuple(up_attn if a else up_plain for a in reversed(attn)),
            mid_block_type=mid,
            block_out_channels=self.widths,
            layers_per_block=self.res_blocks,
            # diffusers' `attention_head_dim` is really the number of heads (a known naming quirk).
            attention_head_dim=tuple(self.heads_for(w) for w in self.widths),
            cross_attention_dim=self.context_dim,
            norm_num_groups=self.norm_groups,
        )
        if self.pooled_text_embedding:
            config.update(addition_embed_type="text", addition_embed_type_num_heads=64)
        if self.attention == "transformer":
            config.update(transformer_layers_per_block=tuple(layers), use_linear_projection=True)
        else:
            # DeepFloyd IF-I's UNet settings, minus its T5 projection and pooled-text embedding
            # (the study: no extra embeddings). See docs/variants.md, The IF-XL rows.
            config.update(
                act_fn="gelu",
                resnet_time_scale_shift="scale_shift",
                cross_attention_norm="group_norm",
                # The simple blocks take the per-head width here (heads = width // this). It must be
                # one value: diffusers does not reverse a per-level list for the up blocks.
                attention_head_dim=self.simple_head_dim,
            )
        return config

    def denoise(self, model, sample, timesteps, context):
        return model(sample, timesteps, encoder_hidden_states=context).sample


@dataclass(frozen=True, kw_only=True)
class PixArtSpec(VariantSpec):
    """A PixArt-alpha DiT (adaLN-single, cross-attention to text tokens).

    With `caption_projection=True` text tokens go through PixArt's caption MLP (context_dim -> hidden);
    without it the tokens are used as they are, so context_dim must equal hidden.
    """

    kind: ClassVar[str] = "pixart"
    hidden: int = 1152
    depth: int = 28
    heads: int = 16
    patch: int = 2
    caption_projection: bool = True
    norm_groups: int = 32  # unused by PixArt; kept so the same override works for every family

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden < 1 or self.depth < 1 or self.heads < 1 or self.patch < 1:
            raise UserError(f"{self.name}: hidden, depth, heads and patch must be >= 1")
        if self.hidden % self.heads:
            raise UserError(f"{self.name}: hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.sample_size % self.patch:
            raise UserError(f"{self.name}: sample_size={self.sample_size} is not divisible by patch={self.patch}")
        if not self.caption_projection and self.context_dim != self.hidden:
            raise UserError(
                f"{self.name}: without caption_projection the text width ({self.context_dim}) must equal "
                f"hidden ({self.hidden})"
            )

    def model_class(self):
        from diffusers import PixArtTransformer2DModel

        return PixArtTransformer2DModel

    def diffusers_config(self) -> dict[str, Any]:
        return dict(
            num_attention_heads=self.heads,
            attention_head_dim=self.hidden // self.heads,
            in_channels=self.in_channels,
            out_channels=self.out_ch,
            num_layers=self.depth,
            cross_attention_dim=self.hidden,
            sample_size=self.sample_size,
            patch_size=self.patch,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            caption_channels=self.context_dim if self.caption_projection else None,
            use_additional_conditions=False,  # no resolution / aspect-ratio micro-conditioning
        )

    def denoise(self, model, sample, timesteps, context):
        return model(sample, encoder_hidden_states=context, timestep=timesteps).sample
