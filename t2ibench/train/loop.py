"""The reference training loop: one function, top to bottom, over accelerate.

    from t2ibench.train.config import RunConfig, apply_overrides
    from t2ibench.train.loop import train
    result = train(apply_overrides(RunConfig(variant="sdxl"), ["data.path=shapes/", ...]))

DDP by default, FSDP2 with `train.distributed=fsdp` (through accelerate or directly, see distributed.py);
launch several processes with `accelerate launch` or torchrun (docs/training-at-scale.md). The loss of a
step is the mean over the GLOBAL batch (B = train.global_batch): each micro-batch's per-sample losses
are summed and scaled by processes / B, so the gradient (after DDP/FSDP averaging) does not depend on
how the batch is split across processes and accumulation steps.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import DistributedType

from t2ibench.errors import UserError
from t2ibench.hardware import peak_for
from t2ibench.train import state as ckpt_io
from t2ibench.train.components import build_run_model
from t2ibench.train.config import RunConfig, validate
from t2ibench.train.data import SampleRules, StepBatches, TrainingData, check_usable, index_dataset, make_loader
from t2ibench.train.distributed import (
    Sharding,
    accelerate_plugin,
    autocast,
    check_fsdp,
    device_type,
    param_share,
    shard_backbone,
)
from t2ibench.train.ema import EMA
from t2ibench.train.flops import account_for
from t2ibench.variants import VariantSpec, get_variant


class TrainingDiverged(UserError):
    """The loss or gradient became NaN/inf; training stopped with the last good state saved."""


@dataclass
class TrainResult:
    run: str
    out_dir: Path
    checkpoint: Path | None  # newest checkpoint directory
    step: int
    samples_seen: int
    train_flops: float
    train_flops_paper: float
    wall_s: float
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss of the step)
    skipped: dict[str, int] = field(default_factory=dict)
    samples_per_s: float = 0.0
    mfu: float = 0.0  # model FLOPs utilisation of the last logging window
    data_wait_s: float = 0.0  # mean seconds per step spent waiting for the data loader (last log window)
    local_params: int = 0  # FSDP: parameter elements this rank holds (0: not sharded)
    total_params: int = 0
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_dir(self) -> Path | None:
        """The TextToImageModel directory of the newest checkpoint (what `t2ibench eval --ckpt` takes)."""
        return None if self.checkpoint is None else self.checkpoint / "model"


def train(config: RunConfig, *, resume: bool = False, spec: VariantSpec | None = None) -> TrainResult:
    """Train `config`; `spec` is its registered variant when the caller has looked it up already."""
    eval_metrics = validate(config)  # everything the run will use (eval.db included), before anything is built
    spec = spec or get_variant(config.variant)  # an unknown name stops here, before anything is built
    if not config.data.path:
        raise UserError("no training data: pass --data PATH (an image folder, *.tar shards or *.parquet)")
    check_fsdp(config)  # fsdp where it cannot run: one line, before anything is built
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if config.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    try:
        return _train(config, resume, spec, eval_metrics)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _train(config: RunConfig, resume: bool, spec: VariantSpec, eval_metrics) -> TrainResult:
    out = Path(config.out_dir)
    # -- data first (cheap to check): shard metadata or file lists, the first samples decoded ----------
    index = index_dataset(config.data.path, config.data.kind)
    check_usable(index, SampleRules(resolution=config.resolution, min_side=config.data.min_side or config.resolution,
                                    alt_text_prob=0, top_k=1, caption_dropout=0, noise_shape=(0, 0, 0)))
    from t2ibench.train.preflight import preflight

    # output location, frozen weights, in-training eval inputs: all before the model, trackers and run
    # directory exist (nothing is left behind by a failed start) and hours before the first evaluation
    preflight(config)
    accelerator = _accelerator(config, out)
    world, device = accelerator.num_processes, accelerator.device

    # -- where this run starts: fresh, or the newest complete checkpoint in --out -------------------
    previous = ckpt_io.latest_checkpoint(out)
    if previous is not None and not resume:
        raise UserError(f"{out} already holds a checkpoint ({previous.name}); pass --resume to continue it "
                        "or choose another --out")
    if previous is not None:
        previous = _intact_checkpoint(accelerator, out)
    if previous is not None:
        ckpt_io.check_compatible(previous, config)

    # -- model: backbone to train, frozen text encoder and VAE (or pixel space) --------------------
    model, run_spec = build_run_model(config, spec)
    backbone = model.backbone
    backbone.train()
    if config.train.gradient_checkpointing:
        backbone.enable_gradient_checkpointing()
    frozen_dtype = torch.bfloat16 if config.train.mixed_precision == "bf16" and device.type == "cuda" else torch.float32
    for frozen in (model.text_encoder, model.vae):
        if frozen is not None:
            frozen.to(device) if frozen_dtype == torch.float32 else frozen.to(device, frozen_dtype)
    account = account_for(run_spec)

    # -- data ----------------------------------------------------------------------------------------
    cfg = backbone.config
    rules = SampleRules(
        resolution=config.resolution, min_side=config.data.min_side or config.resolution,
        alt_text_prob=config.data.alt_text_prob, top_k=config.data.synthetic_top_k,
        caption_dropout=config.train.caption_dropout, noise_shape=(cfg.in_channels, cfg.sample_size, cfg.sample_size),
        num_timesteps=model.schedule.num_train_timesteps, vae_noise=model.vae is not None, seed=config.seed)
    cache = None
    use_cache, why = _cache_decision(config, index)
    accelerator.print(f"latent/text-embedding cache: {why}")
    if use_cache:
        from t2ibench.train.cache import EmbeddingCache

        cache = EmbeddingCache.build(Path(config.data.cache_dir or out / "cache"), index, rules, model, accelerator)
    data = TrainingData(index, rules, cache)

    # -- optimizer (AdamW, fp32 master weights), LR warmup then constant, EMA -----------------------
    # FSDP where accelerate does not shard (CPU, one process): fully_shard directly, never plain DDP.
    direct_fsdp = config.train.distributed == "fsdp" and accelerator.distributed_type != DistributedType.FSDP
    sharding = shard_backbone(backbone, device, config.train.mixed_precision) if direct_fsdp else None
    optimizer = _adamw(config, backbone.parameters())
    if not direct_fsdp:
        backbone, optimizer = accelerator.prepare(backbone, optimizer)
    if accelerator.distributed_type == DistributedType.FSDP:
        sharding = Sharding("accelerate", f"accelerate mixed precision {config.train.mixed_precision}",
                            *param_share(backbone))
    # The compiled module is only called; saving, syncing and clipping use the uncompiled one.
    denoiser = torch.compile(backbone) if config.train.compile else backbone
    warmup = config.optim.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    params = [p for p in backbone.parameters() if p.requires_grad]
    ema = EMA(accelerator.unwrap_model(backbone).named_parameters(), config.train.ema_decay) if config.train.ema else None

    state = ckpt_io.TrainState(recipe_hash=config.recipe_hash(), variant=config.variant, processes=world)
    if previous is not None:
        state = ckpt_io.load_checkpoint(previous, accelerator, backbone=backbone, optimizer=optimizer,
                                        scheduler=scheduler, ema=ema)
        state.processes = world
        accelerator.print(f"resuming {previous} at step {state.step} ({state.samples_seen} samples seen)")
    accelerator.print(f"training {config.run_name}: {config.variant} ({account.params:,} parameters) on "
                      f"{_setup_line(accelerator, config, sharding)}; data: {len(index):,} {index.kind} samples")
    if sharding is not None:
        accelerator.print(sharding.describe(accelerator.process_index, world))
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=list))
    _start_trackers(accelerator, config)  # only now: a start that failed earlier leaves no tracker files

    batches = StepBatches(state.step, config.train.global_batch, config.train.micro_batch, world, accelerator.process_index)
    loader = iter(make_loader(data, batches, config.data.num_workers))
    noise_schedule = model.schedule.ddpm()
    global_batch = config.train.global_batch

    def micro_step(batch: dict[str, Any]) -> torch.Tensor:
        """Forward and backward of one micro-batch; returns the sum of its per-sample losses."""
        if batch["size"] == 0:  # every sample skipped: a zero-weight pass keeps DDP/FSDP collectives in step
            x = torch.zeros((1, *rules.noise_shape), device=device)
            context = model.encode_text([""]) if cache is None else cache.empty_context(1, device)
            with autocast(device, config.train.mixed_precision, sharding):
                pred = model.predict_noise(x, torch.zeros(1, dtype=torch.long, device=device), context, backbone=denoiser)
            accelerator.backward(pred.float().sum() * 0.0)
            return torch.zeros((), device=device)
        with torch.no_grad():
            x0, context = _inputs(batch, model, device, frozen_dtype)
            noise = batch["noise"].to(device)
            timesteps = batch["timesteps"].to(device)
            noisy = noise_schedule.add_noise(x0, noise, timesteps)
        with autocast(device, config.train.mixed_precision, sharding):
            pred = model.predict_noise(noisy, timesteps, context, backbone=denoiser)
        target = model.schedule.training_target(noise_schedule, x0, noise, timesteps)
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        accelerator.backward(per_sample.sum() * (world / global_batch))
        return per_sample.detach().sum()

    peak = peak_for(device, _compute_dtype(config, device), config.log.peak_tflops)
    accelerator.print(f"MFU is measured against {peak.tflops:.3g} TFLOP/s per device ({peak.source})")
    progress = _Progress(config, state.step, enabled=accelerator.is_main_process and config.log.progress)
    result = TrainResult(config.run_name, out, previous, state.step, state.samples_seen, state.train_flops,
                         state.train_flops_paper, state.wall_s, skipped=dict(state.skipped))
    if sharding is not None:
        result.local_params, result.total_params = sharding.local_params, sharding.total_params
    session_start, window_start, window_samples = time.monotonic(), time.monotonic(), 0
    window_wait, window_steps = 0.0, 0  # data-loader wait: time spent blocked in next(loader)
    wall_at_start = state.wall_s
    if previous is not None and _evaluation_missed(config, state.step):
        # Stopped between this checkpoint and its evaluation: evaluate the restored weights now, as the
        # uninterrupted run did next (`checkpoint.keep` would prune the checkpoint before anyone else could).
        result.evaluations.append(_evaluate(accelerator, config, model, backbone, state, eval_metrics))
    try:
        while state.step < config.train.steps:
            # -- one optimizer step: accumulate over micro-batches, sync gradients on the last -------
            loss_sum, used, skipped = torch.zeros((), device=device), 0, Counter()
            for micro in range(batches.accumulation):
                wait_start = time.monotonic()
                batch = next(loader)
                window_wait += time.monotonic() - wait_start
                skipped.update(batch["skipped"])
                sync = micro == batches.accumulation - 1
                if direct_fsdp:  # FSDP2: reduce-scatter gradients on the last micro-batch only
                    backbone.set_requires_gradient_sync(sync)
                with contextlib.nullcontext() if sync or direct_fsdp else accelerator.no_sync(backbone):
                    loss_sum += micro_step(batch)
                used += batch["size"]
            totals = accelerator.reduce(torch.stack([
                loss_sum.float(), torch.tensor(float(used), device=device),
                *[torch.tensor(float(skipped[r]), device=device) for r in ("corrupt", "undersized", "no_caption")]]),
                reduction="sum")
            mean_loss = (totals[0] / totals[1].clamp(min=1)).item()
            if direct_fsdp:  # DTensor gradients: torch's clip computes the global norm across shards
                grad_norm = torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip or float("inf"))
            else:
                grad_norm = accelerator.clip_grad_norm_(params, config.optim.grad_clip or float("inf"))
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            # fp16's loss scaler skips steps with inf gradients by itself; bf16/fp32 have no such guard.
            grad_ok = math.isfinite(grad_norm) or config.train.mixed_precision == "fp16"
            if not (math.isfinite(mean_loss) and grad_ok):
                optimizer.zero_grad(set_to_none=True)
                raise _diverged(out, state, mean_loss, grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update()

            # -- bookkeeping: samples, FLOPs, skips, wall-clock --------------------------------------
            state.step += 1
            state.samples_seen += global_batch
            state.train_flops += account.flops_per_sample * global_batch
            state.train_flops_paper += account.paper_flops_per_sample * global_batch
            state.wall_s = wall_at_start + time.monotonic() - session_start
            for reason, n in zip(("corrupt", "undersized", "no_caption"), totals[2:].tolist()):
                if n:
                    state.skipped[reason] = state.skipped.get(reason, 0) + int(n)
            result.losses.append((state.step, mean_loss))
            window_samples += global_batch
            window_steps += 1

            if state.step % config.log.every == 0 or state.step == config.train.steps:
                rates = account.achieved(window_samples, time.monotonic() - window_start, world, peak.tflops)
                scalars = {"loss": mean_loss, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                           "train_flops": state.train_flops, "train_flops_paper": state.train_flops_paper,
                           "samples_seen": state.samples_seen, "skipped": sum(state.skipped.values()), **rates}
                # I/O vs compute: mean seconds per step this rank waited for data, and the share of wall time
                window_s = max(time.monotonic() - window_start, 1e-9)
                scalars.update(data_wait_s=window_wait / max(window_steps, 1), data_wait_share=min(1.0, window_wait / window_s))
                accelerator.log(scalars, step=state.step)
                result.samples_per_s, result.mfu = rates["samples_per_s"], rates["mfu"]
                result.data_wait_s = scalars["data_wait_s"]
                window_start, window_samples = time.monotonic(), 0
                window_wait, window_steps = 0.0, 0
            progress.update(state.step, mean_loss, scheduler.get_last_lr()[0], result.samples_per_s, result.mfu,
                            result.data_wait_s)

            io_start = time.monotonic()
            if state.step % config.checkpoint.every == 0 or state.step == config.train.steps:
                result.checkpoint = _save(accelerator, config, out, model, backbone, optimizer, scheduler, ema, state)
            if config.eval.every and state.step % config.eval.every == 0:
                result.evaluations.append(_evaluate(accelerator, config, model, backbone, state, eval_metrics))
            window_start += time.monotonic() - io_start  # samples/s counts training time only
    finally:
        progress.close()
        for tracker in accelerator.trackers:  # not end_training(): it destroys the process group, which
            tracker.finish()                  # the launch owns (several trainings may share one launch)
        del loader

    result.step, result.samples_seen = state.step, state.samples_seen
    result.train_flops, result.train_flops_paper = state.train_flops, state.train_flops_paper
    result.wall_s, result.skipped = state.wall_s, dict(state.skipped)
    if result.checkpoint is None:
        result.checkpoint = ckpt_io.latest_checkpoint(out)
    return result


# -- helpers the loop reads as single lines ---------------------------------------------------------

def _inputs(batch, model, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean backbone input x0, text context) of a micro-batch, from the cache or the frozen parts."""
    if "context" in batch:
        context = batch["context"].to(device)
    else:
        context = model.encode_text(batch["captions"])
    if "latent_mean" in batch:  # cached posterior: sample it with this position's VAE noise
        mean, std = batch["latent_mean"].to(device), batch["latent_std"].to(device)
        return (mean + std * batch["vae_noise"].to(device)) * model.vae_scaling, context
    pixels = batch["pixels"].to(device)
    if model.vae is None:
        return pixels, context
    # The VAE posterior is sampled with noise drawn from the sample's position (exact resume, any W).
    posterior = model.vae.encode(pixels.to(dtype)).latent_dist
    latents = posterior.mean + posterior.std * batch["vae_noise"].to(device, posterior.mean.dtype)
    return latents.float() * model.vae_scaling, context


