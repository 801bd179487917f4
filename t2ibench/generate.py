"""Image generation under the study's protocol: DDIM, 50 steps, CFG 7.5, 256x256, image i seeded base_seed + i.

    model = load_checkpoint("runs/x/checkpoint-1000")          # t2ibench checkpoint, diffusers dir or hub id
    paths = generate(model, load_prompt_set("tifa-v1"), Protocol(), cache_dir=Path("out/images"))

Reproducibility rules (all tested):
* Image i's initial noise (and, for eta > 0, its per-step DDIM noise) comes from its own CPU
  `torch.Generator` seeded `base_seed + i` (i = index in the full prompt set, so `--limit` keeps seeds);
  with K images per prompt (`images_per_prompt`), image j of prompt i is seeded `base_seed + i + 10^6 j`.
* Batches are aligned on absolute indices: batch k always holds images kB .. kB+B-1, and processes take
  whole batches (k % world_size == rank). A matrix kernel's rounding can depend on how many rows it is
  given, so fixing every batch's composition makes the images bit-identical for any number of
  processes and across interrupted/resumed runs (at the same number of intra-op threads per process:
  torch's CPU kernels may also round differently with another thread count). Different batch sizes
  or thread counts agree up to that float rounding: at most 1 uint8 level on a few pixels in the tests.
* Conditional and unconditional passes are one forward of 2B samples, ordered [uncond, cond] as in
  diffusers; the unconditional prompt is "" (the trainer's caption dropout uses "" too).

Precision (`Protocol.dtype`): t2ibench's own models run under torch.autocast in bf16/fp16 (weights,
latents and scheduler stay fp32, so a trainer's in-memory model is untouched; in fp16 the VAE decodes
in fp32, where it does not overflow). Diffusers pipelines (t2ibench.pipelines) load in that dtype.

Image cache: `<cache_dir>/<ckpt_hash[:16]>/<settings_key>/<set>-<set_sha[:12]>/<prompt id>.s<seed>.png`,
`settings_key` hashing the protocol (sampler, steps, cfg, resolution, eta, dtype, compile), the EMA
choice and the model's `sampling()` (scheduler class and config, guidance, negative prompt).
Each PNG is written to a temporary name, fsynced and renamed, so a killed run leaves no file that
looks complete but is not; a rerun skips every batch whose images all exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from t2ibench.atomic import atomic_open
from t2ibench.errors import UserError

UNCOND_PROMPT = ""
SAMPLERS = ("ddim",)
DTYPES = ("fp32", "bf16", "fp16")


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def resolve_dtype(name: str, device: str) -> str:
    """`auto`: bf16 on a CUDA GPU that supports it, else fp32 (CPU, or a GPU without bf16)."""
    if name != "auto":
        if name not in DTYPES:
            raise UserError(f"--dtype must be auto or one of {', '.join(DTYPES)}, got {name!r}")
        return name
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


@dataclass(frozen=True)
class Protocol:
    """Generation settings; every field is recorded in each result's manifest."""

    sampler: str = "ddim"
    steps: int = 50
    cfg: float = 7.5
    resolution: int = 256
    base_seed: int = 0
    eta: float = 0.0
    dtype: str = "fp32"  # fp32 | bf16 | fp16 (resolve "auto" with resolve_dtype first)
    compile: bool = False  # torch.compile the denoiser: an execution option, recorded since it may round differently
    images_per_prompt: int = 1  # K; image j of prompt i is seeded image_seed(base_seed, i, j)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        if int(self.steps) < 1:
            raise UserError(f"steps must be at least 1, got {self.steps}")
        if int(self.resolution) < 8 or int(self.resolution) % 8:
            raise UserError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        if not 0.0 <= float(self.eta) <= 1.0:
            raise UserError(f"eta must be in [0, 1], got {self.eta}")
        if self.dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 1 <= int(self.images_per_prompt) <= 1000:
            raise UserError(f"images per prompt must be between 1 and 1000, got {self.images_per_prompt}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scheduler_record(scheduler) -> dict[str, Any]:
    """Class and config of a diffusers scheduler, JSON-safe and stable (no private keys such as the
    unordered `_use_default_values`)."""
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    return {"class": type(scheduler).__name__, "config": json.loads(json.dumps(config, default=str))}
# Image j of prompt i gets seed base_seed + i + SEED_STRIDE * j: image 0 keeps the K=1 protocol's seed
# (so K=4 extends K=1 results and reuses their cached images) and no two images of a set under
# SEED_STRIDE prompts share a seed.
SEED_STRIDE = 1_000_000


def image_seed(base_seed: int, prompt_index: int, image_index: int = 0) -> int:
    return int(base_seed) + int(prompt_index) + SEED_STRIDE * int(image_index)


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def settings_key(protocol: Protocol, model: "Sampleable") -> str:
    """What, besides checkpoint, prompt and seed, decides an image's pixels."""
    d = {k: v for k, v in protocol.to_dict().items() if k not in ("base_seed", "images_per_prompt")}
    d.update(ema=model.ema, uncond=UNCOND_PROMPT, kind=model.kind, sampling=model.sampling(protocol))
    return _sha256_json(d)[:12]


# -- models ---------------------------------------------------------------------------------------
class Sampleable:
    """The few things the sampler needs, over a t2ibench model or a diffusers pipeline."""

    kind: str = ""
    ema: bool = False
    ckpt_hash: str = ""
    source: str = ""
    tags: dict[str, Any] = {}
    variant: dict[str, Any] | None = None

    def scheduler(self):
        raise NotImplementedError

    def noise_shape(self, resolution: int) -> tuple[int, int, int]:
        raise NotImplementedError

    def encode_text(self, prompts: list[str]):
        raise NotImplementedError

    def predict_noise(self, x, t, context):
        raise NotImplementedError

    def decode(self, x):
        """Backbone space -> pixels in [-1, 1] (not yet clamped)."""
        raise NotImplementedError

    @property
    def device(self):
        raise NotImplementedError

    def use_compiled(self, compiled: bool) -> None:
        if compiled:
            raise UserError(f"--compile is not supported for {type(self).__name__}")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "hash": self.ckpt_hash, "ema": self.ema}

    def sampling(self, protocol: Protocol) -> dict[str, Any]:
        """What the model samples with under `protocol` (scheduler, guidance, ...), for the manifest."""
        return {"scheduler": scheduler_record(self.scheduler()),
                "guidance": {"kind": "cfg", "scale": float(protocol.cfg)},
                "negative_prompt": {"text": UNCOND_PROMPT, "conditioning": '""'}, "dtype": protocol.dtype,
                "compile": bool(protocol.compile)}


