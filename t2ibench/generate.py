"""Image generation under the study's protocol: DDIM, 50 steps, CFG 7.5, 256x256, image i seeded base_seed + i.

    model = load_sampleable("runs/x/checkpoint-1000")          # t2ibench checkpoint, diffusers dir or hub id
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
in fp32, where it does not overflow). The operations and their dtypes are those of diffusers'
StableDiffusionPipeline called under torch.autocast, so its images are ours bit for bit in bf16 too
(tests/test_cross_attention_cache.py). Diffusers pipelines (t2ibench.pipelines) load in that dtype.

Speed: the text is encoded once per batch and the unconditional rows once per batch size; the
cross-attention keys and values of the (constant) context are computed on the first step and reused
(t2ibench.cross_attention_cache), which leaves the images unchanged bit for bit.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2ibench.atomic import atomic_open
from t2ibench.errors import UserError
from t2ibench.protocol import (  # noqa: F401
    DTYPES,
    GENERATION_BATCH_SIZE,
    SAMPLERS,
    SEED_STRIDE,
    UNCOND_PROMPT,
    Protocol,
    Sampleable,
    image_seed,
    resolve_dtype,
    scheduler_record,
    torch_dtype,
)

GENERATION_INDEX = "generation.json"
# t2ibench models in bf16/fp16: text encoded outside autocast, one autocast region over the loop, CFG and
# denormalisation in the denoiser's/decoder's output dtype, all as diffusers' pipeline under autocast
LOW_PRECISION_LOOP = "diffusers-order-2"

# The protocol (one dataclass, its defaults the paper's; seeds, dtypes, the scheduler record) lives in
# t2ibench.protocol; re-exported here.


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def settings_key(protocol: Protocol, model: "Sampleable") -> str:
    """What, besides checkpoint, prompt and seed, decides an image's pixels."""
    d = {k: v for k, v in protocol.to_dict().items() if k not in ("base_seed", "images_per_prompt")}
    d.update(ema=model.ema, uncond=UNCOND_PROMPT, kind=model.kind, sampling=model.sampling(protocol))
    if protocol.dtype != "fp32":  # the low-precision loop was changed to diffusers' order: new pixels, new key
        d["low_precision_loop"] = LOW_PRECISION_LOOP
    return _sha256_json(d)[:12]


# -- models ---------------------------------------------------------------------------------------
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
        self._uncond: dict = {}  # (rows, device, text weights' versions) -> the unconditional context

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
        if prompts and all(p == UNCOND_PROMPT for p in prompts):  # CFG's unconditional rows: once per batch size
            encoder = self.model.text_encoder
            key = (len(prompts), str(self.device), sum(p._version for p in encoder.parameters()))
            if key not in self._uncond:
                self._uncond[key] = encoder.encode(prompts, device=self.device)
            return self._uncond[key]
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
    return load_sampleable(model_or_ckpt, ema=ema, device=device, dtype=dtype, offload=offload)


def check_checkpoint(ckpt: str | os.PathLike[str], ema: bool = False) -> str:
    """`checkpoints.precheck` (the path, its kind, EMA weights), plus, for a diffusers directory, that its
    class is a text-to-image pipeline t2ibench samples and no component is missing; no weights read."""
    from t2ibench.checkpoints import precheck, resolve_ckpt_path

    kind = precheck(ckpt, ema)
    if kind == "diffusers":
        from t2ibench.pipelines import inspect_pipeline_dir

        inspect_pipeline_dir(resolve_ckpt_path(os.fspath(ckpt)))
    return kind


def load_sampleable(ckpt: str | os.PathLike[str], *, ema: bool = False, device: str = "cpu", dtype: str = "fp32",
                    offload: str | None = None):
    """A `Sampleable` for a checkpoint path or hub id; every bad input is a one-line UserError.

    dtype: a diffusers pipeline loads in it (t2ibench's own models take it per run, from the protocol);
    offload: "model" or "sequential" CPU offload of a diffusers pipeline (CUDA only)."""
    from t2ibench.checkpoints import resolve_ckpt_path, t2ibench_hash, tree_sha256
    from t2ibench.model import TextToImageModel
    from t2ibench.pipelines import load_pipeline

    text = os.fspath(ckpt)
    path = resolve_ckpt_path(text)
    kind = check_checkpoint(ckpt, ema)
    if kind != "hub":
        if kind == "t2ibench":
            if offload:
                raise UserError("--offload applies to diffusers pipelines; t2ibench checkpoints fit on one GPU")
            digest = t2ibench_hash(path, ema)
            model = TextToImageModel.load(path, ema=ema, device=device)
            return T2IModelSampler(model, ema=ema, source=str(path.resolve()), ckpt_hash=digest)
        return load_pipeline(str(path), source=str(path.resolve()), ckpt_hash=tree_sha256(path), device=device,
                             dtype=dtype, offload=offload)
    return _load_hub_pipeline(text, device, dtype, offload)


