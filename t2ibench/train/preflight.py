"""Everything a training run will use, checked before step 1 (before the accelerator, trackers or any
model exist, so a failed start leaves no run directory behind): the output location, the frozen
weights, and for in-training evaluation its metrics, scorer options, prompt sets, scorer weights and
results store. Missing inputs are reported together, in one line.

At the paper's `eval.every=10000`, a typo in `eval.metrics` found at the first evaluation would cost
hours of GPU time; here it costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def eval_options(config) -> dict[str, dict[str, Any]]:
    """`eval.options` parsed (by its owner, `EvalConfig.scorer_options`): metric -> {option: value}."""
    return config.eval.scorer_options() or {}


def preflight(config) -> None:
    from t2ibench.cli_args import writable_dir
    from t2ibench.prerequisites import MissingInputs

    writable_dir(config.out_dir, "out")
    missing = MissingInputs()
    missing.check(lambda: _frozen_weights(config))
    if config.eval.every:
        _check_eval(config, missing)
    missing.raise_if_any()


def _frozen_weights(config) -> None:
    from t2ibench.model import OPENCLIP_H, SDXL_VAE
    from t2ibench.prerequisites import MissingInputs
    from t2ibench.weights import resolve

    missing = MissingInputs()
    for choice, wf, builtin in ((config.model.text_encoder, OPENCLIP_H, ("tiny",)),
                                (config.model.vae, SDXL_VAE, ("tiny", "none"))):
        if choice in builtin:
            continue
        explicit = Path(choice) if choice not in ("openclip-h", "sdxl-vae") else (
            Path(config.model.weights_dir) if config.model.weights_dir else None)
        missing.check(lambda wf=wf, explicit=explicit: resolve(wf, explicit))
    missing.raise_if_any()


def check_eval(config):
    """The in-training evaluation's metrics, options and weight files (every missing file in one message),
    checked by `validate` before anything is built; returns the run's `MetricSelection`, weights resolved."""
    from t2ibench.cli_args import writable_file
    from t2ibench.evaluate import MetricSelection
    from t2ibench.metrics import parse_metrics
    from t2ibench.metrics.option_keys import check_scorer_keys
    from t2ibench.store import ResultsStore

    names = parse_metrics(config.eval.metrics)
    options = eval_options(config)
    check_scorer_keys(names, {}, {m: o for m, o in options.items() if m in names}, options_flag="eval.options")
    selection = MetricSelection.parse(names, options=options)
    store = ResultsStore(config.eval.db)  # a wrong path or an unreachable server first: not a missing input
    if store.path is not None:
        writable_file(store.path, "eval.db")
    store.check_writable()  # an unreachable server or a newer schema stops here, not at the first eval
    return selection.resolve_weights()


def _check_eval(config, missing) -> None:
    """At start-up (after `validate`, which checked metrics, weights and eval.db): the prompt sets exist."""
    from t2ibench.evaluate import MetricSelection, _prompt_sets

    e = config.eval
    selection = MetricSelection.parse(e.metrics, options=eval_options(config))
    missing.check(lambda: _prompt_sets(selection, e.prompts, e.prompts_dir, e.limit))
