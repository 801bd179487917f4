"""Early prediction of a run's score at a later step from its evaluations so far (`t2ibench
leaderboard predict`), and of the final ranking of several runs (`--rank`).

The functional form and the predictive interval are t2ibench.stats.curves.predict_curve's (form chosen by
the backtest in benchmarks/bench_stats.py; see docs/statistics.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from t2ibench.errors import UserError
from t2ibench.leaderboard.analysis import ProtocolGroup, row_se, runs_by_key
from t2ibench.stats import DEFAULT_CURVE_FORM, Prediction, predict_curve


@dataclass
class RunPrediction:
    run: str
    observed_steps: list[int]
    last_value: float | None
    prediction: Prediction


def run_curve(group: ProtocolGroup, run: str, up_to_step: int | None = None):
    rows = [r for r in runs_by_key(group.rows).get(run, []) if r.step is not None]
    if up_to_step is not None:
        rows = [r for r in rows if r.step <= up_to_step]
    return rows


def predict_run(group: ProtocolGroup, run: str, at_step: int, up_to_step: int | None = None,
                form: str = DEFAULT_CURVE_FORM) -> RunPrediction:
    if run not in group.runs():
        raise UserError(f"no {group.metric} results of run {run!r} under this protocol; runs: {', '.join(group.runs())}")
    rows = run_curve(group, run, up_to_step)
    pred = predict_curve([r.step for r in rows], [r.value for r in rows], at_step, [row_se(r) for r in rows], form=form)
    return RunPrediction(run, [int(r.step) for r in rows], float(rows[-1].value) if rows else None, pred)


def predict_ranking(group: ProtocolGroup, runs: list[str] | None, at_step: int, up_to_step: int | None = None,
                    form: str = DEFAULT_CURVE_FORM) -> list[RunPrediction]:
    """Predictions for each run, best predicted score first (runs that cannot be predicted last)."""
    preds = [predict_run(group, r, at_step, up_to_step, form) for r in (runs or group.runs())]
    sign = 1 if group.higher_is_better else -1
    return sorted(preds, key=lambda p: (p.prediction.estimate is None,
                                        -sign * (p.prediction.estimate or 0.0), p.run))


def default_target_step(group: ProtocolGroup) -> int:
    steps = [r.step for r in group.rows if r.step is not None]
    if not steps:
        raise UserError(f"no {group.metric} result records a training step; nothing to predict along")
    return int(max(steps))
