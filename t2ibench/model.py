"""The text-to-image model the trainer produces and the generator samples from.

A `TextToImageModel` is a backbone (a registered variant: diffusers UNet or PixArt transformer), a
frozen text encoder that gives per-token context (OpenCLIP-H for the study, 77 x 1024), an optional
frozen VAE (SDXL's for the study; `None` means the backbone works in pixel space, as the demo's
micro variants do), and the DDPM noise schedule it was trained with. Trainer and generator both go
through `predict_noise`, so a checkpoint means the same thing to both.

On disk (a directory; also the model part of a trainer checkpoint):
    t2ibench_model.json     format version, variant spec, components, schedule, training tags
    backbone/               diffusers save_pretrained (config.json + safetensors)
    ema_backbone/           optional, same format
    text_encoder/           config.json + model.safetensors (open_clip text tower), unless referenced
    vae/                    diffusers AutoencoderKL, unless referenced or pixel space
A frozen component the size of OpenCLIP-H or the SDXL VAE can be stored as a reference
(`{"ref": {...WeightFile fields...}}`) instead of a copy, and is then resolved through
t2ibench.weights like every scorer's weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2ibench.errors import UserError
from t2ibench.weights import WeightFile, resolve

MODEL_FILE = "t2ibench_model.json"
FORMAT_VERSION = 1

# The study's frozen components (protocol.md): OpenCLIP-H text tower and the SDXL VAE.
OPENCLIP_H = WeightFile("text_encoder", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "open_clip_model.safetensors")
SDXL_VAE = WeightFile("vae", "stabilityai/sdxl-vae", "", is_dir=True,
                      allow_patterns=("config.json", "diffusion_pytorch_model.safetensors"))
SDXL_VAE_SCALING = 0.13025


@dataclass
class NoiseSchedule:
    """DDPM schedule of LDM/SD2-base (the paper: "the setup of LDM for DDPM")."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"  # or "v_prediction"
    # Rescale betas to zero signal at t=T (Lin et al., 2024). Needs v-prediction; sampling then starts
    # at t=T exactly (trailing spacing), so no image content is read from the initial noise.
    rescale_betas_zero_snr: bool = False

    def ddpm(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(clip_sample=False, **asdict(self))

    def ddim(self):
        from diffusers import DDIMScheduler

        if self.rescale_betas_zero_snr:
            return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing", **asdict(self))
        # SD2-base inference settings for DDIM: leading spacing, steps_offset 1, no clipping.
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                             timestep_spacing="leading", **asdict(self))

    def training_target(self, scheduler, x0, noise, timesteps):
        """What the backbone learns to predict: the noise (epsilon) or the velocity (v)."""
        if self.prediction_type == "v_prediction":
            return scheduler.get_velocity(x0, noise, timesteps)
        return noise