def _cache_decision(config: RunConfig, index) -> tuple[bool, str]:
    """Whether the run trains from the latent/text cache, and the reason, printed at start-up."""
    if config.data.cache is not None:
        return config.data.cache, f"{'on' if config.data.cache else 'off'} (data.cache={str(config.data.cache).lower()})"
    n = len(index)
    if n > config.data.cache_max_items:
        return False, (f"off: {n:,} items is more than data.cache_max_items={config.data.cache_max_items:,} "
                       "(the cache stores every item's latents and caption embeddings)")
    return True, f"on (auto: {n:,} items; data.cache=false turns it off)"


def _adamw(config: RunConfig, params) -> torch.optim.Optimizer:
    """AdamW with fp32 master weights; the fused kernel unless FSDP shards the parameters."""
    impl = config.train.optimizer_impl
    if impl == "auto":
        impl = "foreach" if config.train.distributed == "fsdp" else "fused"
    kwargs = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    return torch.optim.AdamW(params, lr=config.optim.lr, betas=(config.optim.beta1, config.optim.beta2),
                             weight_decay=config.optim.weight_decay, eps=config.optim.eps, **kwargs)


def _compute_dtype(config: RunConfig, device: torch.device) -> torch.dtype:
    """The dtype the backbone's matmuls run in, so MFU is measured against that dtype's peak."""
    if config.train.mixed_precision == "bf16":
        return torch.bfloat16
    if config.train.mixed_precision == "fp16" and device.type == "cuda":
        return torch.float16
    return torch.float32