def _load_hub_pipeline(repo_id: str, device: str, dtype: str, offload: str | None):
    from huggingface_hub import snapshot_download

    from t2ibench.checkpoints import tree_sha256
    from t2ibench.pipelines import load_pipeline

    try:
        local = snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"])
    except Exception as exc:  # offline, unknown repo, gated: one line
        raise UserError(f"cannot get pipeline {repo_id!r} from the Hugging Face hub or its cache "
                        f"({type(exc).__name__}); download it or pass a local directory") from None
    return load_pipeline(local, source=f"hf:{repo_id}", ckpt_hash=tree_sha256(Path(local)), device=device, dtype=dtype,
                         offload=offload)


# -- processes -----------------------------------------------------------------------------------
@dataclass
class Processes:
    """This process's place among those sharing the work (1 of 1 outside `accelerate launch`)."""

    rank: int = 0
    world: int = 1
    state: Any = None

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()


def processes(accelerator, device: str) -> tuple[Processes, str]:
    """(this process's rank and world, its device) under an accelerator, torchrun/accelerate launch, or alone."""
    if accelerator is not None:
        return Processes(accelerator.process_index, accelerator.num_processes, accelerator), str(accelerator.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under `accelerate launch` / torchrun
        from accelerate import PartialState

        state = PartialState(cpu=device == "cpu")
        return Processes(state.process_index, state.num_processes, state), "cpu" if device == "cpu" else str(state.device)
    return Processes(), device


def resolve_device(device: str) -> str:
    """"auto" -> cuda when torch sees one, else cpu; a device torch cannot use is a one-line UserError."""
    from t2ibench.devices import resolve_device as checked

    return checked(device)


def generate_to_folder(ckpt, prompt_set, protocol: Protocol, out: Path, *, ema: bool = False, device: str = "auto",
                       batch_size: int = GENERATION_BATCH_SIZE, image_dir: Path | None = None,
                       offload: str | None = None) -> dict[str, Any] | None:
    """`t2ibench generate`: the images of a prompt set for a checkpoint (cached, sharded across processes),
    plus `out/generation.json` listing every image with its prompt and seed. Returns that index on the
    main process, None on the others."""
    import time

    from t2ibench.atomic import write_json_atomic

    dist, device = processes(None, resolve_device(device))
    model = as_sampleable(ckpt, ema=ema, device=device, dtype=protocol.dtype, offload=offload)
    t0 = time.time()
    paths = generate(model, prompt_set, protocol, image_dir or out, batch_size=batch_size, rank=dist.rank,
                     world=dist.world, progress=dist.rank == 0)
    dist.barrier()
    if dist.rank != 0:
        return None
    index = {
        "checkpoint": model.describe(),
        "protocol": {**protocol.to_dict(), "ema": ema, "sampling": model.sampling(protocol)},
        "settings_key": settings_key(protocol, model), "prompt_set": prompt_set.describe(),
        "images": [{"id": r.id, "prompt": r.text, "seed": protocol.base_seed + i, "path": os.path.relpath(p, out)}
                   for i, (r, p) in enumerate(zip(prompt_set.records, paths))],
        "processes": dist.world, "seconds": round(time.time() - t0, 3),
    }
    write_json_atomic(Path(out) / GENERATION_INDEX, index)
    return {**index, "paths": paths}


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

    from t2ibench.cross_attention_cache import reuse_cross_attention_kv

    device = model.device
    shape = model.noise_shape(protocol.resolution)
    low = protocol.dtype != "fp32"
    model.use_compiled(protocol.compile)
    # one autocast region for the whole loop, as diffusers' pipeline under torch.autocast: its weight-cast
    # cache then lives across steps, and every op sees the dtypes the pipeline's would
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch_dtype(protocol.dtype))) if low \
        else contextlib.nullcontext
    with torch.no_grad():
        noise, gens = initial_noise(shape, seeds)
        scheduler = model.scheduler()
        scheduler.set_timesteps(protocol.steps, device=device)
        x = noise.to(device) * scheduler.init_noise_sigma
        cond = model.encode_text(list(prompts))  # in the text encoder's own precision, as the pipeline's
        uncond = model.encode_text([UNCOND_PROMPT] * len(prompts))
        context = torch.cat([uncond, cond])
        denoiser = getattr(model, "backbone", None)
        reuse = denoiser is not None and not protocol.compile  # a compiled graph would trace the cache's test
        with autocast(), reuse_cross_attention_kv(denoiser, enabled=reuse):
            for t in scheduler.timesteps:
                xin = scheduler.scale_model_input(torch.cat([x, x]), t)
                eps = model.predict_noise(xin, t.expand(xin.shape[0]), context)
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + protocol.cfg * (eps_cond - eps_uncond)  # in eps's dtype, as the pipeline
                variance_noise = None
                if protocol.eta > 0:  # per-image DDIM noise, from each image's own generator
                    variance_noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
                x = scheduler.step(eps, t, x, eta=protocol.eta, variance_noise=variance_noise).prev_sample
        # the VAE overflows in fp16 (SDXL's notably): decode in fp32 then; bf16 has fp32's range
        with autocast() if protocol.dtype == "bf16" else contextlib.nullcontext():
            pixels = model.decode(x)
        # diffusers' VaeImageProcessor, in the decoder's output dtype: [-1, 1] -> [0, 1] -> round(255 x)
        pixels = (pixels / 2 + 0.5).clamp(0, 1)
    images = pixels.cpu().permute(0, 2, 3, 1).float().numpy()
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
