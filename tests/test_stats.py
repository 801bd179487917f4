"""t2ibench.stats: intervals equal scipy's, coverage and test error rates measured by simulation,
bad input answered with a reason. Everything vectorised so the file runs in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from t2ibench import stats


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("n", [5, 64, 997])
def test_interval_equals_scipy_bootstrap(method, n):
    x = np.random.default_rng(n).beta(2, 3, n)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=2000, method=method, rng=np.random.default_rng(7))
    mine = stats.bootstrap_mean(x, method=method, n_resamples=2000, seed=7)
    assert mine.estimate == pytest.approx(x.mean())
    np.testing.assert_allclose([mine.lo, mine.hi], [ref.confidence_interval.low, ref.confidence_interval.high],
                               rtol=1e-12)
    many = stats.bootstrap_means(np.stack([x, x[::-1]]), method=method, n_resamples=2000, seed=7)
    ref2 = scipy.stats.bootstrap((x[::-1],), np.mean, n_resamples=2000, method=method, rng=np.random.default_rng(7))
    np.testing.assert_allclose(many[0], [mine.lo, mine.hi], rtol=1e-12)
    np.testing.assert_allclose(many[1], [ref2.confidence_interval.low, ref2.confidence_interval.high], rtol=1e-12)


def test_paired_interval_equals_scipy_paired_bootstrap():
    rng = np.random.default_rng(3)
    a = rng.random(80)
    b = a - 0.05 + 0.1 * rng.standard_normal(80)
    ref = scipy.stats.bootstrap((a, b), lambda u, v, axis: u.mean(axis) - v.mean(axis), paired=True,
                                n_resamples=2000, method="bca", rng=np.random.default_rng(11))
    mine = stats.paired_compare(a, b, n_resamples=2000, seed=11)
    np.testing.assert_allclose(mine.ci, [ref.confidence_interval.low, ref.confidence_interval.high], rtol=1e-12)


def test_chunked_resampling_draws_what_one_call_draws(monkeypatch):
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 1001 * 3)
    chunked = np.concatenate(list(stats.resample_indices(1001, 50, 1)))
    assert (chunked == np.random.default_rng(1).integers(0, 1001, (50, 1001))).all()


def test_same_seed_same_interval_and_recorded():
    x = np.random.default_rng(0).random(50)
    a, b = stats.bootstrap_mean(x, seed=4), stats.bootstrap_mean(x, seed=4)
    assert a == b and a.to_dict()["method"] == "bca" and a.to_dict()["n_resamples"] == 2000
    assert a.to_dict()["seed"] == 4 and a.to_dict()["ci95"] == [a.lo, a.hi]
    assert stats.bootstrap_mean(x, seed=5).lo != a.lo


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_coverage_of_the_mean_is_measured(method):
    # A population of per-prompt scores shaped like TIFA's (fractions of 1-8 questions right,
    # skewed), a known mean, 1000 subsets of 100 prompts: the 95% interval covers it 93-97% of the time.
    rng = np.random.default_rng(2024)
    n_q = rng.integers(1, 9, 4081)
    population = rng.binomial(n_q, rng.beta(3, 1.5, 4081)) / n_q
    true_mean = population.mean()
    draws = np.stack([rng.choice(population, 100, replace=False) for _ in range(1000)])
    ci = stats.bootstrap_means(draws, method=method, n_resamples=1000, seed=1)
    coverage = np.mean((ci[:, 0] <= true_mean) & (true_mean <= ci[:, 1]))
    assert 0.93 <= coverage <= 0.97, coverage


def _paired_population(rng, n_pairs, n, shift_se=0.0):
    prompt_effect = rng.beta(2, 2, (n_pairs, n))  # prompts differ in difficulty; both runs share it
    a = prompt_effect + 0.15 * rng.standard_normal((n_pairs, n))
    b = prompt_effect + 0.15 * rng.standard_normal((n_pairs, n))
    se = 0.15 * np.sqrt(2) / np.sqrt(n)  # standard error of mean(a - b)
    return a + shift_se * se, b


def test_paired_test_false_positive_rate_is_measured():
    a, b = _paired_population(np.random.default_rng(10), 1000, 64)
    p, exact = stats.sign_flip_pvalues(a - b, n_permutations=2000, seed=3)
    assert not exact
    rate = np.mean(p < 0.05)
    assert 0.03 <= rate <= 0.07, rate


def test_paired_test_detects_a_three_standard_error_shift():
    a, b = _paired_population(np.random.default_rng(11), 1000, 64, shift_se=3.0)
    p, _ = stats.sign_flip_pvalues(a - b, n_permutations=2000, seed=3)
    assert np.mean(p < 0.05) >= 0.80


def test_paired_compare_of_a_run_with_itself():
    x = np.random.default_rng(1).random(30)
    c = stats.paired_compare(x, x)
    assert c.diff == 0 and c.p_value == 1.0 and c.ci == [0.0, 0.0]


def test_small_inputs_say_why():
    one = stats.bootstrap_mean([0.5])
    assert one.estimate == 0.5 and one.ci is None and "fewer than 2" in one.reason
    assert stats.bootstrap_mean([]).reason == "no items"
    c = stats.paired_compare([0.1], [0.2])
    assert c.ci is None and c.p_value is None and "fewer than 2" in c.reason
    assert stats.power_law_intervals([1, 2], [1, 2]).reason.startswith("2 point(s)")
    assert "needs at least 2" in stats.predict_curve([100], [0.3], 1000).reason


def test_exact_sign_flip_for_small_n_matches_enumeration():
    d = np.array([0.3, -0.1, 0.2, 0.25, 0.05])
    p, exact = stats.sign_flip_pvalues(d, n_permutations=10000)
    ref = scipy.stats.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                       n_resamples=np.inf)
    assert exact and p[0] == pytest.approx(ref.pvalue)


def test_holm_matches_reference_values():
    # Holm (1979) step-down: sorted p (0.01, 0.02, 0.03, 0.04) -> 0.04, 0.06, 0.06, 0.06
    assert stats.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_significance_ranks_tie_runs_that_are_not_distinguishable():
    rng = np.random.default_rng(5)
    base = rng.random(200)
    ids = [str(i) for i in range(200)]
    runs = {"best": base + 0.10, "close": base + 0.099 + 0.01 * rng.standard_normal(200), "worse": base}
    entries = [(k, float(v.mean()), dict(zip(ids, v))) for k, v in runs.items()]
    ranked = {r.key: r for r in stats.significance_ranks(entries)}
    assert ranked["best"].rank == 1 and ranked["close"].rank == 1 and ranked["worse"].rank == 3
    assert ranked["close"].p_vs_leader >= 0.05
    lower = {r.key: r.rank for r in stats.significance_ranks(entries, higher_is_better=False)}
    assert lower["worse"] == 1 and lower["best"] in (2,)


def test_power_law_intervals_cover_the_true_exponent():
    x = np.geomspace(1, 1000, 8)
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(200):
        y = 0.3 * x ** 0.1 * np.exp(0.02 * rng.standard_normal(8))
        band = stats.power_law_intervals(x, y, seed=k, n_resamples=500)
        hits += band.b_ci[0] <= 0.1 <= band.b_ci[1]
    assert 0.80 <= hits / 200 <= 1.0  # residual bootstrap with 8 points is a little narrow; measured
    assert len(band.grid) == len(band.lower) == len(band.upper)
    assert all(lo <= hi for lo, hi in zip(band.lower, band.upper))


def test_predict_curve_recovers_a_sqrt_curve():
    steps = np.array([0, 100, 200, 300, 400])
    vals = 0.3 + 0.02 * np.sqrt(steps / 100)
    pred = stats.predict_curve(steps, vals, 1600, value_se=[0.01] * 5)
    assert pred.estimate == pytest.approx(0.3 + 0.02 * 4)
    assert pred.lo < pred.estimate < pred.hi


def test_fid_matches_torch_fidelity_and_first_order_bootstrap_matches_exact():
    import torch
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    rng = np.random.default_rng(0)
    real = rng.standard_normal((400, 12))
    fake = 0.9 * rng.standard_normal((300, 12)) + 0.2
    rs = fid_features_to_statistics(torch.from_numpy(real))
    fs = fid_features_to_statistics(torch.from_numpy(fake))
    ref = fid_statistics_to_metric(rs, fs, verbose=False)["frechet_inception_distance"]
    exact = stats.fid_bootstrap(fake, rs["mu"], rs["sigma"], n_resamples=300, exact=True)
    linear = stats.fid_bootstrap(fake, rs["mu"], rs["sigma"], n_resamples=300, exact=False)
    assert exact.estimate == pytest.approx(ref, rel=1e-6)
    assert linear.estimate == pytest.approx(exact.estimate, rel=1e-9)
    # Same spread; the exact resamples also carry FID's small-sample bias (a resample repeats images,
    # which shrinks its covariance), so their interval sits higher: documented in docs/statistics.md.
    assert (linear.hi - linear.lo) == pytest.approx(exact.hi - exact.lo, rel=0.2)
    assert linear.lo < linear.estimate < linear.hi
    assert stats.fid_bootstrap(fake[:1], rs["mu"], rs["sigma"]).ci is None


def test_benchmark_script_runs_in_quick_mode(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stats.py"
    spec = importlib.util.spec_from_file_location("bench_stats", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--json", str(tmp_path / "out.json")]) == 0
    import json

    res = json.loads((tmp_path / "out.json").read_text())
    assert res["intervals"]["equals_scipy"] is True
    assert set(res["backtest_demo"]) == set(stats.CURVE_FORMS) and res["chosen_form"] == stats.DEFAULT_CURVE_FORM


def test_fid_permutation_test_false_positives_and_power():
    rng = np.random.default_rng(4)
    d = 6
    mu_r, sigma_r = np.zeros(d), np.eye(d)
    same = [stats.fid_permutation_test(rng.standard_normal((60, d)) + 0.3, rng.standard_normal((60, d)) + 0.3,
                                       mu_r, sigma_r, n_permutations=500, seed=k).p_value for k in range(200)]
    assert 0.01 <= np.mean(np.array(same) < 0.05) <= 0.10  # 200 pairs: nominal 5%, binomial sd 1.5%
    shifted = [stats.fid_permutation_test(rng.standard_normal((60, d)) + 0.8, rng.standard_normal((60, d)) + 0.3,
                                          mu_r, sigma_r, n_permutations=500, seed=k) for k in range(50)]
    assert np.mean([c.p_value < 0.05 for c in shifted]) >= 0.8 and all(c.diff > 0 for c in shifted)
    x = rng.standard_normal((40, d))
    assert stats.fid_permutation_test(x, x, mu_r, sigma_r).p_value == 1.0