class OpenClipTextEncoder(nn.Module):
    """Per-token context from an open_clip text tower, as SD2 uses OpenCLIP-H: the output of the
    penultimate transformer block after the final layer norm (`layer="penultimate"`), or the last."""

    def __init__(self, model_name: str, text_cfg: dict[str, Any], embed_dim: int, layer: str = "penultimate"):
        super().__init__()
        from open_clip.model import _build_text_tower

        self.model_name = model_name
        self.text_cfg = dict(text_cfg)
        self.embed_dim = embed_dim
        self.layer = layer
        self.tower = _build_text_tower(embed_dim, self.text_cfg)
        self.context_length = self.tower.context_length
        self.width = self.tower.transformer.width
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_open_clip_config(cls, model_name: str = "ViT-H-14", layer: str = "penultimate") -> "OpenClipTextEncoder":
        from open_clip import get_model_config

        cfg = get_model_config(model_name)
        if cfg is None:
            raise UserError(f"open_clip has no model config named {model_name!r}")
        return cls(model_name, cfg["text_cfg"], cfg["embed_dim"], layer)

    def config(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "text_cfg": self.text_cfg, "embed_dim": self.embed_dim,
                "layer": self.layer}

    def load_open_clip_weights(self, path: Path) -> None:
        """Load the text tower from a full open_clip CLIP checkpoint (.safetensors or .bin/.pt)."""
        state = _load_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith(("visual.", "logit_scale", "logit_bias"))}
        missing, unexpected = self.tower.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "attn_mask"]
        if missing or unexpected:
            raise UserError(f"{path} is not an open_clip {self.model_name} checkpoint "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        from open_clip.tokenizer import SimpleTokenizer

        if not hasattr(self, "_tokenizer"):
            self._tokenizer = SimpleTokenizer(context_length=self.context_length)
        return self._tokenizer(prompts)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = self.tower
        x = t.token_embedding(tokens) + t.positional_embedding
        blocks = t.transformer.resblocks
        if self.layer == "penultimate":
            blocks = blocks[:-1]
        if not t.transformer.batch_first:
            x = x.transpose(0, 1)
        for block in blocks:
            x = block(x, attn_mask=t.attn_mask)
        if not t.transformer.batch_first:
            x = x.transpose(0, 1)
        return t.ln_final(x)

    def encode(self, prompts: list[str], device: torch.device | str | None = None) -> torch.Tensor:
        tokens = self.tokenize(prompts).to(device or next(self.parameters()).device)
        return self(tokens)


@dataclass
class ModelInfo:
    """What a checkpoint says about itself; training tags are filled by the trainer."""

    variant: dict[str, Any]  # VariantSpec.to_dict()
    text_encoder: dict[str, Any] = field(default_factory=dict)  # config or {"ref": ...}
    vae: dict[str, Any] | None = None  # None = pixel space; {"scaling_factor": ...} or {"ref": ...}
    schedule: dict[str, Any] = field(default_factory=lambda: asdict(NoiseSchedule()))
    resolution: int = 256
    tags: dict[str, Any] = field(default_factory=dict)  # run, step, samples_seen, train_flops, recipe hash
    format_version: int = FORMAT_VERSION


class TextToImageModel(nn.Module):
    def __init__(self, backbone: nn.Module, text_encoder: OpenClipTextEncoder, vae: nn.Module | None,
                 info: ModelInfo, ema_backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.vae = vae
        self.info = info
        self.ema_backbone = ema_backbone
        self.schedule = NoiseSchedule(**info.schedule)
        if vae is not None:
            vae.requires_grad_(False)
            vae.eval()

    # -- the one definition of the model's maths, shared by trainer and sampler -------------------
    @property
    def is_pixel_space(self) -> bool:
        return self.vae is None

    @property
    def vae_scaling(self) -> float:
        return float((self.info.vae or {}).get("scaling_factor", SDXL_VAE_SCALING))

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        cfg = self.backbone.config
        side = cfg.sample_size
        return (batch, cfg.in_channels, side, side)

    def predict_noise(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, backbone: nn.Module | None = None) -> torch.Tensor:
        net = backbone if backbone is not None else self.backbone  # `or` would call len() on a compiled module
        config = getattr(net, "module", net).config  # a DDP-wrapped backbone keeps its config on .module
        if hasattr(config, "patch_size") and hasattr(config, "caption_channels"):  # PixArt
            out = net(x, encoder_hidden_states=context, timestep=t,
                      added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
            return out[:, : x.shape[1]]  # drop the learned-variance channels
        return net(x, t, encoder_hidden_states=context).sample

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] -> what the backbone denoises (latents, or the pixels themselves)."""
        if self.vae is None:
            return pixels
        return self.vae.encode(pixels).latent_dist.sample() * self.vae_scaling

    @torch.no_grad()
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone space -> pixels in [-1, 1]."""
        if self.vae is None:
            return x.clamp(-1, 1)
        return self.vae.decode(x / self.vae_scaling).sample.clamp(-1, 1)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        return self.text_encoder.encode(prompts)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: Path | str, *, embed_frozen: bool = True) -> Path:
        """Write atomically: a crash mid-save leaves any previous copy at `directory` intact."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.backbone.save_pretrained(tmp / "backbone", safe_serialization=True)
            if self.ema_backbone is not None:
                self.ema_backbone.save_pretrained(tmp / "ema_backbone", safe_serialization=True)
            info = ModelInfo(**asdict(self.info))
            if embed_frozen or "ref" not in info.text_encoder:
                _save_text_encoder(self.text_encoder, tmp / "text_encoder")
                info.text_encoder = self.text_encoder.config()
            if self.vae is not None and (embed_frozen or "ref" not in (info.vae or {})):
                self.vae.save_pretrained(tmp / "vae", safe_serialization=True)
                info.vae = {"scaling_factor": self.vae_scaling}
            (tmp / MODEL_FILE).write_text(json.dumps(asdict(info), indent=2))
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: Path | str, *, ema: bool = False, device: str = "cpu") -> "TextToImageModel":
        directory = Path(directory)
        raw = read_model_file(directory)
        if raw.get("format_version", 0) > FORMAT_VERSION:
            raise UserError(f"{directory} was written by a newer t2ibench (format {raw['format_version']})")
        with _damaged_part(directory / MODEL_FILE):
            info = ModelInfo(**raw)
        part = directory / ("ema_backbone" if ema else "backbone")
        with _damaged_part(part):
            backbone = _load_backbone(part, info, ema)
        with _damaged_part(directory / "text_encoder"):
            text_encoder = _load_text_encoder(directory / "text_encoder", info.text_encoder)
        vae = None
        if info.vae is not None:
            with _damaged_part(directory / "vae"):
                vae = _load_vae(directory / "vae", info.vae)
        _check_parts_agree(directory, backbone, text_encoder, vae)
        model = cls(backbone, text_encoder, vae, info)
        return model.to(device)


def build_model(variant_spec, *, text_encoder: OpenClipTextEncoder, vae: nn.Module | None = None,
                schedule: NoiseSchedule | None = None, resolution: int = 256, device: str = "cpu") -> TextToImageModel:
    """A fresh model with random backbone weights for `variant_spec` (a t2ibench.variants spec)."""
    backbone = variant_spec.build(device=device)
    info = ModelInfo(variant=variant_spec.to_dict(), text_encoder=text_encoder.config(),
                     vae=None if vae is None else {"scaling_factor": getattr(vae.config, "scaling_factor", SDXL_VAE_SCALING)},
                     schedule=asdict(schedule or NoiseSchedule()), resolution=resolution)
    return TextToImageModel(backbone, text_encoder, vae, info)


def read_model_file(directory: Path | str) -> dict[str, Any]:
    """The checkpoint's t2ibench_model.json, or one line saying it is missing or damaged."""
    meta = Path(directory) / MODEL_FILE
    if not meta.is_file():
        raise UserError(f"{directory} is not a t2ibench checkpoint (no {MODEL_FILE})")
    try:
        raw = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{meta} is damaged ({_first_line(exc)}); restore it or use another checkpoint") from None
    if not isinstance(raw, dict):
        raise UserError(f"{meta} is damaged (not a JSON object); restore it or use another checkpoint")
    return raw


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


@contextlib.contextmanager
def _damaged_part(path: Path):
    """A truncated weights file or a corrupt config.json in one part: one line naming the part."""
    from safetensors import SafetensorError

    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, SafetensorError) as exc:
        raise UserError(f"{path} is damaged or incomplete ({_first_line(exc)}); restore it, or use another "
                        "checkpoint") from None


