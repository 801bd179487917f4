"""Pure analysis behind the leaderboard: protocol groups, latest/best selection, ranking, Pareto
frontiers, power-law fits and rank correlations. No plotting and no HTML here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from t2ibench.errors import UserError
from t2ibench.store import ResultRow

# Metrics where a smaller value is better; every other metric is higher-is-better
# (mirrors `Scorer.higher_is_better`, kept here so the leaderboard never imports torch).
LOWER_IS_BETTER = frozenset({"fid", "kid", "cmmd", "fd-dinov2"})
SELECT_MODES = ("latest", "best")

# X axes of the scaling views, in the paper's units: name -> (label, how to read it from a row).
X_AXES = {
    "compute": "training compute (GFLOPs, cumulative, full count)",
    "params": "parameters (millions)",
    "data": "training data (millions of image-noun pairs)",
}


def higher_is_better(metric: str) -> bool:
    return metric.lower() not in LOWER_IS_BETTER


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


@dataclass
class ProtocolGroup:
    """Results of one metric and version under one protocol manifest: the only results ranked together.
    Rows with no manifest hash form groups that are shown but never ranked."""

    metric: str
    version: str
    manifest_hash: str | None
    manifest: dict[str, Any] = field(default_factory=dict)
    rows: list[ResultRow] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        return bool(self.manifest_hash)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def key(self) -> str:
        return f"{self.metric}|{self.version}|{self.manifest_hash or '-'}"

    def runs(self) -> list[str]:
        return list(dict.fromkeys(r.run for r in self.rows))

    def selected(self, mode: str = "latest") -> list[ResultRow]:
        """One row per run (latest step, or best value), best first."""
        return rank_order(select_per_run(self.rows, mode, self.higher_is_better), self.higher_is_better)


def group_by_protocol(rows: Iterable[ResultRow]) -> list[ProtocolGroup]:
    """Split rows into (metric, version, manifest hash) groups, largest group of each metric first.
    A row without a manifest hash gets a group per run, so unknown protocols are never pooled."""
    groups: dict[tuple, ProtocolGroup] = {}
    for r in rows:
        key = (r.metric, r.version, r.manifest_hash or None, None if r.manifest_hash else r.run)
        g = groups.get(key)
        if g is None:
            g = groups[key] = ProtocolGroup(r.metric, r.version, r.manifest_hash or None, dict(r.manifest or {}))
        g.rows.append(r)
        if not g.manifest and r.manifest:
            g.manifest = dict(r.manifest)
    return sorted(groups.values(), key=lambda g: (g.metric, not g.comparable, -len(g.runs()), g.version,
                                                 g.manifest_hash or "", g.rows[0].run))


def _step_key(r: ResultRow) -> tuple:
    return (r.step if r.step is not None else -1, r.created)


def select_per_run(rows: Iterable[ResultRow], mode: str = "latest", higher: bool = True) -> list[ResultRow]:
    if mode not in SELECT_MODES:
        raise UserError(f"unknown selection {mode!r}; choose one of {', '.join(SELECT_MODES)}")
    chosen: dict[str, ResultRow] = {}
    for r in rows:
        cur = chosen.get(r.run)
        if cur is None:
            chosen[r.run] = r
        elif mode == "latest":
            if _step_key(r) > _step_key(cur):
                chosen[r.run] = r
        else:
            if (_value_key(r, higher), _step_key(r)) > (_value_key(cur, higher), _step_key(cur)):
                chosen[r.run] = r
    return list(chosen.values())


def _value_key(r: ResultRow, higher: bool) -> float:
    """Larger is better; NaN ranks last."""
    if not _finite(r.value):
        return -math.inf
    return r.value if higher else -r.value


def rank_order(rows: Sequence[ResultRow], higher: bool = True) -> list[ResultRow]:
    return sorted(rows, key=lambda r: (-_value_key(r, higher), r.run))


def competition_ranks(rows: Sequence[ResultRow], higher: bool = True) -> list[int | None]:
    """Ranks 1, 2, 2, 4 ... for rows already in rank order; NaN values get no rank."""
    ranks: list[int | None] = []
    for i, r in enumerate(rows):
        if not _finite(r.value):
            ranks.append(None)
        elif i and ranks[-1] is not None and rows[i - 1].value == r.value:
            ranks.append(ranks[-1])
        else:
            ranks.append(i + 1)
    return ranks


# -- scaling views -----------------------------------------------------------------------------

def image_noun_pairs(row: ResultRow) -> float | None:
    """The run's training-data size in image-noun pairs: the row's own field, else the manifest's
    `data.image_noun_pairs` (or top-level `image_noun_pairs`)."""
    if _finite(row.image_noun_pairs):
        return float(row.image_noun_pairs)
    m = row.manifest or {}
    for v in ((m.get("data") or {}).get("image_noun_pairs") if isinstance(m.get("data"), dict) else None,
              m.get("image_noun_pairs")):
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                return None
    return None


def x_value(row: ResultRow, x: str) -> float | None:
    """The row's position on a scaling axis, in the paper's units (GFLOPs, millions, millions)."""
    if x == "compute":
        v = row.train_flops / 1e9 if _finite(row.train_flops) else None
    elif x == "params":
        v = row.params / 1e6 if _finite(row.params) else None
    elif x == "data":
        pairs = image_noun_pairs(row)
        v = pairs / 1e6 if pairs is not None else None
    elif x == "gmacs":
        v = float(row.gmacs) if _finite(row.gmacs) else None
    else:
        raise UserError(f"unknown x axis {x!r}; choose compute, params or data")
    return v if v is not None and v > 0 else None


def scaling_points(group: ProtocolGroup, x: str, mode: str = "latest") -> list[tuple[float, float, ResultRow]]:
    """(x, score, row) points for a scaling fit. Compute uses every evaluated checkpoint (a training
    curve is a path through compute); params and data use each run's selected (final) result."""
    rows = group.rows if x == "compute" else group.selected(mode)
    pts = [(x_value(r, x), r.value, r) for r in rows]
    return [(xv, float(v), r) for xv, v, r in pts if xv is not None and _finite(v)]


