"""What a run config builds: the variant spec at the run's size, the frozen text encoder and VAE.

The study's frozen parts (OpenCLIP-H, SDXL VAE) are resolved through t2ibench.weights (a missing
file stops with one line naming it). For CPU runs, `model.text_encoder=tiny` and `model.vae=tiny|none`
build small random frozen parts of the same architectures from a FIXED seed, so every run (and every
variant in a comparison) sees the same frozen encoder, as it would with pretrained weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path

import torch

from t2ibench.deprecation import moved_names
from t2ibench.errors import UserError
from t2ibench.model import (
    OPENCLIP_H,
    SDXL_VAE,
    SDXL_VAE_SCALING,
    ModelInfo,
    NoiseSchedule,
    OpenClipTextEncoder,
    TextToImageModel,
)
from t2ibench.train.config import RunConfig
from t2ibench.variants import VariantSpec

FROZEN_SEED = 20240402  # tiny frozen parts: the same random weights in every run
TINY_VAE_SCALING = 1.0


def build_text_encoder(config: RunConfig) -> tuple[OpenClipTextEncoder, dict]:
    """The frozen text encoder and how a checkpoint refers to it ({} = copied into the checkpoint)."""
    choice = config.model.text_encoder
    if choice == "tiny":
        m = config.model
        text_cfg = {"context_length": m.tiny_text_tokens, "vocab_size": 49408, "width": m.tiny_text_width,
                    "heads": max(1, m.tiny_text_width // 32), "layers": m.tiny_text_layers}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(FROZEN_SEED)
            encoder = OpenClipTextEncoder("tiny", text_cfg, m.tiny_text_width)
        return encoder, {}
    from t2ibench.weights import resolve

    explicit = None if choice == "openclip-h" else Path(choice)
    if explicit is None and config.model.weights_dir:
        explicit = Path(config.model.weights_dir)
    path = resolve(OPENCLIP_H, explicit)  # a missing file stops here, before ~350M parameters are built
    encoder = OpenClipTextEncoder.from_open_clip_config("ViT-H-14")
    encoder.load_open_clip_weights(path)
    ref = {"ref": asdict(OPENCLIP_H)} if choice == "openclip-h" and not config.checkpoint.embed_frozen else {}
    return encoder, ref


def build_vae(config: RunConfig):
    """(vae or None for pixel space, checkpoint reference dict, spatial downsampling factor)."""
    from diffusers import AutoencoderKL

    choice = config.model.vae
    if choice == "none":
        return None, {}, 1
    if choice == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(FROZEN_SEED)
            vae = AutoencoderKL(
                in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(8, 16, 16, 16), sample_size=config.resolution, scaling_factor=TINY_VAE_SCALING,
            )
        return vae.requires_grad_(False).eval(), {}, 8
    from t2ibench.weights import resolve

    explicit = None if choice == "sdxl-vae" else Path(choice)
    if explicit is None and config.model.weights_dir:
        explicit = Path(config.model.weights_dir)
    path = resolve(SDXL_VAE, explicit)
    vae = AutoencoderKL.from_pretrained(path)
    if choice == "sdxl-vae" and vae.config.scaling_factor != SDXL_VAE_SCALING:
        raise UserError(f"{path}: not the SDXL VAE (scaling factor {vae.config.scaling_factor})")
    ref = {"ref": asdict(SDXL_VAE)} if choice == "sdxl-vae" and not config.checkpoint.embed_frozen else {}
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return vae.requires_grad_(False).eval(), ref, factor


def build_spec(config: RunConfig, *, in_channels: int, sample_size: int, context_dim: int, context_tokens: int,
               spec: VariantSpec | None = None) -> VariantSpec:
    """The registered variant (`spec`, looked up by the caller; else by `config.variant`) at the run's
    size (`model.*` width/depth overrides, already typed by the run config)."""
    if spec is None:
        from t2ibench.variants import get_variant

        spec = get_variant(config.variant)
    fields = {f.name for f in dataclasses.fields(spec)}
    m = config.model
    sizes = {"channels": m.channels, "transformer_depth": m.transformer_depth, "hidden": m.hidden,
             "depth": m.depth, "heads": m.heads, "head_dim": m.head_dim, "norm_groups": m.norm_groups}
    wrong = [k for k, v in sizes.items() if v is not None and k not in fields]
    if wrong:
        raise UserError(f"model.{wrong[0]} does not apply to {spec.name} ({spec.kind}); "
                        f"its size fields are {', '.join(k for k in sizes if k in fields)}")
    overrides = {k: v for k, v in sizes.items() if v is not None}
    overrides.update(in_channels=in_channels, sample_size=sample_size, context_dim=context_dim,
                     context_tokens=context_tokens)
    return spec.with_sizes(**overrides)


def new_run_model(config: RunConfig, spec: VariantSpec | None = None) -> TextToImageModel:
    """A fresh model for the run: backbone initialised from `config.seed`, frozen parts as configured.
    (`t2ibench.model.build_model` builds a model from a variant spec and given frozen parts.)"""
    return build_run_model(config, spec)[0]


# The old name collided with t2ibench.model.build_model.
__getattr__ = moved_names(__name__, {"build_model": "t2ibench.train.components:new_run_model"})


def build_run_model(config: RunConfig, spec: VariantSpec | None = None) -> tuple[TextToImageModel, VariantSpec]:
    """`new_run_model`, plus the variant spec at the run's size (what the compute account counts)."""
    text_encoder, text_ref = build_text_encoder(config)
    vae, vae_ref, factor = build_vae(config)
    if config.resolution % factor:
        raise UserError(f"resolution {config.resolution} is not divisible by the VAE's factor {factor}")
    in_channels = 3 if vae is None else vae.config.latent_channels
    spec = build_spec(config, in_channels=in_channels, sample_size=config.resolution // factor,
                      context_dim=text_encoder.width, context_tokens=text_encoder.context_length, spec=spec)
    backbone = spec.build(seed=config.seed)
    vae_info = None
    if vae is not None:
        vae_info = {"scaling_factor": float(vae.config.scaling_factor), **vae_ref}
    info = ModelInfo(variant=spec.to_dict(), text_encoder={**text_encoder.config(), **text_ref}, vae=vae_info,
                     schedule=asdict(noise_schedule(config)), resolution=config.resolution)
    return TextToImageModel(backbone, text_encoder, vae, info), spec


def noise_schedule(config) -> NoiseSchedule:
    m = config.model
    if m.beta_schedule not in ("scaled_linear", "linear"):
        raise UserError(f"model.beta_schedule must be scaled_linear or linear, not {m.beta_schedule!r}")
    if m.prediction_type not in ("epsilon", "v_prediction"):
        raise UserError(f"model.prediction_type must be epsilon or v_prediction, not {m.prediction_type!r}")
    if m.zero_terminal_snr and m.prediction_type != "v_prediction":
        raise UserError("model.zero_terminal_snr=true needs model.prediction_type=v_prediction "
                        "(epsilon carries no information at zero signal)")
    return NoiseSchedule(beta_schedule=m.beta_schedule, beta_start=m.beta_start, beta_end=m.beta_end,
                         prediction_type=m.prediction_type, rescale_betas_zero_snr=m.zero_terminal_snr)
