"""Score-vs-x curves with uncertainty: power-law fits with bootstrap intervals, and early prediction
of a run's score at a later step (functional form chosen by backtest, see docs/statistics.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from t2ibench.errors import UserError
from t2ibench.stats import CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED


# -- power law with intervals -------------------------------------------------------------------------
@dataclass
class PowerLawBand:
    a_ci: list[float] | None
    b_ci: list[float] | None
    grid: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    method: str = "residual bootstrap in log space"
    reason: str | None = None


def power_law_intervals(xs: Sequence[float], ys: Sequence[float], y_se: Sequence[float | None] | None = None, *,
                        n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                        confidence: float = CONFIDENCE, grid: Sequence[float] | None = None) -> PowerLawBand:
    """Bootstrap intervals for a and b of log S = log a + b log X: refits on log scores rebuilt from
    the fit plus resampled residuals (scaled by sqrt(n/(n-2))) and, where a point's standard error is
    known, its own measurement noise. Needs at least 3 points with 2 distinct x."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    n = len(x)
    if n < 3 or len(np.unique(x)) < 2:
        return PowerLawBand(None, None, n_resamples=n_resamples, seed=seed,
                            reason=f"{n} point(s): an interval on a 2-parameter fit needs at least 3")
    lx, ly = np.log(x), np.log(y)
    design = np.stack([np.ones(n), lx], 1)
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    fitted = design @ coef
    resid = (ly - fitted) * math.sqrt(n / (n - 2))
    rng = np.random.default_rng(seed)
    draws = fitted + resid[rng.integers(0, n, (n_resamples, n))]
    if y_se is not None:
        rel = np.array([(s or 0.0) / v if v > 0 else 0.0 for s, v in zip(y_se, y)])  # d log y = dy / y
        draws = draws + rng.standard_normal((n_resamples, n)) * rel
    pinv = np.linalg.pinv(design)  # (2, n): every resample's fit in one product
    coefs = draws @ pinv.T  # (B, 2): log a, b
    alpha = (1 - confidence) / 2
    la = np.quantile(coefs[:, 0], [alpha, 1 - alpha])
    bq = np.quantile(coefs[:, 1], [alpha, 1 - alpha])
    g = np.asarray(grid if grid is not None else np.geomspace(x.min(), x.max(), 48), dtype=float)
    curves = np.exp(coefs[:, :1] + coefs[:, 1:] * np.log(g)[None, :])
    lo, hi = np.quantile(curves, [alpha, 1 - alpha], axis=0)
    return PowerLawBand([float(np.exp(la[0])), float(np.exp(la[1]))], [float(bq[0]), float(bq[1])],
                        g.tolist(), lo.tolist(), hi.tolist(), n_resamples, seed)


# -- early prediction -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveForm:
    """A score-vs-step curve family, linear in its parameters after a fixed transform of step."""

    name: str
    description: str
    min_points: int

    def design(self, steps: np.ndarray, scale: float) -> np.ndarray:
        t = np.asarray(steps, dtype=float) / scale
        if self.name == "linear":
            return np.stack([np.ones_like(t), t], 1)
        if self.name == "log":
            return np.stack([np.ones_like(t), np.log1p(t)], 1)
        if self.name == "sqrt":
            return np.stack([np.ones_like(t), np.sqrt(t)], 1)
        if self.name == "last":
            return np.ones((len(t), 1))
        raise UserError(f"unknown curve form {self.name!r}")


CURVE_FORMS = {f.name: f for f in (
    CurveForm("linear", "S = c0 + c1 * step", 2),
    CurveForm("sqrt", "S = c0 + c1 * sqrt(step)  (a power law in step with exponent 1/2)", 2),
    CurveForm("log", "S = c0 + c1 * log(1 + step / s)  (s = the first evaluated step after 0)", 2),
    CurveForm("last", "S = the last evaluated score (no trend; the naive baseline)", 1),
)}
# Chosen by the backtest in benchmarks/bench_stats.py (lowest MAE on the demo's curves and on
# simulated saturating curves; see docs/statistics.md).
DEFAULT_CURVE_FORM = "sqrt"


