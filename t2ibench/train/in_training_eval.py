"""In-training evaluation: every `eval.every` steps, the current NON-EMA weights go through the same
`t2ibench.evaluate.evaluate` as `t2ibench eval`, and one row per metric lands in the results store,
tagged with run, variant, step and cumulative training FLOPs (exact count). All processes take part:
generation is sharded across them, scoring runs on the main process (see t2ibench/evaluate.py).

The scores are also streamed to the run's trackers (TensorBoard by default, W&B when log.wandb=true),
as `eval/<metric>` against the step and `eval_vs_gflops/<metric>` against cumulative training GFLOPs;
the results store stays the record.

Under FSDP every rank first gathers the full weights into a plain copy (sampling calls the backbone a
different number of times on each rank, which a sharded module cannot do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def eval_out_dir(config, step: int) -> Path:
    """Where the in-training evaluation of `step` writes (its results.json comes last)."""
    return Path(config.out_dir) / "eval" / f"step-{step:08d}"


def evaluate_during_training(accelerator, config, model, backbone, state, metrics) -> dict[str, Any]:
    """`metrics`: the run's `MetricSelection`, checked once by `validate(config)` before step 1."""
    from t2ibench.evaluate import evaluate
    from t2ibench.model import TextToImageModel

    sampled = model
    if config.train.distributed == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        full = get_model_state_dict(backbone, options=StateDictOptions(full_state_dict=True))
        copy = type(model.backbone).from_config(model.backbone.config).to(accelerator.device)
        copy.load_state_dict(full)
        sampled = TextToImageModel(copy, model.text_encoder, model.vae, model.info)
    model.info.tags.update(run=config.run_name, variant=config.variant, step=state.step,
                           samples_seen=state.samples_seen, train_flops=state.train_flops)
    protocol = config.eval.protocol(config.resolution, str(accelerator.device))
    out_dir = eval_out_dir(config, state.step)
    result = evaluate(sampled, metrics, prompts=config.eval.prompts, prompts_dir=config.eval.prompts_dir,
                      protocol=protocol, out_dir=out_dir, limit=config.eval.limit, db=config.eval.db,
                      run=config.run_name, variant=config.variant, step=state.step, train_flops=state.train_flops,
                      device=str(accelerator.device), accelerator=accelerator,
                      progress=False, batch_size=config.eval.batch_size)
    scores = {m: r["value"] for m, r in result.get("metrics", {}).items()}
    stream_scores(accelerator, scores, state.step, state.train_flops)
    return {"step": state.step, "train_flops": state.train_flops, "scores": scores, "out_dir": str(out_dir)}


def stream_scores(accelerator, scores: dict[str, float], step: int, train_flops: float) -> None:
    """Scores to every tracker, against the step and against cumulative training FLOPs. TensorBoard
    steps are 64-bit integers and the study's runs pass 1e21 FLOPs, so that axis counts GFLOPs (the
    unit of `t2ibench leaderboard fit --x compute`); W&B plots it as a custom x-axis (define_metric)."""
    if not scores or not accelerator.is_main_process:
        return
    accelerator.log({f"eval/{m}": v for m, v in scores.items()}, step=step)
    gflops = train_flops / 1e9
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for m, v in scores.items():
                tracker.writer.add_scalar(f"eval_vs_gflops/{m}", v, global_step=round(gflops))
            tracker.writer.flush()
        elif tracker.name == "wandb":
            run = tracker.run
            run.define_metric("train_gflops")
            run.define_metric("eval_vs_gflops/*", step_metric="train_gflops")
            run.log({"train_gflops": gflops, **{f"eval_vs_gflops/{m}": v for m, v in scores.items()}}, step=step)