def pareto_frontier(points: Sequence[tuple], higher: bool = True) -> list[tuple]:
    """Points (x, score, ...) not dominated by any point with smaller-or-equal x and a better score,
    sorted by x. A point enters the frontier only when it beats every cheaper point strictly."""
    ordered = sorted(points, key=lambda p: (p[0], -p[1] if higher else p[1]))
    frontier: list[tuple] = []
    best = -math.inf
    for p in ordered:
        score = p[1] if higher else -p[1]
        if score > best:
            frontier.append(p)
            best = score
    return frontier


@dataclass(frozen=True)
class PowerLawFit:
    """S = a * X^b, least squares on log S = log a + b log X; r2 is measured in that log-log space."""

    a: float
    b: float
    r2: float
    n: int

    def __call__(self, x: Any) -> Any:
        return self.a * np.power(x, self.b)

    def describe(self) -> str:
        return f"S = {self.a:.4g} X^{self.b:.4g}  (R^2 = {self.r2:.4f}, n = {self.n})"


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> PowerLawFit:
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise UserError("power-law fit: x and y must be equal-length sequences")
    if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x) & np.isfinite(y)):
        raise UserError("power-law fit: every x and score must be positive and finite")
    if len(np.unique(x)) < 2:
        raise UserError(f"power-law fit: needs at least 2 points with different x, got {len(np.unique(x))}")
    lx, ly = np.log(x), np.log(y)
    b, log_a = np.polyfit(lx, ly, 1)
    resid = ly - (log_a + b * lx)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(a=float(np.exp(log_a)), b=float(b), r2=r2, n=len(x))