def replace_dir(new: Path, target: Path) -> None:
    """Move a finished directory into place; the old one is removed only after the new one is in."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _save_text_encoder(encoder: OpenClipTextEncoder, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(encoder.config(), indent=2))
    state = {k: v.contiguous() for k, v in encoder.tower.state_dict().items() if k != "attn_mask"}
    save_file(state, str(directory / "model.safetensors"))


def _load_text_encoder(directory: Path, cfg: dict[str, Any]) -> OpenClipTextEncoder:
    if "ref" in cfg:
        wf = WeightFile(**cfg["ref"])
        encoder = OpenClipTextEncoder.from_open_clip_config(cfg.get("model_name", "ViT-H-14"), cfg.get("layer", "penultimate"))
        encoder.load_open_clip_weights(resolve(wf))
        return encoder
    if not (directory / "model.safetensors").is_file():
        raise UserError(f"checkpoint is missing its text encoder ({directory / 'model.safetensors'})")
    cfg = json.loads((directory / "config.json").read_text())
    encoder = OpenClipTextEncoder(cfg["model_name"], cfg["text_cfg"], cfg["embed_dim"], cfg.get("layer", "penultimate"))
    encoder.load_open_clip_weights(directory / "model.safetensors")
    return encoder


def _load_vae(directory: Path, cfg: dict[str, Any]):
    from diffusers import AutoencoderKL

    path = resolve(WeightFile(**cfg["ref"])) if "ref" in cfg else directory
    if not Path(path).is_dir():
        raise UserError(f"checkpoint is missing its VAE ({directory})")
    return AutoencoderKL.from_pretrained(path)


def _load_backbone(directory: Path, info: ModelInfo, ema: bool):
    from diffusers import PixArtTransformer2DModel, UNet2DConditionModel

    if not (directory / "config.json").is_file():
        what = "EMA weights (train with ema=true, or evaluate without --ema)" if ema else "backbone weights"
        raise UserError(f"checkpoint has no {what} at {directory}")
    cls_name = json.loads((directory / "config.json").read_text()).get("_class_name")
    classes = {"UNet2DConditionModel": UNet2DConditionModel, "PixArtTransformer2DModel": PixArtTransformer2DModel}
    if cls_name not in classes:
        raise UserError(f"{directory}: unsupported backbone class {cls_name!r}")
    return classes[cls_name].from_pretrained(directory)


def _check_parts_agree(directory: Path, backbone, text_encoder: OpenClipTextEncoder, vae) -> None:
    cfg = backbone.config
    context_dim = getattr(cfg, "cross_attention_dim", None)
    if hasattr(cfg, "caption_channels") and cfg.caption_channels is not None:
        context_dim = cfg.caption_channels
    if context_dim is not None and context_dim != text_encoder.width:
        raise UserError(f"{directory}: backbone expects {context_dim}-d text tokens but the text encoder gives {text_encoder.width}")
    in_ch = cfg.in_channels
    want = 3 if vae is None else vae.config.latent_channels
    if in_ch != want:
        raise UserError(f"{directory}: backbone takes {in_ch} channels but the {'pixel space' if vae is None else 'VAE'} gives {want}")
