"""Everything a training run will use, checked before step 1 (before the accelerator, trackers or any
model exist, so a failed start leaves no run directory behind): the output location, the frozen
weights, and for in-training evaluation its metrics, scorer options, prompt sets, scorer weights and
results store. Missing inputs are reported together, in one line.

At the paper's `eval.every=10000`, a typo in `eval.metrics` found at the first evaluation would cost
hours of GPU time; here it costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError


def eval_options(config) -> dict[str, dict[str, Any]]:
    """`eval.options` parsed: a JSON object of metric -> {option: value}."""
    text = config.eval.options
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise UserError(f"eval.options is not JSON ({exc}): {text!r}") from None
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise UserError('eval.options must be a JSON object of metric -> options, e.g. {"tifa": {"vqa": "shapes-measure"}}')
    return options


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


def _check_eval(config, missing) -> None:
    from t2ibench.cli_args import writable_file
    from t2ibench.evaluate import _check_weights, _prompt_sets
    from t2ibench.metrics import parse_metrics
    from t2ibench.metrics.option_keys import check_scorer_keys

    e = config.eval  # its numbers were range-checked by train.config.validate
    names = parse_metrics(e.metrics)
    options = eval_options(config)
    stray = sorted(set(options) - set(names))
    if stray:
        raise UserError(f"eval.options names {', '.join(stray)}, which is not among eval.metrics={e.metrics}")
    check_scorer_keys(names, {}, options, options_flag="eval.options")
    missing.check(lambda: _prompt_sets(names, e.prompts, e.prompts_dir, e.limit, options))
    missing.check(lambda: _check_weights(names, {}, options))

    from t2ibench.store import ResultsStore

    writable_file(ResultsStore(e.db).path, "eval.db")