@dataclass(frozen=True)
class RankCorrelation:
    rho: float
    p: float
    n: int

    def describe(self) -> str:
        return f"Spearman ρ = {self.rho:.2f} (p = {self.p:.2g}, n = {self.n})"


def spearman(xs: Sequence[float], ys: Sequence[float]) -> RankCorrelation | None:
    """Spearman's rank correlation (scipy); None with fewer than 3 points or a constant axis."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    res = spearmanr(xs, ys)
    return RankCorrelation(float(res.statistic), float(res.pvalue), len(xs))


def runs_by_key(rows: Iterable[ResultRow]) -> dict[str, list[ResultRow]]:
    """Rows of each run in step order (for training curves)."""
    out: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        out[r.run].append(r)
    for v in out.values():
        v.sort(key=_step_key)
    return dict(out)


@dataclass
class ScalingFit:
    """A power law fitted on the Pareto frontier of one protocol group along one axis."""

    group: ProtocolGroup
    x: str
    points: list[tuple[float, float, ResultRow]]
    frontier: list[tuple[float, float, ResultRow]]
    fit: PowerLawFit | None  # None when the frontier has fewer than 2 distinct x
    band: Any = None  # t2ibench.stats.PowerLawBand: bootstrap intervals of a and b, and the curve's band


def row_ci(row: ResultRow) -> list[float] | None:
    """The result's 95% interval [lo, hi], when it recorded one."""
    ci = (row.interval or {}).get("ci95") if isinstance(row.interval, dict) else None
    return [float(ci[0]), float(ci[1])] if ci and len(ci) == 2 and None not in ci else None


def row_se(row: ResultRow) -> float | None:
    ci = row_ci(row)
    return (ci[1] - ci[0]) / 3.92 if ci else None


def significance_ranks(group: ProtocolGroup, mode: str = "latest", alpha: float = 0.05) -> dict[str, Any]:
    """run -> t2ibench.stats.RankedEntry: tiers of runs not significantly different from their tier's
    best (paired sign-flip test on common prompts, Holm-corrected over the tier's comparisons)."""
    from t2ibench.stats import significance_ranks as tiers

    rows = group.selected(mode)
    entries = [(r.run, float(r.value) if _finite(r.value) else math.nan, dict(r.item_values or {}) or None)
               for r in rows]
    return {e.key: e for e in tiers(entries, higher_is_better=group.higher_is_better, alpha=alpha)}


def fit_scaling(group: ProtocolGroup, x: str, mode: str = "latest", require: bool = True) -> ScalingFit:
    """Pareto frontier of score vs `x` and S = a X^b on it. With `require`, missing data is a UserError."""
    if x not in X_AXES:
        raise UserError(f"unknown x axis {x!r}; choose one of {', '.join(X_AXES)}")
    pts = scaling_points(group, x, mode)
    if not pts and require:
        need = {"compute": "train_flops (t2ibench eval --train-flops, or the trainer's evaluation)",
                "params": "params (recorded from the variant)",
                "data": "image-noun pairs per run (the result's image_noun_pairs field, or "
                        "manifest['data']['image_noun_pairs'])"}[x]
        raise UserError(f"no {group.metric} results under this protocol record {need}; cannot fit against {x}")
    frontier = pareto_frontier(pts, group.higher_is_better)
    fit = band = None
    if len({p[0] for p in frontier}) >= 2 and all(p[1] > 0 for p in frontier):
        fit = fit_power_law([p[0] for p in frontier], [p[1] for p in frontier])
        from t2ibench.stats import power_law_intervals

        band = power_law_intervals([p[0] for p in frontier], [p[1] for p in frontier],
                                   [row_se(p[2]) for p in frontier])
    elif require:
        raise UserError(f"the {group.metric} Pareto frontier against {x} has {len(frontier)} point(s); "
                        "a power-law fit needs at least 2 with different x and positive scores")
    return ScalingFit(group, x, pts, frontier, fit, band)
