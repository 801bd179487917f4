"""Speed of t2ibench.stats against naive baselines in the same run, and the backtest that chooses the
early-prediction curve form.

    python3 benchmarks/bench_stats.py            # full sizes (about a minute on 2 cores)
    python3 benchmarks/bench_stats.py --quick    # small sizes (what the test runs)

1. Intervals over 10,000 prompts with 2,000 resamples: t2ibench.stats.bootstrap_mean (BCa, vectorised)
   vs a Python loop drawing one resample at a time, and scipy.stats.bootstrap (same interval).
2. FID bootstrap on 10,000 x 2,048 features: t2ibench.stats.fid_bootstrap (first-order expansion, 1,000
   resamples) vs the naive exact bootstrap (covariance + scipy.linalg.sqrtm per resample), timed on
   a few resamples and reported per resample.
3. Backtest of early prediction: for each curve form, predict step 1200 from the evaluations at steps
   <= 600, on simulated curves and on the demo's recorded curves (README, two seeds x two variants):
   mean absolute error, coverage of the 95% predictive interval, Kendall tau of predicted vs actual
   final ranking.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from t2ibench import stats

# The demo's curves as recorded in README.md (t2ibench demo, default settings, seeds 0 and 1):
# TIFA at steps 0 / 300 / 600 / 900 / 1200.
DEMO_STEPS = [0, 300, 600, 900, 1200]
DEMO_CURVES = {
    "seed0/sdxl-c8-td1": [0.338, 0.361, 0.409, 0.459, 0.544],
    "seed0/sdxl-c16-td1": [0.348, 0.412, 0.583, 0.615, 0.641],
    "seed1/sdxl-c8-td1": [0.380, 0.367, 0.456, 0.468, 0.603],
    "seed1/sdxl-c16-td1": [0.299, 0.402, 0.594, 0.647, 0.648],
}
# Standard error of one demo evaluation: TIFA on 64 prompts moves by about +-0.03 between draws (the
# issue's measurement; a 95% half-width), i.e. SE ~ 0.015. Used where the README has no interval.
DEMO_SE = 0.015


def _timed(fn, repeat: int = 1):
    """(best wall seconds, result); the CPU seconds of the best run go to _timed.cpu (a shared machine's
    wall time depends on its load, its CPU time much less)."""
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, _timed.cpu = wall, time.process_time() - c0
    return best, out


def bench_intervals(n: int, resamples: int) -> dict:
    import scipy.stats

    x = np.random.default_rng(0).beta(3, 1.5, n)

    def naive():
        rng = np.random.default_rng(0)
        means = [x[rng.integers(0, n, n)].mean() for _ in range(resamples)]
        return np.quantile(means, [0.025, 0.975])

    t_ours, ours = _timed(lambda: stats.bootstrap_mean(x, n_resamples=resamples, method="bca"), repeat=3)
    cpu_ours = _timed.cpu
    t_naive, _ = _timed(naive)
    t_scipy, ref = _timed(lambda: scipy.stats.bootstrap((x,), np.mean, n_resamples=resamples, method="bca",
                                                       rng=np.random.default_rng(0)))
    same = bool(np.allclose([ours.lo, ours.hi], [ref.confidence_interval.low, ref.confidence_interval.high],
                            rtol=1e-12))
    return {"n": n, "resamples": resamples, "ours_s": t_ours, "ours_cpu_s": cpu_ours, "naive_loop_s": t_naive,
            "scipy_s": t_scipy,
            "speedup_vs_naive": t_naive / t_ours, "speedup_vs_scipy": t_scipy / t_ours, "equals_scipy": same}


def bench_fid(n: int, d: int, resamples: int, naive_resamples: int) -> dict:
    import scipy.linalg

    rng = np.random.default_rng(0)
    feats = rng.standard_normal((n, d)) * rng.uniform(0.5, 1.5, d) + 0.1
    basis = rng.standard_normal((d, d)) / np.sqrt(d)
    mu_r, sigma_r = np.zeros(d), basis @ basis.T + 0.5 * np.eye(d)

    def naive():
        r = np.random.default_rng(0)
        vals = []
        for _ in range(naive_resamples):
            s = feats[r.integers(0, n, n)]
            mu = s.mean(0)
            sigma = np.cov(s, rowvar=False)
            covmean = scipy.linalg.sqrtm(sigma @ sigma_r).real
            vals.append(float((mu - mu_r) @ (mu - mu_r) + np.trace(sigma) + np.trace(sigma_r) - 2 * np.trace(covmean)))
        return vals

    t_ours, iv = _timed(lambda: stats.fid_bootstrap(feats, mu_r, sigma_r, n_resamples=resamples, exact=False))
    cpu_ours = _timed.cpu
    if not naive_resamples:
        return {"n": n, "d": d, "resamples": resamples, "ours_s": t_ours, "ours_cpu_s": cpu_ours, "fid": iv.estimate,
                "ci95": iv.ci}
    t_naive, _ = _timed(naive)
    per_resample = t_naive / naive_resamples
    return {"n": n, "d": d, "resamples": resamples, "ours_s": t_ours, "ours_cpu_s": cpu_ours,
            "naive_s_per_resample": per_resample, "naive_cpu_s_per_resample": _timed.cpu / naive_resamples,
            "naive_s_for_same_resamples": per_resample * resamples,
            "speedup_vs_naive": per_resample * resamples / t_ours, "fid": iv.estimate, "ci95": iv.ci}


# -- backtest ------------------------------------------------------------------------------------------
def _kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def simulated_curves(n_groups: int, runs_per_group: int, seed: int = 0):
    """Groups of runs under one protocol. Two families, neither among the fitted forms: a saturating
    power law c - a (1 + t/t0)^-b, and a logistic in log-step (slow start, fast rise, plateau), both
    observed with SE 0.015 noise at steps 0, 300, 600, 900, 1200."""
    rng = np.random.default_rng(seed)
    t = np.array(DEMO_STEPS, dtype=float)
    groups = []
    for _ in range(n_groups):
        curves = []
        for _ in range(runs_per_group):
            if rng.random() < 0.5:
                c, a = rng.uniform(0.5, 0.9), rng.uniform(0.15, 0.5)
                b, t0 = rng.uniform(0.3, 1.5), rng.uniform(100, 1000)
                truth = c - a * (1 + t / t0) ** (-b)
            else:
                lo, hi = rng.uniform(0.25, 0.4), rng.uniform(0.5, 0.9)
                mid, w = rng.uniform(300, 1500), rng.uniform(0.3, 0.8)
                truth = lo + (hi - lo) / (1 + np.exp(-(np.log1p(t) - np.log(mid)) / w))
            curves.append((truth, truth + DEMO_SE * rng.standard_normal(len(t))))
        groups.append(curves)
    return groups


def backtest(groups, forms, known_se: float) -> dict:
    """Predict step 1200 from steps <= 600. Error against the observed value (noise included, as in
    the demo, where only the observed value exists) and coverage of it by the predictive interval."""
    t = np.array(DEMO_STEPS)
    early = t <= 600
    out = {}
    for form in forms:
        errs, covered, taus = [], [], []
        for curves in groups:
            preds, finals = [], []
            for _, observed in curves:
                p = stats.predict_curve(t[early], observed[early], 1200, [known_se] * int(early.sum()), form=form,
                                        n_resamples=1000)
                preds.append(p.estimate)
                finals.append(observed[-1])
                errs.append(abs(p.estimate - observed[-1]))
                covered.append(p.lo <= observed[-1] <= p.hi if p.lo is not None else False)
            if len(curves) >= 2:
                taus.append(_kendall(preds, finals))
        out[form] = {"mae": float(np.mean(errs)), "coverage": float(np.mean(covered)),
                     "kendall_tau": float(np.nanmean(taus)) if taus else None, "n_curves": len(errs)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds), for the test")
    ap.add_argument("--json", type=Path, help="also write the numbers to this file")
    ap.add_argument("--only", choices=("intervals", "fid", "backtest"), action="append",
                    help="run only these parts (repeatable; default: all)")
    ap.add_argument("--naive-fid-resamples", type=int, default=1,
                    help="resamples of the naive exact FID bootstrap to time (0: skip it; it takes minutes)")
    args = ap.parse_args(argv)
    parts = set(args.only or ("intervals", "fid", "backtest"))
    res: dict = {}
    if "intervals" in parts:
        iv = res["intervals"] = bench_intervals(500, 200) if args.quick else bench_intervals(10_000, 2_000)
        print(f"intervals, {iv['n']} prompts x {iv['resamples']} resamples (BCa): ours {iv['ours_s']:.3f} s "
              f"({iv['ours_cpu_s']:.3f} s CPU), "
              f"naive loop {iv['naive_loop_s']:.3f} s ({iv['speedup_vs_naive']:.1f}x), scipy.stats.bootstrap "
              f"{iv['scipy_s']:.3f} s ({iv['speedup_vs_scipy']:.1f}x); equal to scipy: {iv['equals_scipy']}",
              flush=True)
    if "fid" in parts:
        fid = res["fid"] = (bench_fid(300, 32, 200, 2) if args.quick else
                            bench_fid(10_000, 2_048, 1_000, args.naive_fid_resamples))
        naive = (f"; naive exact {fid['naive_s_per_resample']:.1f} s per resample = "
                 f"{fid['naive_s_for_same_resamples']:.0f} s for the same resamples ({fid['speedup_vs_naive']:.0f}x)"
                 if "naive_s_per_resample" in fid else "")
        print(f"FID bootstrap, {fid['n']} x {fid['d']} features, {fid['resamples']} resamples: ours "
              f"{fid['ours_s']:.1f} s wall, {fid['ours_cpu_s']:.1f} s CPU{naive}", flush=True)
    if "backtest" in parts:
        groups = simulated_curves(10, 4) if args.quick else simulated_curves(250, 6)
        forms = list(stats.CURVE_FORMS)
        res["backtest_simulated"] = backtest(groups, forms, DEMO_SE)
        demo_groups = [[(np.array(v), np.array(v)) for k, v in DEMO_CURVES.items() if k.startswith(s)]
                       for s in ("seed0", "seed1")]
        res["backtest_demo"] = backtest(demo_groups, forms, DEMO_SE)
        res["backtest_demo_all4"] = backtest([[(np.array(v), np.array(v)) for v in DEMO_CURVES.values()]], forms,
                                             DEMO_SE)
        res["chosen_form"] = stats.DEFAULT_CURVE_FORM
    for name in [k for k in ("backtest_simulated", "backtest_demo", "backtest_demo_all4") if k in res]:
        print(f"{name}: predict step 1200 from steps <= 600")
        print("  form     MAE     coverage  Kendall tau  curves")
        for form, r in res[name].items():
            tau = f"{r['kendall_tau']:.3f}" if r["kendall_tau"] is not None else "n/a"
            print(f"  {form:7s}  {r['mae']:.4f}  {r['coverage']:.3f}     {tau:>6s}       {r['n_curves']}")
    if "chosen_form" in res:
        print(f"default form (t2ibench.stats.DEFAULT_CURVE_FORM): {res['chosen_form']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
