"""Scorer registry: metric name -> scorer class, imported lazily so listing metrics stays cheap."""

from __future__ import annotations

import importlib

from t2ibench.errors import UserError
from t2ibench.metrics.base import ItemScore, MetricResult, PromptRecord, Scorer

# name -> "module:Class". A differently named entry is a different metric (e.g. clip vs clip-x100).
SCORERS: dict[str, str] = {
    "clip": "t2ibench.metrics.clip:ClipScore",
    "clip-x100": "t2ibench.metrics.clip:ClipScoreX100",
    "fid": "t2ibench.metrics.fid:FID",
    "kid": "t2ibench.metrics.kid:KID",
    "precision": "t2ibench.metrics.prdc:Precision",
    "recall": "t2ibench.metrics.prdc:Recall",
    "density": "t2ibench.metrics.prdc:Density",
    "coverage": "t2ibench.metrics.prdc:Coverage",
    "cmmd": "t2ibench.metrics.cmmd:CMMD",
    "fd-dinov2": "t2ibench.metrics.fd_dinov2:FDDinov2",
    "imagereward": "t2ibench.metrics.imagereward:ImageRewardScore",
    "hpsv2": "t2ibench.metrics.hpsv2:HPSv2Score",
    "hpsv2.1": "t2ibench.metrics.hpsv2:HPSv21Score",
    "pickscore": "t2ibench.metrics.pickscore:PickScore",
    "tifa": "t2ibench.metrics.tifa:TIFAScore",
    # Alignment metrics T2I papers report since 2024 (docs/alignment-metrics.md).
    "vqascore": "t2ibench.metrics.vqascore:VQAScore",
    "dpg": "t2ibench.metrics.dpg:DPGBenchScore",
    "geneval": "t2ibench.metrics.geneval:GenEvalScore",
}


def scorer_class(name: str) -> type[Scorer]:
    if name not in SCORERS:
        raise UserError(f"unknown metric {name!r}; known: {', '.join(SCORERS)}")
    module, cls = SCORERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def check_prompts(metric: str, records, images_per_prompt: int | None = None, **options) -> None:
    """The metric's own check of a prompt set (questions present, K images per prompt), before any model loads."""
    scorer_class(metric).check_prompts(list(records), images_per_prompt, **options)


def default_prompt_set(name: str) -> str:
    """The prompt set a metric is scored on unless told otherwise: the paper's, else the scorer's own."""
    from t2ibench.prompts import PAPER_PROMPT_SETS

    return PAPER_PROMPT_SETS.get(name) or scorer_class(name).default_prompt_set


def parse_metrics(spec: str) -> list[str]:
    """'clip,fid' -> ['clip', 'fid'], with unknown names rejected before any work."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UserError("no metric given; known: " + ", ".join(SCORERS))
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(SCORERS)}")
    return list(dict.fromkeys(names))


__all__ = ["SCORERS", "ItemScore", "MetricResult", "PromptRecord", "Scorer", "check_prompts", "default_prompt_set",
           "parse_metrics", "scorer_class"]