def _accelerator(config: RunConfig, out: Path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    with contextlib.suppress(Exception):  # let one process run several trainings (tests, demo)
        AcceleratorState._reset_state()
    log_with = []
    if config.log.tensorboard:
        log_with.append("tensorboard")
    if config.log.wandb:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise UserError("log.wandb=true but wandb is not installed (pip install wandb)")
        log_with.append("wandb")
    kwargs: dict[str, Any] = {}
    plugin = accelerate_plugin(config)  # None where accelerate would not shard: see distributed.py
    if plugin is not None:
        kwargs["fsdp_plugin"] = plugin
    # Without a GPU, accelerate must be told it is on CPUs, or each torchrun process trains alone.
    accelerator = Accelerator(mixed_precision=config.train.mixed_precision, cpu=config.train.cpu or device_type(config) == "cpu",
                              log_with=log_with or None, project_dir=str(out), **kwargs)
    return accelerator


def _start_trackers(accelerator, config: RunConfig) -> None:
    if accelerator.log_with:
        accelerator.init_trackers(config.run_name, config=_flat_hparams(config.to_dict()))


_DISTRIBUTION = {"NO": "no distribution", "MULTI_CPU": "DDP over CPU processes", "MULTI_GPU": "DDP",
                 "FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}


def _setup_line(accelerator, config: RunConfig, sharding=None) -> str:
    """'1 process, no distribution, precision fp32, on cpu' rather than accelerate's enum names."""
    world = accelerator.num_processes
    kind = "FSDP2 (fully_shard)" if sharding is not None else accelerator.distributed_type.value
    precision = {"no": "fp32"}.get(config.train.mixed_precision, config.train.mixed_precision)
    return (f"{world} process{'es' if world != 1 else ''}, {_DISTRIBUTION.get(kind, kind)}, precision {precision}, "
            f"on {accelerator.device}")


def _intact_checkpoint(accelerator, out: Path) -> Path | None:
    """The newest checkpoint whose files are all readable. A damaged newer one (a truncated weights or
    optimizer file) is named, renamed aside to `damaged-<name>` (never deleted, never overwritten by
    the next save) and skipped."""
    intact, damaged = ckpt_io.find_intact(out)
    accelerator.wait_for_everyone()  # every rank has looked before the main process renames anything
    for ckpt, reason in damaged:
        kept = ckpt.with_name(f"damaged-{ckpt.name}")
        if accelerator.is_main_process:
            ckpt_io.set_aside(ckpt, kept)
        where = f"resuming from {intact.name}" if intact else "no intact checkpoint is left: starting from step 0"
        accelerator.print(f"checkpoint {ckpt} is damaged ({reason}); kept as {kept.name}; {where}")
    accelerator.wait_for_everyone()
    return intact


def _flat_hparams(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_hparams(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _save(accelerator, config, out, model, backbone, optimizer, scheduler, ema, state) -> Path:
    model.info.tags.update(run=config.run_name, variant=config.variant, step=state.step,
                           samples_seen=state.samples_seen, train_flops=state.train_flops,
                           train_flops_paper=state.train_flops_paper, recipe_hash=state.recipe_hash,
                           caption_dropout=config.train.caption_dropout)
    return ckpt_io.save_checkpoint(accelerator, out, model=model, backbone=backbone, optimizer=optimizer,
                                   scheduler=scheduler, ema=ema, state=state, config_dict=config.to_dict(),
                                   keep=config.checkpoint.keep, embed_frozen=config.checkpoint.embed_frozen)


def _diverged(out: Path, state, loss: float, grad_norm: float) -> TrainingDiverged:
    """Nothing is saved: the newest periodic checkpoint stays as it was, and the message names it."""
    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
    latest = ckpt_io.latest_checkpoint(out)
    kept = (f"last good checkpoint {latest} (step {ckpt_io.read_state(latest).step}) is intact" if latest
            else "no checkpoint had been saved yet (lower checkpoint.every)")
    return TrainingDiverged(f"training diverged: {what} at step {state.step + 1}, not applied; {kept}")


def _evaluation_missed(config: RunConfig, step: int) -> bool:
    """Whether `step` is on the evaluation grid and its in-training evaluation never finished."""
    from t2ibench.train.in_training_eval import eval_out_dir

    return bool(config.eval.every) and step % config.eval.every == 0 and \
        not (eval_out_dir(config, step) / "results.json").is_file()


def _evaluate(accelerator, config, model, backbone, state, eval_metrics) -> dict[str, Any]:
    """Evaluate the current (non-EMA) weights through t2ibench.evaluate; results go to the store."""
    from t2ibench.train.in_training_eval import evaluate_during_training

    return evaluate_during_training(accelerator, config, model, backbone, state, eval_metrics)


class _Progress:
    """Main process only. On a terminal: a rich bar with loss, lr, samples/s and ETA. Otherwise (a
    cluster job's log): one plain line every `log.every` steps, flushed, so the log shows progress
    while the run is going rather than one bar rendered at the end."""

    def __init__(self, config: RunConfig, start: int, enabled: bool):
        import sys

        self.bar = None
        self.lines = enabled and not sys.stdout.isatty()
        self.total, self.every, self.name = config.train.steps, max(1, config.log.every), config.run_name
        self.start_step, self.t0, self.mfu = start, time.monotonic(), 0.0
        if not enabled or self.lines:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn(f"[bold]{config.run_name}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn())
        self.task = self.bar.add_task("train", total=config.train.steps, completed=start, stats="")
        self.bar.start()

    def update(self, step: int, loss: float, lr: float, rate: float, mfu: float | None = None,
               data_wait: float = 0.0) -> None:
        if mfu is not None:
            self.mfu = mfu
        if self.bar is not None:
            self.bar.update(self.task, completed=step, stats=f"loss {loss:.4f} lr {lr:.2e} {rate:.1f} samples/s "
                            f"MFU {100 * self.mfu:.1f}% data wait {data_wait * 1000:.0f} ms/step")
        elif self.lines and (step % self.every == 0 or step == self.total):
            done = step - self.start_step
            elapsed = time.monotonic() - self.t0
            eta = elapsed / done * (self.total - step) if done else 0.0
            print(f"{self.name} step {step}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  {rate:.1f} samples/s  "
                  f"MFU {100 * self.mfu:.1f}%  data wait {data_wait * 1000:.0f} ms/step  "
                  f"elapsed {_hms(elapsed)}  ETA {_hms(eta)}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
