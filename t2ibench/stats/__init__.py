"""Uncertainty for every number t2ibench reports: bootstrap intervals over prompts, paired comparisons,
Holm-corrected ranking (here), power-law fits with intervals and early prediction of final scores
(`curves`), and the FID bootstrap over generated features (`fid`). numpy and scipy only; low in the
layers (imports only `errors`).

Conventions (documented in docs/statistics.md):
* Resampling is seeded (`seed`, default 0) and every interval records its method and resample count,
  so a rerun gives the same interval.
* `bootstrap_mean` draws resample indices exactly as `scipy.stats.bootstrap` does (one
  `np.random.default_rng(seed)`, `integers(0, n, (B, n))`, row-chunked) and computes the percentile
  and BCa intervals by the same formulas (Efron & Tibshirani 14.3, 15.4), so with the same seed,
  method and resamples the two give the same interval; a test checks it.
* Fewer than 2 items give no interval: `Interval.reason` says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from t2ibench.errors import UserError

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 10000
DEFAULT_SEED = 0
METHODS = ("percentile", "bca")
DEFAULT_METHOD = "bca"
_CHUNK_ELEMENTS = 4_000_000  # resample indices held at once (32 MB of int64)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval; lo/hi are None (and `reason` says why) when
    there is none."""

    estimate: float | None
    lo: float | None
    hi: float | None
    n: int
    method: str
    n_resamples: int
    seed: int
    confidence: float = CONFIDENCE
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def ci(self) -> list[float] | None:
        return [self.lo, self.hi] if self.ok else None

    @property
    def se(self) -> float | None:
        """Normal-equivalent standard error from the interval's width."""
        if not self.ok:
            return None
        from scipy.special import ndtri

        return (self.hi - self.lo) / (2 * float(ndtri(0.5 + self.confidence / 2)))

    def to_dict(self) -> dict[str, Any]:
        d = {"ci95" if self.confidence == CONFIDENCE else "ci": self.ci, "method": self.method,
             "n_resamples": self.n_resamples, "seed": self.seed, "n": self.n, "confidence": self.confidence}
        if self.reason:
            d["reason"] = self.reason
        return d

    def describe(self, digits: int = 3) -> str:
        if self.estimate is None:
            return "n/a"
        if not self.ok:
            return f"{self.estimate:.{digits}f} (no interval: {self.reason})"
        return f"{self.estimate:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def _no_interval(estimate: float | None, n: int, method: str, n_resamples: int, seed: int, reason: str) -> Interval:
    return Interval(estimate, None, None, n, method, n_resamples, seed, reason=reason)


def _check(method: str, n_resamples: int, confidence: float) -> None:
    if method not in METHODS:
        raise UserError(f"unknown interval method {method!r}; choose one of {', '.join(METHODS)}")
    if int(n_resamples) < 100:
        raise UserError(f"bootstrap needs at least 100 resamples, got {n_resamples}")
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}")