@dataclass
class Prediction:
    step: int
    estimate: float | None
    lo: float | None
    hi: float | None
    form: str
    n_points: int
    n_resamples: int
    seed: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"step": self.step, "estimate": self.estimate, "ci95": None if self.lo is None else [self.lo, self.hi],
             "form": self.form, "form_description": CURVE_FORMS[self.form].description, "n_points": self.n_points,
             "n_resamples": self.n_resamples, "seed": self.seed}
        if self.reason:
            d["reason"] = self.reason
        return d


def predict_curve(steps: Sequence[float], values: Sequence[float], at_step: float,
                  value_se: Sequence[float | None] | None = None, *, form: str = DEFAULT_CURVE_FORM,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE
                  ) -> Prediction:
    """Fit `form` to (step, score) by least squares and predict the score at `at_step`; the
    predictive interval comes from a parametric bootstrap: each evaluation's value redrawn from its
    own measurement error (its interval's standard error) plus the fit's residual error, refitted."""
    if form not in CURVE_FORMS:
        raise UserError(f"unknown curve form {form!r}; choose one of {', '.join(CURVE_FORMS)}")
    cf = CURVE_FORMS[form]
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    se = (np.array([x if x is not None and np.isfinite(x) else 0.0 for x in value_se], dtype=float)[ok]
          if value_se is not None else np.zeros(len(s)))
    n = len(s)
    if n < cf.min_points:
        return Prediction(int(at_step), None, None, None, form, n, n_resamples, seed,
                          reason=f"{n} evaluation(s); the {form} form needs at least {cf.min_points}")
    positive = s[s > 0]
    scale = float(positive.min()) if len(positive) else 1.0
    design = cf.design(s, scale)
    target = cf.design(np.array([at_step]), scale)[0]
    pinv = np.linalg.pinv(design)
    coef = pinv @ v
    estimate = float(target @ coef)
    k = design.shape[1]
    resid = v - design @ coef
    resid_sd = float(np.sqrt(np.sum(resid ** 2) / (n - k))) if n > k else 0.0
    rng = np.random.default_rng(seed)
    noise_sd = np.sqrt(se ** 2 + resid_sd ** 2)
    draws = v[None, :] + rng.standard_normal((n_resamples, n)) * noise_sd[None, :]
    form_sd = _extrapolation_sd(cf, s, v, scale, at_step)
    preds = (draws @ pinv.T @ target + rng.standard_normal(n_resamples) * resid_sd  # + the new point's own noise
             + rng.standard_normal(n_resamples) * form_sd)  # + how wrong the form was when it extrapolated
    alpha = (1 - confidence) / 2
    if np.all(noise_sd == 0):
        return Prediction(int(at_step), estimate, None, None, form, n, n_resamples, seed,
                          reason="no measurement error known and no residual degrees of freedom")
    lo, hi = np.quantile(preds, [alpha, 1 - alpha])
    return Prediction(int(at_step), estimate, float(lo), float(hi), form, n, n_resamples, seed)


def _extrapolation_sd(cf: CurveForm, steps: np.ndarray, values: np.ndarray, scale: float, at_step: float) -> float:
    """The form's own extrapolation error on this curve: fit all but the last evaluation, predict the
    last, and scale that error by how much further (in the form's transformed step) the target lies.
    Measurement noise alone ignores that the curve may not follow the form; this term is what brings
    the predictive interval's coverage near its nominal level in the backtest (docs/statistics.md)."""
    n = len(steps)
    if n < cf.min_points + 1 or cf.name == "last":
        return 0.0
    order = np.argsort(steps)
    s, v = steps[order], values[order]
    coef = np.linalg.pinv(cf.design(s[:-1], scale)) @ v[:-1]
    err = float(v[-1] - cf.design(s[-1:], scale)[0] @ coef)
    g = cf.design(np.array([s[-2], s[-1], at_step]), scale)[:, -1]  # the step transform (last column)
    reach = (g[2] - g[1]) / (g[1] - g[0]) if g[1] > g[0] else 1.0
    # one error e ~ N(0, sd^2) has E|e| = sd sqrt(2/pi): sd is estimated as |e| sqrt(pi/2)
    return abs(err) * math.sqrt(math.pi / 2) * max(1.0, float(reach))
