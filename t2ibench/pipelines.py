"""Diffusers text-to-image pipelines under the protocol: one small spec per family, and the sampler.

    info = inspect_pipeline_dir(Path("sdxl-base"))      # class, family, guidance kind: no weights read
    model = load_pipeline("sdxl-base", source=..., ckpt_hash=..., device="cuda", dtype="bf16")
    images = model.sample_images(prompts, seeds, protocol)  # uint8, image j from seed seeds[j]

Each family is sampled by its own pipeline's `__call__` (its prompt encoding, SDXL's time ids and pooled
embeddings, T5 masks, SD3/FLUX pooled projections, FLUX's guidance embedding), never re-implemented
here. What t2ibench decides is the protocol around that call:

* the scheduler: DDPM-trained families (epsilon or v) get DDIM from their own scheduler config;
  flow-matching families get flow-matching Euler (their own config, or built from its shift);
* the guidance: CFG at the protocol's scale; FLUX with a guidance embedding (FLUX.1-dev) gets that
  embedding at its pipeline's default scale and no CFG; FLUX without one gets true CFG;
* the size: the protocol's square resolution, with PixArt/Sana resolution binning off;
* the noise: image j draws its latents from its own `torch.Generator(device).manual_seed(seeds[j])`
  (diffusers' list-of-generators form), so it equals `pipe(prompt_j, generator=<that generator>)`
  whatever the batch;
* the precision: the whole pipeline in fp32, bf16 or fp16 (`torch_dtype` at load, so transformers keeps
  T5's fp16-unsafe layers in fp32), with SDXL's VAE decoded through its fp32 upcast in fp16.

`sampling(protocol)` returns all of it for the manifest and the image cache key.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError
from t2ibench.protocol import Protocol, Sampleable, scheduler_record, torch_dtype

DDIM = "ddim"
FLOW_EULER = "flow-euler"


@dataclass(frozen=True)
class FamilySpec:
    """What the protocol does for one pipeline class."""

    name: str
    pipeline: str  # diffusers class name in model_index.json
    denoiser: str  # "unet" or "transformer"
    components: tuple[str, ...]  # must be present (not null) in model_index.json
    scheduler: str  # DDIM (DDPM-trained) or FLOW_EULER (flow matching)
    vae_fp16_upcast: bool = False  # the VAE overflows in fp16: decode through the pipeline's fp32 upcast
    fixed_call: Mapping[str, Any] = field(default_factory=dict)  # always passed to __call__
    # passed to from_pretrained: what would change pixels depending on installed extras or content
    load_options: Mapping[str, Any] = field(default_factory=dict)
    sample_size: int | None = None  # latent side of the pipeline's default size (None: the denoiser config's)
    distillable: bool = False  # may carry a guidance embedding (`guidance_embeds` in the denoiser config)

    @property
    def accepts_eta(self) -> bool:
        return self.scheduler == DDIM


_TEXT = ("text_encoder", "tokenizer")
_NO_BINNING = {"use_resolution_binning": False}
FAMILIES: dict[str, FamilySpec] = {s.pipeline: s for s in (
    # the safety checker blacks out flagged images, which a benchmark must score as generated
    FamilySpec("sd", "StableDiffusionPipeline", "unet", ("unet", "vae", *_TEXT, "scheduler"), DDIM,
               load_options={"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}),
    # SDXL's invisible watermark (applied when the package is installed) changes pixels
    FamilySpec("sdxl", "StableDiffusionXLPipeline", "unet",
               ("unet", "vae", *_TEXT, "text_encoder_2", "tokenizer_2", "scheduler"), DDIM, vae_fp16_upcast=True,
               load_options={"add_watermarker": False}),
    # clean_caption's text cleaning depends on optional packages (bs4, ftfy): off, so images do not
    FamilySpec("pixart-alpha", "PixArtAlphaPipeline", "transformer", ("transformer", "vae", *_TEXT, "scheduler"), DDIM,
               fixed_call={**_NO_BINNING, "clean_caption": False}),
    FamilySpec("pixart-sigma", "PixArtSigmaPipeline", "transformer", ("transformer", "vae", *_TEXT, "scheduler"), DDIM,
               fixed_call={**_NO_BINNING, "clean_caption": False}),
    FamilySpec("sd3", "StableDiffusion3Pipeline", "transformer",
               ("transformer", "vae", *_TEXT, "text_encoder_2", "tokenizer_2", "scheduler"), FLOW_EULER),
    FamilySpec("flux", "FluxPipeline", "transformer",
               ("transformer", "vae", *_TEXT, "text_encoder_2", "tokenizer_2", "scheduler"), FLOW_EULER,
               sample_size=128, distillable=True),
    FamilySpec("sana", "SanaPipeline", "transformer", ("transformer", "vae", *_TEXT, "scheduler"), FLOW_EULER,
               fixed_call={**_NO_BINNING, "clean_caption": False}),
)}


def supported() -> str:
    return ", ".join(FAMILIES)


@dataclass(frozen=True)
class PipelineInfo:
    """What a pipeline directory says about itself, read from its JSON files only."""

    directory: Path
    spec: FamilySpec
    guidance: str  # "cfg" | "true-cfg" | "distilled"
    native_resolution: int


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is missing or not JSON") from None


def inspect_pipeline_dir(directory: Path) -> PipelineInfo:
    """Check a diffusers directory before any weight is read: its class, its components, its configs."""
    directory = Path(directory)
    index = _read_json(directory / "model_index.json")
    cls = index.get("_class_name")
    spec = FAMILIES.get(cls)
    if spec is None:
        raise UserError(f"{directory}: {cls} is not a text-to-image pipeline t2ibench samples; supported: {supported()}")
    missing = [c for c in spec.components
               if not (isinstance(index.get(c), list) and None not in index[c] and (directory / c).is_dir())]
    if missing:
        raise UserError(f"{directory}: {cls} lacks {', '.join(missing)} (needs {', '.join(spec.components)})")
    denoiser = _read_json(directory / spec.denoiser / "config.json")
    guidance = "cfg"
    if spec.distillable:
        guidance = "distilled" if denoiser.get("guidance_embeds") else "true-cfg"
    vae = _read_json(directory / "vae" / "config.json")
    blocks = vae.get("encoder_block_out_channels") or vae.get("block_out_channels") or ()
    factor = 2 ** (len(blocks) - 1)
    side = spec.sample_size or denoiser.get("sample_size")
    if not isinstance(side, int):
        raise UserError(f"{directory}: {spec.denoiser}/config.json has no sample_size; give --resolution in pixels")
    return PipelineInfo(directory, spec, guidance, side * factor)


def pipeline_dir_info(ckpt: str | os.PathLike[str]) -> PipelineInfo | None:
    """The PipelineInfo of a local diffusers directory, None for anything else."""
    path = Path(os.fspath(ckpt)).expanduser()
    return inspect_pipeline_dir(path) if (path / "model_index.json").is_file() else None


def check_dtype_for_device(dtype: str, device: str) -> None:
    """`--dtype` that cannot run on `device`, before anything is loaded."""
    import torch

    on_cuda = str(device).startswith("cuda")
    if dtype == "fp16" and not on_cuda:
        raise UserError("--dtype fp16 is for CUDA GPUs (half-precision CPU kernels are slow or missing); "
                        "use bf16 or fp32 on the CPU")
    if dtype == "bf16" and on_cuda and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16: {torch.cuda.get_device_name()} has no bf16 support; use fp16 or fp32")


# -- the sampler ---------------------------------------------------------------------------------------
class PipelineSampler(Sampleable):
    """A diffusers text-to-image pipeline sampled by its own `__call__` under the protocol."""

    kind = "diffusers"

    def __init__(self, pipe, *, source: str, ckpt_hash: str, dtype: str = "fp32", offload: str | None = None):
        spec = FAMILIES.get(type(pipe).__name__)
        if spec is None:
            raise UserError(f"{source}: {type(pipe).__name__} is not a text-to-image pipeline t2ibench samples; "
                            f"supported: {supported()}")
        missing = [c for c in spec.components if getattr(pipe, c, None) is None]
        if missing:
            raise UserError(f"{source}: {type(pipe).__name__} lacks {', '.join(missing)}")
        self.pipe, self.spec, self.source, self.ckpt_hash = pipe, spec, source, ckpt_hash
        self.dtype, self.offload = dtype, offload
        self.tags = {}
        self.denoiser = getattr(pipe, spec.denoiser)
        self.guidance = "cfg"
        if spec.distillable:
            self.guidance = "distilled" if self.denoiser.config.get("guidance_embeds") else "true-cfg"
        self._scheduler = self._protocol_scheduler()
        self._compiled = False

    @property
    def device(self):
        return self.pipe._execution_device

    def _protocol_scheduler(self):
        from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

        config = dict(self.pipe.scheduler.config)
        if self.spec.scheduler == DDIM:
            # latent models: no x0 clipping unless the model's own config asks for it (DDIM's default clips)
            return DDIMScheduler.from_config(config, **({} if "clip_sample" in config else {"clip_sample": False}))
        if type(self.pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler":
            return FlowMatchEulerDiscreteScheduler.from_config(config)
        # a flow-prediction solver config (Sana ships DPM-Solver): Euler with the same shift
        shift = config.get("flow_shift") or config.get("shift") or 1.0
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=config.get("num_train_timesteps", 1000), shift=shift)

    def guidance_scale(self, protocol: Protocol) -> float:
        if self.guidance == "distilled":  # the pipeline's own default embedded guidance (3.5 for FLUX.1-dev)
            return float(inspect.signature(type(self.pipe).__call__).parameters["guidance_scale"].default)
        return float(protocol.cfg)

    def call_kwargs(self, protocol: Protocol) -> dict[str, Any]:
        """What t2ibench passes to the pipeline's `__call__` besides prompts and generators."""
        if protocol.eta and not self.spec.accepts_eta:
            raise UserError(f"--eta applies to DDIM; {type(self.pipe).__name__} samples with flow-matching Euler")
        kw: dict[str, Any] = {"num_inference_steps": protocol.steps, "height": protocol.resolution,
                              "width": protocol.resolution, **self.spec.fixed_call}
        scale = self.guidance_scale(protocol)
        if self.guidance == "true-cfg":  # FLUX without a guidance embedding: real CFG against ""
            kw.update(true_cfg_scale=scale, negative_prompt="")
        else:
            kw["guidance_scale"] = scale
        if self.spec.accepts_eta:
            kw["eta"] = protocol.eta
        return kw

    def sampling(self, protocol: Protocol) -> dict[str, Any]:
        """Everything besides checkpoint, prompt and seed that decides the images (manifest + cache key)."""
        index_negative = "zero embeddings" if self.pipe.config.get("force_zeros_for_empty_prompt") else '""'
        return {
            "pipeline": type(self.pipe).__name__, "family": self.spec.name,
            "scheduler": scheduler_record(self._scheduler),
            "steps": protocol.steps,
            "guidance": {"kind": self.guidance, "scale": self.guidance_scale(protocol)},
            "resolution": [protocol.resolution, protocol.resolution], "dtype": self.dtype,
            "negative_prompt": {"text": "", "conditioning": index_negative if self.guidance != "distilled" else None},
            "call": self.call_kwargs(protocol), "load": dict(self.spec.load_options),
            "compile": bool(protocol.compile),
            "noise": "diffusers randn_tensor from torch.Generator(execution device).manual_seed(base_seed + index)",
            "attention": attention_summary(self.pipe),
        }

    def sample_images(self, prompts: list[str], seeds, protocol: Protocol):
        import torch

        from t2ibench.cross_attention_cache import reuse_cross_attention_kv

        if protocol.dtype != self.dtype:
            raise UserError(f"{self.source} was loaded in {self.dtype}; the protocol asks for {protocol.dtype}")
        if protocol.compile and not self._compiled:
            self.denoiser.compile()  # in place: the pipeline keeps calling the same module
            self._compiled = True
        self.pipe.scheduler = self._scheduler
        device = self.device
        generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds]
        # cached cross-attention K/V: identical images; not with offload (memory) or a compiled denoiser
        reuse = not self._compiled and self.offload is None
        try:
            with reuse_cross_attention_kv(self.denoiser, enabled=reuse):
                out = self.pipe(list(prompts), generator=generators, output_type="np", **self.call_kwargs(protocol))
        except ValueError as exc:  # the pipeline's own input checks (e.g. a size it cannot make)
            raise UserError(f"{type(self.pipe).__name__}: {str(exc).splitlines()[0]}") from None
        return (out.images * 255).round().astype("uint8")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pipeline": type(self.pipe).__name__, "offload": self.offload}


