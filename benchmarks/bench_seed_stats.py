"""Coverage and speed of t2ibench.stats.seeds (effects over several training seeds and shared prompts).

    python3 benchmarks/bench_seed_stats.py               # 2,000 replications per regime (about a minute, 2 cores)
    python3 benchmarks/bench_seed_stats.py --reps 20     # smoke run (what the test runs)

1. contrast_effect: simulated d[s, p] = mu + a_s + b_p + e_sp in three regimes (seed-dominated,
   prompt-dominated, interaction-only), S in {1, 3, 5}, P in {32, 64}: coverage of mu (and, with one seed,
   of mu + a_1, the effect of that seed), mean width / the width from the true standard error.
2. bootstrap_effect: two arms, difference and ratio of arm means, in regimes from prompt-dominated to
   seed-dominated: coverage of the true statistic.
3. Speed of contrast_effect at S=3, P=64, 2,000 resamples against a Python loop drawing one resample at a
   time (same answer), in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from t2ibench.stats.seeds import bootstrap_effect, contrast_effect

MU = 0.3
CONTRAST_REGIMES = {"seed-dominated": (1.0, 0.2, 0.3), "prompt-dominated": (0.05, 1.0, 0.5),
                    "interaction-only": (0.0, 0.0, 1.0)}
ARMS = np.array([0.6, 0.5])
BOOT_REGIMES = {"prompt only (sa=0)": (0.0, 0.1, 0.05), "balanced (sa=0.01)": (0.01, 0.1, 0.05),
                "seed-heavy (sa=0.03)": (0.03, 0.1, 0.05), "seed-dominated (sa=0.05)": (0.05, 0.02, 0.03)}
STATISTICS = {"difference": lambda m: m[0] - m[1], "ratio": lambda m: m[0] / m[1]}


def contrast_row(sa, sb, se, n_seeds, n_prompts, reps, seed):
    rng = np.random.default_rng(seed)
    cover = cover1 = 0
    widths = []
    for r in range(reps):
        a = sa * rng.standard_normal((n_seeds, 1))
        d = MU + a + sb * rng.standard_normal((1, n_prompts)) + se * rng.standard_normal((n_seeds, n_prompts))
        e = contrast_effect(d, n_resamples=200, seed=r)
        cover += e.lo <= MU <= e.hi
        cover1 += e.lo <= MU + a[0, 0] <= e.hi
        widths.append(e.hi - e.lo)
    true_se = np.sqrt(sa ** 2 / n_seeds + sb ** 2 / n_prompts + se ** 2 / (n_seeds * n_prompts))
    if n_seeds == 1:  # the target is then mu + a_1: its error has no seed term
        true_se = np.sqrt(sb ** 2 / n_prompts + se ** 2 / n_prompts)
    return cover / reps, cover1 / reps, np.mean(widths) / (2 * 1.959964 * true_se)


def boot_row(statistic, sa, sb, se, n_seeds, n_prompts, reps, seed):
    rng = np.random.default_rng(seed)
    cover = 0
    for r in range(reps):
        prompts = sb * (rng.standard_normal((1, 1, n_prompts)) + 0.5 * rng.standard_normal((1, 2, n_prompts)))
        v = (ARMS[None, :, None] + sa * rng.standard_normal((n_seeds, 2, 1)) + prompts
             + se * rng.standard_normal((n_seeds, 2, n_prompts)))
        e = bootstrap_effect(v, statistic, n_resamples=200, seed=r)
        cover += e.lo <= statistic(ARMS) <= e.hi
    return cover / reps


def loop_prompt_variance(d, n_resamples, seed):
    """Baseline: the prompt term with one resample at a time."""
    columns = d.mean(axis=0)
    rng = np.random.default_rng(seed)
    means = [columns[rng.integers(0, len(columns), len(columns))].mean() for _ in range(n_resamples)]
    return np.var(means, ddof=1) * len(columns) / (len(columns) - 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000, help="replications per regime")
    args = ap.parse_args(argv)
    print(f"contrast_effect, 95% intervals, {args.reps} replications each (n_resamples 200)")
    print("| regime | S | P | coverage of mu | coverage of mu + a_1 | width / true-SE width (S=1: of mu + a_1) |\n|---|---:|---:|---:|---:|---:|")
    k = 0
    for name, (sa, sb, se) in CONTRAST_REGIMES.items():
        for n_seeds in (1, 3, 5):
            for n_prompts in (32, 64):
                cover, cover1, ratio = contrast_row(sa, sb, se, n_seeds, n_prompts, args.reps, k)
                k += 1
                seed1 = f"{cover1:.3f}" if n_seeds == 1 else "-"
                print(f"| {name} | {n_seeds} | {n_prompts} | {cover:.3f} | {seed1} | {ratio:.2f} |")
    print(f"\nbootstrap_effect, 95% percentile intervals, {args.reps} replications each (P=64, n_resamples 200)")
    print("| regime (sb=0.1, se=0.05; seed-dominated: sa=0.05, sb=0.02, se=0.03) | statistic | S=1 | S=3 | S=5 |\n|---|---|---:|---:|---:|")
    for name, (sa, sb, se) in BOOT_REGIMES.items():
        for stat_name, statistic in STATISTICS.items():
            cells = []
            for n_seeds in (1, 3, 5):
                k += 1
                cells.append("-" if n_seeds == 1 and sa > 0 else
                             f"{boot_row(statistic, sa, sb, se, n_seeds, 64, args.reps, k):.3f}")
            print(f"| {name} | {stat_name} | " + " | ".join(cells) + " |")
    d = np.random.default_rng(0).standard_normal((3, 64))
    calls = max(5, min(100, args.reps // 20))
    t0 = time.process_time()
    for r in range(calls):
        contrast_effect(d, n_resamples=2000, seed=r)
    fast = (time.process_time() - t0) / calls
    t0 = time.process_time()
    for r in range(calls):
        loop_prompt_variance(d, 2000, r)
    loop = (time.process_time() - t0) / calls
    print(f"\ncontrast_effect S=3 P=64 B=2000: {fast * 1e3:.2f} ms CPU per call; Python-loop bootstrap of the "
          f"prompt term alone: {loop * 1e3:.2f} ms; ratio {loop / fast:.1f}x")


if __name__ == "__main__":
    main()
