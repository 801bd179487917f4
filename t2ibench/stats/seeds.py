"""Effects measured over several training seeds and one shared set of evaluation prompts: intervals and
two-sided p-values that count seed-to-seed variation as well as the choice of prompts (docs/statistics.md,
"Several seeds: seed-to-seed variation plus prompt resampling").

`contrast_effect(d)`, d[s, p] a linear contrast's value for seed s on prompt p (score of run A minus run B,
both trained with seed s): model d[s, p] = mu + a_s + b_p + e_sp, seeds and prompts random, so
Var(mean d) = sa²/S + sb²/P + se²/(SP). Two terms estimate it:
* seed term: the sample variance of the S row means (mean over prompts) / S, df S - 1 (S >= 2 only);
* prompt term: the bootstrap variance of the mean of the P column means (mean over seeds) under prompt
  resampling (seeded, `resample_indices`), times P / (P - 1), the known bias of the bootstrap variance of a
  mean (so that with one seed the interval is the paired t-interval over prompts); df P - 1.
Row means carry se²/P and column means se²/S, so the sum counts se²/(SP) twice: slightly conservative.
Interval estimate ± t(df, (1 + conf) / 2) * sqrt(sum), df by Welch-Satterthwaite; the p-value comes from the
same t, so p < 1 - confidence exactly when the interval excludes 0. With one seed only the prompt term is
measured: the interval covers the effect *of that seed*, not of training in general.

`bootstrap_effect(values, statistic)`, values[s, k, p] arm k's score for seed s on prompt p: a crossed
two-stage bootstrap (seeds and prompts resampled independently, the same indices for every arm) of
`statistic(arm means)`, percentile interval by order statistics and the matching p-value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from t2ibench.errors import UserError
from t2ibench.stats import CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, resample_indices


@dataclass(frozen=True)
class Effect:
    """An effect with its interval and two-sided p-value against `null`; lo/hi None (and `reason` says
    why) when there is no interval."""

    estimate: float
    lo: float | None
    hi: float | None
    p_value: float | None  # two-sided, against `null`
    n_seeds: int
    n_prompts: int
    method: str  # "t" or "bootstrap"
    confidence: float = CONFIDENCE
    null: float = 0.0
    se: float | None = None
    df: float | None = None
    n_resamples: int = 0
    seed: int = 0
    reason: str | None = None  # why there is no interval (lo/hi None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95" if self.confidence == CONFIDENCE else "ci"] = None if self.lo is None else [self.lo, self.hi]
        return d

    def verdict(self, direction: int = +1) -> str:
        """'supported' when the interval lies entirely on the claimed side of `null` (direction +1: above,
        -1: below), 'contradicted' when it lies entirely on the other side, else 'not significant' (also
        when there is no interval)."""
        if direction not in (1, -1):
            raise UserError(f"direction must be +1 (effect above {self.null}) or -1 (below), got {direction}")
        if self.lo is None or self.hi is None:
            return "not significant"
        if self.lo > self.null:
            return "supported" if direction == 1 else "contradicted"
        if self.hi < self.null:
            return "supported" if direction == -1 else "contradicted"
        return "not significant"


def _check(confidence: float, n_resamples: int) -> None:
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_resamples) < 100:
        raise UserError(f"bootstrap needs at least 100 resamples, got {n_resamples}")


def _array(x: Any, ndim: int, what: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise UserError(f"{what} must be numbers: {e}") from None
    if a.ndim != ndim or a.size == 0:
        raise UserError(f"{what} must be a non-empty {ndim}-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{what} has {int(np.sum(~np.isfinite(a)))} missing or non-finite values; "
                        "every seed needs a score on every prompt")
    return a


def contrast_effect(d: Any, *, confidence: float = CONFIDENCE, n_resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> Effect:
    """d: array (S seeds, P prompts): a linear contrast's value per seed and prompt (e.g. score of run A
    minus run B on prompt p, both trained with seed s). Estimate: mean of d; t-interval from the seed and
    prompt variance terms (module doc)."""
    from scipy.special import stdtr, stdtrit  # imported when used, as in the rest of t2ibench.stats

    _check(confidence, n_resamples)
    d = _array(d, 2, "the contrast (seeds x prompts)")
    n_seeds, n_prompts = d.shape
    estimate = float(d.mean())
    base = dict(estimate=estimate, lo=None, hi=None, p_value=None, n_seeds=n_seeds, n_prompts=n_prompts,
                method="t", confidence=confidence, n_resamples=int(n_resamples), seed=seed)
    if n_prompts < 2:
        return Effect(**base, reason=f"fewer than 2 prompts (P={n_prompts}): prompt variation is not measured")
    seed_var = float(d.mean(axis=1).var(ddof=1)) / n_seeds if n_seeds >= 2 else 0.0
    columns = d.mean(axis=0)
    boot = np.concatenate([columns[idx].mean(axis=1) for idx in resample_indices(n_prompts, n_resamples, seed)])
    prompt_var = float(boot.var(ddof=1)) * n_prompts / (n_prompts - 1)
    var = seed_var + prompt_var
    if var <= (1e-12 * max(1.0, float(np.abs(d).max()))) ** 2:
        if np.all(d == d.flat[0]):
            why = f"every value equals {estimate:.6g}"
        else:
            why = "seed means and prompt means are all equal (the method does not see pure interaction)"
        return Effect(**{**base, "p_value": 1.0 if estimate == 0 else None}, se=0.0,
                      reason=f"zero variance: {why}; no interval")
    parts = [(seed_var, n_seeds - 1)] if n_seeds >= 2 else []
    parts.append((prompt_var, n_prompts - 1))
    df = var ** 2 / sum(v ** 2 / k for v, k in parts)  # Welch-Satterthwaite
    se = math.sqrt(var)
    half = float(stdtrit(df, 0.5 + confidence / 2)) * se
    p_value = float(min(1.0, 2 * stdtr(df, -abs(estimate) / se)))
    return Effect(**{**base, "lo": estimate - half, "hi": estimate + half, "p_value": p_value}, se=se, df=df)


def bootstrap_effect(values: Any, statistic: Callable[[np.ndarray], float], *, null: float = 0.0,
                     confidence: float = CONFIDENCE, n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED) -> Effect:
    """values: array (S seeds, K arms, P prompts) of per-prompt scores; statistic: callable mapping a
    K-vector of arm means to a float (e.g. Spearman rho of arm means against arm compute). Crossed
    two-stage bootstrap: each resample draws S seed and P prompt indices with replacement, independently,
    the same for every arm; percentile interval; p = min(1, 2 min(frac(stat_b <= null), frac(stat_b >= null)))."""
    _check(confidence, n_resamples)
    v = _array(values, 3, "the scores (seeds x arms x prompts)")
    n_seeds, n_arms, n_prompts = v.shape
    estimate = _scalar(statistic(v.mean(axis=(0, 2))))
    base = dict(estimate=estimate, lo=None, hi=None, p_value=None, n_seeds=n_seeds, n_prompts=n_prompts,
                method="bootstrap", confidence=confidence, null=float(null), n_resamples=int(n_resamples), seed=seed)
    if n_prompts < 2:
        return Effect(**base, reason=f"fewer than 2 prompts (P={n_prompts}): prompt variation is not measured")
    if not math.isfinite(estimate):
        return Effect(**base, reason="the statistic is not finite on the data")
    # Counts of each seed and prompt in each resample: arm means are then two weighted sums.
    rng = np.random.default_rng(seed)
    seed_counts = _counts(rng.integers(0, n_seeds, (n_resamples, n_seeds)), n_seeds)
    prompt_counts = _counts(rng.integers(0, n_prompts, (n_resamples, n_prompts)), n_prompts)
    per_prompt = (seed_counts @ v.reshape(n_seeds, -1)).reshape(n_resamples, n_arms, n_prompts)
    arm_means = np.einsum("bkp,bp->bk", per_prompt, prompt_counts) / (n_seeds * n_prompts)
    stat_b = np.array([_scalar(statistic(m)) for m in arm_means])
    bad = int(np.sum(~np.isfinite(stat_b)))
    if bad:
        return Effect(**base, reason=f"the statistic is not finite on {bad} of {n_resamples} resamples")
    # Order statistics so that the interval excludes `null` exactly when p < 1 - confidence: the k-th
    # smallest value exceeds null iff fewer than k values are <= null, k the least count with 2k/B >= 1-conf.
    alpha2 = 1 - confidence
    k = max(1, math.ceil(alpha2 * n_resamples / 2))
    while 2 * k / n_resamples < alpha2:
        k += 1
    while k > 1 and 2 * (k - 1) / n_resamples >= alpha2:
        k -= 1
    ordered = np.sort(stat_b)
    frac_le, frac_ge = np.mean(stat_b <= null), np.mean(stat_b >= null)
    return Effect(**{**base, "lo": float(ordered[k - 1]), "hi": float(ordered[-k]),
                     "p_value": float(min(1.0, 2 * min(frac_le, frac_ge)))}, se=float(stat_b.std(ddof=1)))


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    rows = idx.shape[0]
    return np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n).astype(float)


def _scalar(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        raise UserError(f"the statistic must return one number, got {type(x).__name__}") from None