# -- the bootstrap core ------------------------------------------------------------------------------
def resample_indices(n: int, n_resamples: int, seed: int):
    """Yield row blocks of the (n_resamples, n) index matrix scipy.stats.bootstrap draws (same rng
    calls, chunked so 10,000 x 2,000 never sits in memory at once)."""
    rng = np.random.default_rng(seed)
    rows = max(1, min(n_resamples, _CHUNK_ELEMENTS // max(n, 1)))
    if rows < n_resamples and (rows * n) % 2:  # keep chunk sizes even: numpy's 32-bit draws come in pairs
        rows = max(1, rows - 1) if rows > 1 else rows
    # int32 draws the very same numbers as scipy's int64 call (both take numpy's 32-bit bounded path
    # for n < 2^32; a test checks it) and halve the memory traffic of the gather.
    dtype = np.int32 if n < 2 ** 31 else np.int64
    for start in range(0, n_resamples, rows):
        yield rng.integers(0, n, (min(rows, n_resamples - start), n), dtype=dtype)


def bootstrap_sums(columns: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """columns (m, n) -> (m, n_resamples) column sums over each bootstrap resample of the n items
    (the same resample for every row, so ratios and differences stay paired)."""
    cols = np.atleast_2d(np.asarray(columns, dtype=float))
    out = np.empty((cols.shape[0], n_resamples))
    k = 0
    for idx in resample_indices(cols.shape[1], n_resamples, seed):
        out[:, k:k + len(idx)] = cols[:, idx].sum(axis=-1)
        k += len(idx)
    return out


def _interval_from(theta_hat: float, theta_b: np.ndarray, jackknife: np.ndarray | None, method: str,
                   confidence: float) -> tuple[float, float]:
    """Percentile or BCa interval from a bootstrap distribution (scipy's formulas)."""
    from scipy.special import ndtr, ndtri

    alpha = (1 - confidence) / 2
    if method == "bca":
        b = len(theta_b)
        p0 = (np.count_nonzero(theta_b < theta_hat) + np.count_nonzero(theta_b <= theta_hat)) / (2 * b)
        z0 = ndtri(p0)
        n = float(len(jackknife))
        u = (n - 1) * (jackknife.mean() - jackknife)
        a_hat = (np.sum(u ** 3) / n ** 3) / (6 * (np.sum(u ** 2) / n ** 2) ** 1.5)
        za = float(ndtri(alpha))
        qs = [ndtr(z0 + (z0 + z) / (1 - a_hat * (z0 + z))) for z in (za, -za)]
    else:
        qs = [alpha, 1 - alpha]
    lo, hi = np.quantile(theta_b, qs)
    return float(lo), float(hi)


def bootstrap_mean(values: Sequence[float], *, method: str = DEFAULT_METHOD, n_resamples: int = DEFAULT_RESAMPLES,
                   seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` (one per prompt) with its bootstrap interval over the items."""
    _check(method, n_resamples, confidence)
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return _no_interval(None, 0, method, n_resamples, seed, "no items")
    mean = float(x.mean())
    if n < 2:
        return _no_interval(mean, n, method, n_resamples, seed, f"fewer than 2 items (n={n})")
    if np.all(x == x[0]):  # every resample equals the estimate; BCa is undefined (0/0)
        return Interval(mean, mean, mean, n, method, n_resamples, seed, confidence,
                        reason="all items equal: zero-width interval")
    theta_b = bootstrap_sums(x, n_resamples, seed)[0] / n
    jack = (x.sum() - x) / (n - 1) if method == "bca" else None
    lo, hi = _interval_from(mean, theta_b, jack, method, confidence)
    return Interval(mean, lo, hi, n, method, n_resamples, seed, confidence)


def bootstrap_means(samples: np.ndarray, *, method: str = DEFAULT_METHOD, n_resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE) -> np.ndarray:
    """Vectorised intervals for many independent samples of equal size: samples (m, n) -> (m, 2)
    [lo, hi] (the same resample indices for every row, as scipy does along an axis)."""
    from scipy.special import ndtr, ndtri

    _check(method, n_resamples, confidence)
    x = np.asarray(samples, dtype=float)
    m, n = x.shape
    if n < 2:
        raise UserError(f"fewer than 2 items (n={n}): no interval")
    theta = x.mean(axis=1)
    theta_b = bootstrap_sums(x, n_resamples, seed) / n  # (m, B)
    alpha = (1 - confidence) / 2
    if method == "percentile":
        return np.quantile(theta_b, [alpha, 1 - alpha], axis=1).T
    p0 = ((theta_b < theta[:, None]).sum(1) + (theta_b <= theta[:, None]).sum(1)) / (2 * n_resamples)
    z0 = ndtri(p0)
    jack = (x.sum(1, keepdims=True) - x) / (n - 1)
    u = (n - 1) * (jack.mean(1, keepdims=True) - jack)
    with np.errstate(invalid="ignore", divide="ignore"):
        a_hat = (np.sum(u ** 3, 1) / n ** 3) / (6 * (np.sum(u ** 2, 1) / n ** 2) ** 1.5)
    za = float(ndtri(alpha))
    out = np.empty((m, 2))
    for j, z in enumerate((za, -za)):
        q = ndtr(z0 + (z0 + z) / (1 - a_hat * (z0 + z)))
        sorted_b = np.sort(theta_b, axis=1)
        # np.quantile's linear rule, row by row with its own quantile
        pos = np.nan_to_num(q, nan=0.5) * (n_resamples - 1)
        lo_i = np.floor(pos).astype(int)
        hi_i = np.minimum(lo_i + 1, n_resamples - 1)
        frac = pos - lo_i
        rows = np.arange(m)
        out[:, j] = sorted_b[rows, lo_i] + frac * (sorted_b[rows, hi_i] - sorted_b[rows, lo_i])
    return out


def bootstrap_ratio(numerators: Sequence[float], denominators: Sequence[float], *, n_resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE, method: str = DEFAULT_METHOD) -> Interval:
    """sum(num)/sum(den) over items (e.g. TIFA's accuracy of one question type, pooled over the
    questions of the resampled prompts), with its bootstrap interval over items with den > 0."""
    _check(method, n_resamples, confidence)
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    keep = den > 0
    num, den = num[keep], den[keep]
    n = len(num)
    if n == 0:
        return _no_interval(None, 0, method, n_resamples, seed, "no items")
    est = float(num.sum() / den.sum())
    if n < 2:
        return _no_interval(est, n, method, n_resamples, seed, f"fewer than 2 items (n={n})")
    ratios = num / den
    if np.all(ratios == ratios[0]):
        return Interval(est, est, est, n, method, n_resamples, seed, confidence,
                        reason="all items equal: zero-width interval")
    sums = bootstrap_sums(np.stack([num, den]), n_resamples, seed)
    theta_b = sums[0] / sums[1]
    jack = (num.sum() - num) / (den.sum() - den) if method == "bca" else None
    if jack is not None and not np.all(np.isfinite(jack)):
        jack = None
    lo, hi = _interval_from(est, theta_b, jack, method if jack is not None else "percentile", confidence)
    return Interval(est, lo, hi, n, method if jack is not None else "percentile", n_resamples, seed, confidence)


# -- paired comparison ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """mean(a) - mean(b) over common items: paired bootstrap interval and sign-flip permutation p."""

    diff: float | None
    lo: float | None
    hi: float | None
    p_value: float | None
    n: int
    method: str
    n_resamples: int
    n_permutations: int
    seed: int
    exact: bool = False
    reason: str | None = None

    @property
    def ci(self) -> list[float] | None:
        return None if self.lo is None else [self.lo, self.hi]

    def to_dict(self) -> dict[str, Any]:
        d = {"diff": self.diff, "ci95": self.ci, "p_value": self.p_value, "n": self.n, "method": self.method,
             "n_resamples": self.n_resamples, "n_permutations": self.n_permutations, "seed": self.seed,
             "permutation": "exact" if self.exact else "monte-carlo"}
        if self.reason:
            d["reason"] = self.reason
        return d

    def describe(self, digits: int = 3) -> str:
        if self.diff is None:
            return f"n/a ({self.reason})"
        ci = f" [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]" if self.lo is not None else ""
        p = f", p = {self.p_value:.3g}" if self.p_value is not None else ""
        return f"{self.diff:+.{digits}f}{ci}{p} (n = {self.n})"


def sign_flip_pvalues(diffs: np.ndarray, n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_SEED
                      ) -> tuple[np.ndarray, bool]:
    """Two-sided paired permutation p-values of mean(d) = 0 for rows of `diffs` (m, n): each item's
    sign flipped at random; exact enumeration when 2^n <= n_permutations. Returns (p, exact)."""
    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    m, n = d.shape
    observed = np.abs(d.sum(1))
    tol = 1e-12 * np.maximum(1.0, np.abs(d).sum(1))  # float ties count as ties
    exact = n <= 20 and 2 ** n <= n_permutations
    if exact:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        ge = (np.abs(signs @ d.T) >= observed - tol).sum(0)
        return ge / 2 ** n, True
    rng = np.random.default_rng(seed)
    ge = np.zeros(m)
    rows = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_permutations, rows):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(rows, n_permutations - start), n))
        ge += (np.abs(signs @ d.T) >= observed - tol).sum(0)
    # Monte Carlo p-value that is never 0 (Phipson & Smyth 2010): (1 + #{T* >= T}) / (1 + P)
    return (1 + ge) / (1 + n_permutations), False


def paired_compare(a: Sequence[float], b: Sequence[float], *, method: str = DEFAULT_METHOD,
                   n_resamples: int = DEFAULT_RESAMPLES, n_permutations: int = DEFAULT_PERMUTATIONS,
                   seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE) -> Comparison:
    """a[i] and b[i] are the two results' values on the same item i."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise UserError(f"paired comparison needs values on the same items ({len(x)} vs {len(y)})")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    n = len(d)
    if n == 0:
        return Comparison(None, None, None, None, 0, method, n_resamples, n_permutations, seed, reason="no common items")
    diff = float(d.mean())
    if n < 2:
        return Comparison(diff, None, None, None, n, method, n_resamples, n_permutations, seed,
                          reason=f"fewer than 2 common items (n={n})")
    ci = bootstrap_mean(d, method=method, n_resamples=n_resamples, seed=seed, confidence=confidence)
    p, exact = sign_flip_pvalues(d, n_permutations, seed)
    p_value = 1.0 if np.all(d == 0) else float(min(1.0, p[0]))
    return Comparison(diff, ci.lo, ci.hi, p_value, n, method, n_resamples, n_permutations, seed, exact)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


# -- significance-aware ranking -----------------------------------------------------------------------
@dataclass
class RankedEntry:
    key: str
    value: float
    rank: int
    p_vs_leader: float | None = None  # Holm-adjusted p of the comparison with its tier's leader
    leader: str | None = None
    tested: bool = True


def significance_ranks(entries: Sequence[tuple[str, float, dict[str, float] | None]], *, higher_is_better: bool = True,
                       alpha: float = 0.05, seed: int = DEFAULT_SEED, n_permutations: int = DEFAULT_PERMUTATIONS
                       ) -> list[RankedEntry]:
    """Tiers of runs: entries are (key, value, {item id: value} or None). The best run leads tier 1;
    every other unranked run is compared with it (paired sign-flip test on common items), the
    p-values Holm-corrected over those comparisons; runs not significantly different (adjusted p >=
    alpha) share its rank. The best of the remaining runs leads the next tier, ranked by how many runs
    stand above it (competition ranking), and so on. A run without per-item values, or sharing fewer
    than 2 items with the leader, cannot be tested: it claims no tie and keeps its point-estimate place
    below the tier (p_vs_leader None)."""
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(entries, key=lambda e: (-sign * e[1] if math.isfinite(e[1]) else math.inf, e[0]))
    remaining = [e for e in order if math.isfinite(e[1])]
    out: list[RankedEntry] = []
    while remaining:
        leader, rest = remaining[0], remaining[1:]
        rank = len(out) + 1
        out.append(RankedEntry(leader[0], leader[1], rank, None, None))
        tests, untested = [], []
        for e in rest:
            common = sorted(set(leader[2] or {}) & set(e[2] or {}))
            if len(common) < 2:
                untested.append(e)
                continue
            d = np.array([leader[2][k] - e[2][k] for k in common], dtype=float)
            p = 1.0 if np.all(d == 0) else float(sign_flip_pvalues(d, n_permutations, seed)[0][0])
            tests.append((e, p))
        adjusted = holm([p for _, p in tests]) if tests else []
        tie, later = [], []
        for (e, _), p_adj in zip(tests, adjusted):
            (tie if p_adj >= alpha else later).append((e, p_adj))
        for e, p_adj in tie:
            out.append(RankedEntry(e[0], e[1], rank, p_adj, leader[0]))
        # untested runs claim no tie: they stay in point-estimate order below the tier
        keys = {e[0] for e, _ in later} | {e[0] for e in untested}
        remaining = [e for e in rest if e[0] in keys]
    out.extend(RankedEntry(e[0], e[1], 0, None, None, tested=False) for e in order if not math.isfinite(e[1]))
    for r in out:
        if r.rank == 0:
            r.rank = None  # type: ignore[assignment]
    return out


# The curve fits and the FID statistics live in submodules; they import the core above.
from t2ibench.stats.curves import (  # noqa: E402
    CURVE_FORMS,
    DEFAULT_CURVE_FORM,
    CurveForm,
    PowerLawBand,
    Prediction,
    power_law_intervals,
    predict_curve,
)
from t2ibench.stats.fid import (  # noqa: E402
    fid_bootstrap,
    fid_from_moments,
    fid_influence,
    fid_permutation_test,
)

__all__ = [
    "CONFIDENCE",
    "CURVE_FORMS",
    "DEFAULT_CURVE_FORM",
    "DEFAULT_METHOD",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "METHODS",
    "Comparison",
    "CurveForm",
    "Interval",
    "PowerLawBand",
    "Prediction",
    "RankedEntry",
    "bootstrap_mean",
    "bootstrap_means",
    "bootstrap_ratio",
    "fid_bootstrap",
    "fid_from_moments",
    "fid_influence",
    "fid_permutation_test",
    "holm",
    "paired_compare",
    "power_law_intervals",
    "predict_curve",
    "resample_indices",
    "sign_flip_pvalues",
    "significance_ranks",
]