def attention_summary(pipe) -> dict[str, Any]:
    """The attention implementation of each component (diffusers processors; transformers' attn impl)."""
    out: dict[str, Any] = {}
    for name, component in pipe.components.items():
        if hasattr(component, "attn_processors"):
            out[name] = sorted({type(p).__name__ for p in component.attn_processors.values()})
        elif hasattr(component, "config") and hasattr(component.config, "_attn_implementation"):
            out[name] = component.config._attn_implementation
    return out


# -- loading -------------------------------------------------------------------------------------------
OFFLOADS = ("model", "sequential")


def load_pipeline(where: str, *, source: str, ckpt_hash: str, device: str, dtype: str = "fp32",
                  offload: str | None = None) -> PipelineSampler:
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    spec = inspect_pipeline_dir(Path(where)).spec
    if offload is not None:
        if offload not in OFFLOADS:
            raise UserError(f"--offload must be one of {', '.join(OFFLOADS)}, got {offload!r}")
        if not str(device).startswith("cuda"):
            raise UserError("--offload moves components between the CPU and a CUDA GPU; it needs --device cuda")
    diffusers_logging.disable_progress_bar()  # our own progress bars are the ones that count
    transformers_logging.disable_progress_bar()
    try:
        pipe = DiffusionPipeline.from_pretrained(where, dtype=torch_dtype(dtype), **spec.load_options)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{source}: cannot load as a diffusers pipeline ({str(exc).splitlines()[0][:160]})") from None
    pipe.set_progress_bar_config(disable=True)
    sampler = PipelineSampler(pipe, source=source, ckpt_hash=ckpt_hash, dtype=dtype, offload=offload)
    if dtype == "fp16" and sampler.spec.vae_fp16_upcast:
        pipe.vae.register_to_config(force_upcast=True)  # SDXL's VAE overflows in fp16: the pipeline decodes in fp32
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    return sampler