class T2IModelSampler(Sampleable):
    kind = "t2ibench"

    def __init__(self, model, *, ema: bool = False, source: str = "<in memory>", ckpt_hash: str | None = None):
        from t2ibench.checkpoints import state_hash

        self.model = model
        self.ema = ema
        self.backbone = model.ema_backbone if ema and model.ema_backbone is not None else model.backbone
        if ema and model.ema_backbone is None and source == "<in memory>":
            raise UserError("the model has no EMA weights; evaluate without --ema")
        self.source = source
        self.ckpt_hash = ckpt_hash or state_hash(self.backbone, model.text_encoder, model.vae)
        self.tags = dict(model.info.tags)
        self.variant = model.info.variant
        self._denoiser, self._compiled = self.backbone, None

    @property
    def device(self):
        return next(self.backbone.parameters()).device

    def scheduler(self):
        return self.model.schedule.ddim()

    def noise_shape(self, resolution: int) -> tuple[int, int, int]:
        cfg = self.backbone.config
        factor = 1 if self.model.vae is None else 2 ** (len(self.model.vae.config.block_out_channels) - 1)
        if resolution % factor:
            raise UserError(f"resolution {resolution} is not a multiple of the VAE's factor {factor}")
        return (cfg.in_channels, resolution // factor, resolution // factor)

    def encode_text(self, prompts: list[str]):
        return self.model.text_encoder.encode(prompts, device=self.device)

    def predict_noise(self, x, t, context):
        return self.model.predict_noise(x, t, context, backbone=self._denoiser)

    def use_compiled(self, compiled: bool) -> None:
        import torch

        if compiled and self._compiled is None:
            self._compiled = torch.compile(self.backbone)
        self._denoiser = self._compiled if compiled else self.backbone

    def decode(self, x):
        if self.model.vae is None:
            return x
        return self.model.vae.decode(x / self.model.vae_scaling).sample


def as_sampleable(model_or_ckpt, *, ema: bool = False, device: str = "cpu", dtype: str = "fp32",
                  offload: str | None = None) -> Sampleable:
    if isinstance(model_or_ckpt, Sampleable):
        return model_or_ckpt
    from t2ibench.model import TextToImageModel

    if isinstance(model_or_ckpt, TextToImageModel):
        return T2IModelSampler(model_or_ckpt, ema=ema)
    from t2ibench.checkpoints import load_checkpoint

    return load_checkpoint(model_or_ckpt, ema=ema, device=device, dtype=dtype, offload=offload)


# -- the sampling loop ---------------------------------------------------------------------------
def initial_noise(shape: tuple[int, int, int], seeds: Sequence[int]):
    """One CPU generator per image: the noise does not depend on batch, process or device."""
    import torch

    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    return torch.stack([torch.randn(shape, generator=g) for g in gens]), gens


def sample_batch(model: Sampleable, prompts: list[str], seeds: Sequence[int], protocol: Protocol):
    """uint8 HxWx3 numpy images for `prompts`, image j from seed `seeds[j]`."""
    sample_images = getattr(model, "sample_images", None)
    if sample_images is not None:  # a diffusers pipeline: its own __call__ (t2ibench.pipelines)
        return sample_images(list(prompts), list(seeds), protocol)
    import contextlib

    import torch

    device = model.device
    shape = model.noise_shape(protocol.resolution)
    low = protocol.dtype != "fp32"
    model.use_compiled(protocol.compile)
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch_dtype(protocol.dtype))) if low \
        else contextlib.nullcontext
    with torch.no_grad():
        noise, gens = initial_noise(shape, seeds)
        scheduler = model.scheduler()
        scheduler.set_timesteps(protocol.steps, device=device)
        x = noise.to(device) * scheduler.init_noise_sigma
        with autocast():
            cond = model.encode_text(list(prompts))
            uncond = model.encode_text([UNCOND_PROMPT] * len(prompts))
        context = torch.cat([uncond, cond])
        for t in scheduler.timesteps:
            xin = scheduler.scale_model_input(torch.cat([x, x]), t)
            with autocast():
                eps = model.predict_noise(xin, t.expand(xin.shape[0]), context).float()
            eps_uncond, eps_cond = eps.chunk(2)
            eps = eps_uncond + protocol.cfg * (eps_cond - eps_uncond)
            variance_noise = None
            if protocol.eta > 0:  # per-image DDIM noise, from each image's own generator
                variance_noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
            x = scheduler.step(eps, t, x, eta=protocol.eta, variance_noise=variance_noise).prev_sample
        # the VAE overflows in fp16 (SDXL's notably): decode in fp32 then; bf16 has fp32's range
        with autocast() if protocol.dtype == "bf16" else contextlib.nullcontext():
            pixels = model.decode(x)
    # diffusers' VaeImageProcessor: [-1, 1] -> [0, 1] -> round(255 x)
    images = (pixels.float() / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
    return (images * 255).round().astype("uint8")


# -- the cache -------------------------------------------------------------------------------------
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(prompt_id: str) -> str:
    clean = _SAFE.sub("_", prompt_id)[:80]
    if clean != prompt_id:  # keep distinct ids distinct after cleaning
        clean += "-" + hashlib.sha256(prompt_id.encode()).hexdigest()[:8]
    return clean


@dataclass
class ImageCache:
    root: Path  # .../<ckpt>/<settings>/<set>-<sha>

    def path(self, prompt_id: str, seed: int) -> Path:
        return self.root / f"{safe_name(prompt_id)}.s{seed}.png"

    def write(self, path: Path, pixels) -> None:
        from PIL import Image

        with atomic_open(path, "wb", fsync=True) as fh:
            Image.fromarray(pixels).save(fh, format="PNG")


def image_cache(cache_dir: Path, model: Sampleable, prompt_set, protocol: Protocol) -> ImageCache:
    return ImageCache(Path(cache_dir) / model.ckpt_hash[:16] / settings_key(protocol, model)
                      / f"{safe_name(prompt_set.name)}-{prompt_set.sha256[:12]}")


def plan(n: int, batch_size: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Aligned batches of indices 0..n-1 that this process owns."""
    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    return [b for k, b in enumerate(batches) if k % world == rank]


def generate(model: Sampleable, prompt_set, protocol: Protocol, cache_dir: Path, *, batch_size: int = 8,
             rank: int = 0, world: int = 1, progress: bool = True,
             on_batch: Callable[[int], None] | None = None) -> list[Path]:
    """Make every missing image of `prompt_set` (this process's share); returns the paths of all images
    of the set in order, prompt by prompt, K = protocol.images_per_prompt per prompt (those of other
    processes' share may still be being written)."""
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    cache = image_cache(cache_dir, model, prompt_set, protocol)
    k = int(protocol.images_per_prompt)
    slots = [(i, j) for i in range(len(prompt_set.records)) for j in range(k)]
    records = [prompt_set.records[i] for i, _ in slots]
    seeds = [image_seed(protocol.base_seed, i, j) for i, j in slots]
    if len(prompt_set.records) > SEED_STRIDE and k > 1:
        raise UserError(f"--images-per-prompt > 1 supports up to {SEED_STRIDE:,} prompts")
    paths = [cache.path(r.id, s) for r, s in zip(records, seeds)]
    mine = plan(len(records), batch_size, rank, world)
    _remove_stale_temporaries(cache.root, {paths[i].name for b in mine for i in b})
    todo = [b for b in mine if not all(paths[i].is_file() for i in b)]
    n_todo = sum(len(b) for b in todo)
    bar = _progress(progress and n_todo > 0, f"generating {prompt_set.name}", n_todo)
    with bar:
        for batch in todo:
            images = sample_batch(model, [records[i].text for i in batch], [seeds[i] for i in batch], protocol)
            for i, pixels in zip(batch, images):
                if not paths[i].is_file():  # a resumed batch keeps the files it already wrote
                    cache.write(paths[i], pixels)
            bar.advance(len(batch))
            if on_batch:
                on_batch(len(batch))
    return paths


def _remove_stale_temporaries(root: Path, names: set[str]) -> None:
    """Temporary files a killed run left behind, for images this process owns (never another's)."""
    if not root.is_dir():
        return
    for entry in os.scandir(root):
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            target = entry.name[1:].rsplit(".", 2)[0]  # .<name>.<random>.tmp -> <name>
            if target in names:
                Path(entry.path).unlink(missing_ok=True)


class _progress:
    """A rich progress bar with counts, rate and ETA on a terminal; off a terminal (a job's log), one
    plain line every `$T2IBENCH_PROGRESS_SECONDS` (default 30) seconds and one at the end; silent
    when disabled."""

    def __init__(self, enabled: bool, label: str, total: int):
        self.enabled, self.label, self.total = enabled, label, total
        self._p = None
        self._lines = False

    def __enter__(self):
        import sys

        if self.enabled and not sys.stdout.isatty():
            import os
            import time

            self._lines, self._done, self._t0 = True, 0, time.monotonic()
            self._every = float(os.environ.get("T2IBENCH_PROGRESS_SECONDS", "30") or 30)
            self._last = self._t0
        elif self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
            self._p.__enter__()
            self._task = self._p.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)
        elif self._lines:
            import time

            self._done += n
            now = time.monotonic()
            if now - self._last >= self._every or self._done >= self.total:
                self._last = now
                self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._t0
        rate = self._done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self._done) / rate if rate > 0 else 0.0
        print(f"{self.label}: {self._done}/{self.total}  {rate:.2f}/s  elapsed {elapsed:.0f}s  ETA {eta:.0f}s",
              flush=True)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
        return False
