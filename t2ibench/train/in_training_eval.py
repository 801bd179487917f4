"""In-training evaluation: every `eval.every` steps, the current NON-EMA weights go through the same
`t2ibench.evaluate.evaluate` as `t2ibench eval`, and one row per metric lands in the results store,
tagged with run, variant, step and cumulative training FLOPs (exact count). All processes take part:
generation is sharded across them, scoring runs on the main process (see t2ibench/evaluate.py).

Under FSDP every rank first gathers the full weights into a plain copy (sampling calls the backbone a
different number of times on each rank, which a sharded module cannot do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_during_training(accelerator, config, model, backbone, state, metrics) -> dict[str, Any]:
    """`metrics`: the run's `MetricSelection`, checked once by `validate(config)` before step 1."""
    from t2ibench.evaluate import evaluate
    from t2ibench.model import TextToImageModel

    sampled = model
    if config.train.distributed == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(backbone, options=StateDictOptions(full_state_dict=True))
        copy = type(model.backbone).from_config(model.backbone.config).to(accelerator.device)
        copy.load_state_dict(full)
        sampled = TextToImageModel(copy, model.text_encoder, model.vae, model.info)
    model.info.tags.update(run=config.run_name, variant=config.variant, step=state.step,
                           samples_seen=state.samples_seen, train_flops=state.train_flops)
    protocol = config.eval.protocol(config.resolution)
    out_dir = Path(config.out_dir) / "eval" / f"step-{state.step:08d}"
    result = evaluate(sampled, metrics, prompts=config.eval.prompts, prompts_dir=config.eval.prompts_dir,
                      protocol=protocol, out_dir=out_dir, limit=config.eval.limit, db=config.eval.db,
                      run=config.run_name, variant=config.variant, step=state.step, train_flops=state.train_flops,
                      device=str(accelerator.device), accelerator=accelerator,
                      progress=False, batch_size=config.eval.batch_size)
    scores = {m: r["value"] for m, r in result.get("metrics", {}).items()}
    if scores:
        accelerator.log({f"eval/{m}": v for m, v in scores.items()}, step=state.step)
    return {"step": state.step, "train_flops": state.train_flops, "scores": scores, "out_dir": str(out_dir)}
