"""Paired comparison of two results: `t2ibench compare A B`.

A side is a `results.json` file (or the folder holding one), or a run in the results store: `RUN`
(its latest step) or `RUN@STEP`. Two results are compared only under the same per-metric protocol
manifest (same prompt set, seeds, sampler, scorer version and weights), on the prompts both scored:
difference of means (A - B) with a paired bootstrap 95% interval and a sign-flip permutation p-value
(t2ibench.stats.paired_compare).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError
from t2ibench.stats import Comparison, paired_compare

RESULTS_FILE = "results.json"


@dataclass
class MetricSide:
    value: float
    manifest_hash: str | None
    version: str
    item_values: dict[str, float] = field(default_factory=dict)
    ci95: list[float] | None = None
    features: Path | None = None  # distribution metrics: the generated features (+ real statistics), .npz


@dataclass
class Side:
    label: str
    metrics: dict[str, MetricSide]


def _prompt_means(items: list[dict]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for it in items:
        v = it.get("value")
        if v is not None and math.isfinite(v):
            acc = sums.setdefault(it["id"], [0.0, 0])
            acc[0] += v
            acc[1] += 1
    return {k: s / c for k, (s, c) in sums.items()}


def _from_results_file(path: Path) -> Side:
    try:
        data = json.loads(path.read_text())
        metrics = data["metrics"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a t2ibench results.json") from None
    per_item = data.get("per_item") or {}
    out = {m: MetricSide(float(r["value"]), r.get("manifest_hash"), r.get("version", ""),
                         _prompt_means(per_item.get(m) or []), r.get("ci95"),
                         path.parent / r["features_file"] if r.get("features_file") else None)
           for m, r in metrics.items()}
    label = f"{data.get('run') or path.parent.name}" + (f"@{data['step']}" if data.get("step") is not None else "")
    return Side(label, out)


def _from_store(spec: str, store) -> Side:
    run, _, step_text = spec.partition("@")
    step = None
    if step_text:
        try:
            step = int(step_text)
        except ValueError:
            raise UserError(f"{spec!r}: write RUN@STEP with an integer step") from None
    rows = store.query(run=run)
    if not rows:
        raise UserError(f"{spec!r} is neither a results.json nor a run in the results store {store.path}")
    if step is None:
        step = max((r.step for r in rows if r.step is not None), default=None)
    chosen = [r for r in rows if r.step == step]
    if not chosen:
        steps = sorted({r.step for r in rows if r.step is not None})
        raise UserError(f"run {run!r} has no results at step {step}; it has steps {steps}")
    metrics: dict[str, MetricSide] = {}
    for r in chosen:  # oldest first: the newest row of each metric wins
        metrics[r.metric] = MetricSide(float(r.value), r.manifest_hash, r.version, dict(r.item_values or {}),
                                       (r.interval or {}).get("ci95"))
    return Side(f"{run}@{step}" if step is not None else run, metrics)


def load_side(spec: str, store=None) -> Side:
    path = Path(spec)
    if path.is_dir() and (path / RESULTS_FILE).is_file():
        path = path / RESULTS_FILE
    if path.is_file():
        return _from_results_file(path)
    if store is None:
        raise UserError(f"{spec}: no such results.json")
    return _from_store(spec, store)


def compare_sides(a: Side, b: Side, metric: str | None = None, **options: Any) -> dict[str, Comparison]:
    """metric -> Comparison of A - B. Refuses (UserError, one line) different protocols, metrics
    that one side lacks, and results with no prompt in common."""
    common = [m for m in a.metrics if m in b.metrics]
    if metric is not None:
        missing = [s.label for s in (a, b) if metric not in s.metrics]
        if missing:
            raise UserError(f"{missing[0]} has no {metric} result")
        common = [metric]
    if not common:
        raise UserError(f"{a.label} and {b.label} share no metric ({', '.join(a.metrics)} vs {', '.join(b.metrics)})")
    out: dict[str, Comparison] = {}
    for m in common:
        x, y = a.metrics[m], b.metrics[m]
        unknown = [s.label for s, ms in ((a, x), (b, y)) if not ms.manifest_hash]
        if unknown:
            raise UserError(f"{m}: {unknown[0]} records no protocol manifest (e.g. an `eval --images` result), "
                            "so nothing says it is comparable")
        if x.version != y.version or x.manifest_hash != y.manifest_hash:
            raise UserError(f"{m}: {a.label} and {b.label} were scored under different protocols or prompt sets "
                            f"(manifest {str(x.manifest_hash)[:12]} vs {str(y.manifest_hash)[:12]}); "
                            "they cannot be compared")
        if x.features is not None and y.features is not None:  # distribution metric (FID)
            out[m] = _feature_permutation(x.features, y.features, options)
            continue
        if not x.item_values or not y.item_values:
            raise UserError(f"{m}: a paired comparison needs per-prompt values, which "
                            f"{a.label if not x.item_values else b.label} does not record")
        ids = [k for k in x.item_values if k in y.item_values]
        if not ids:
            raise UserError(f"{m}: {a.label} and {b.label} have no prompt in common")
        out[m] = paired_compare([x.item_values[k] for k in ids], [y.item_values[k] for k in ids], **options)
    return out


def _feature_permutation(a: Path, b: Path, options: dict[str, Any]) -> Comparison:
    import numpy as np

    from t2ibench.stats import fid_permutation_test

    try:
        with np.load(a) as za, np.load(b) as zb:
            fa, fb, mu, sigma = za["features"], zb["features"], za["mu_real"], za["sigma_real"]
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"cannot read the generated features ({exc})") from None
    return fid_permutation_test(fa, fb, mu, sigma, n_permutations=options.get("n_permutations", 10000),
                                seed=options.get("seed", 0))
