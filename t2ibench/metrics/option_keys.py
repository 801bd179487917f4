"""Which `--option METRIC.KEY` and `--weights METRIC.KEY` keys a scorer takes, read from the scorer's
own signatures (its `__init__` and `weight_files` keywords, and for TIFA its VQA backend's), so the
list cannot drift from the code. An unknown key is an error: options enter the protocol manifest
hash, and a typo would otherwise quietly open its own leaderboard group."""

from __future__ import annotations

import inspect
from typing import Any

from t2ibench.errors import UserError

_NOT_OPTIONS = {"self", "device", "weights"}


def _keywords(*functions) -> set[str]:
    out: set[str] = set()
    for fn in functions:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _NOT_OPTIONS:
                out.add(p.name)
    return out


def _class_keywords(cls: type, method: str) -> set[str]:
    return _keywords(*[vars(c)[method] for c in cls.__mro__ if method in vars(c)
                       and callable(getattr(vars(c)[method], "__func__", vars(c)[method]))])


def option_keys(metric: str, options: dict[str, Any] | None = None) -> set[str]:
    """Every option key `metric`'s scorer accepts (with these options: TIFA's depend on its VQA backend)."""
    from t2ibench.metrics import scorer_class

    cls = scorer_class(metric)
    keys = _class_keywords(cls, "__init__")
    keys |= _keywords(*[getattr(c, "weight_files") for c in cls.__mro__ if "weight_files" in vars(c)])
    if metric == "tifa":
        from t2ibench.metrics.tifa.vqa import vqa_backend_class

        backend = vqa_backend_class(str((options or {}).get("vqa") or _default_vqa()))
        keys |= _class_keywords(backend, "__init__") - {"batch_size"}  # vqa_batch_size sets it
    return keys


def _default_vqa() -> str:
    from t2ibench.metrics.tifa.scorer import DEFAULT_VQA

    return DEFAULT_VQA


def check_scorer_keys(metrics: list[str], weights: dict[str, dict] | None, options: dict[str, dict] | None,
                      weights_flag: str = "--weights", options_flag: str = "--option") -> None:
    """Unknown option or weights keys of any metric: one UserError with a "did you mean"."""
    from t2ibench.cli_args import did_you_mean
    from t2ibench.metrics import scorer_class

    for metric in metrics:
        given = (options or {}).get(metric) or {}
        known = option_keys(metric, given)
        for key in given:
            if key not in known:
                raise UserError(f"{options_flag} {metric}.{key}: {metric} has no option {key!r}"
                                f"{did_you_mean(key, known)}")
        wanted = (weights or {}).get(metric) or {}
        if wanted:
            try:
                files = {wf.key for wf in scorer_class(metric).weight_files(**given)}
            except TypeError:
                files = {wf.key for wf in scorer_class(metric).weight_files()}
            if metric == "tifa":
                files.add("mapper")
            for key in wanted:
                if key not in files:
                    raise UserError(f"{weights_flag} {metric}.{key}: {metric} has no weights {key!r}"
                                    f"{did_you_mean(key, files)}")
