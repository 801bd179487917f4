"""t2ibench.stats.seeds: effects over several training seeds and shared prompts. Coverage measured by
simulation of d[s, p] = mu + a_s + b_p + e_sp (not assumed), the one-seed case against scipy's paired
t-test, the crossed bootstrap against a direct transcription of its definition, p-value and interval
agreeing, bad input answered in one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from t2ibench.errors import UserError
from t2ibench.stats.seeds import Effect, bootstrap_effect, contrast_effect

MU = 0.3
# (sa, sb, se): standard deviations of the seed, prompt and seed x prompt terms
REGIMES = {"seed-dominated": (1.0, 0.2, 0.3), "prompt-dominated": (0.05, 1.0, 0.5), "interaction-only": (0.0, 0.0, 1.0)}
REPS = 1000
# 1000 replications: the binomial sd of a 95% coverage is 0.0069; 0.925 is 3.6 sd below nominal, so a
# correct method fails it by chance about once in 6,000 cases, an interval with 92% coverage often does.
LOWER = 0.925


def simulate_contrast(sa, sb, se, n_seeds, n_prompts, reps=REPS, seed=0):
    """Coverage of mu, coverage of mu + a_1 (the first seed's own effect), mean width."""
    rng = np.random.default_rng(seed)
    cover, cover_seed1, widths = 0, 0, []
    for r in range(reps):
        a = sa * rng.standard_normal((n_seeds, 1))
        d = MU + a + sb * rng.standard_normal((1, n_prompts)) + se * rng.standard_normal((n_seeds, n_prompts))
        e = contrast_effect(d, n_resamples=200, seed=r)
        cover += e.lo <= MU <= e.hi
        cover_seed1 += e.lo <= MU + a[0, 0] <= e.hi
        widths.append(e.hi - e.lo)
    return cover / reps, cover_seed1 / reps, float(np.mean(widths))


def true_width(sa, sb, se, n_seeds, n_prompts):
    return 2 * 1.959964 * np.sqrt(sa ** 2 / n_seeds + sb ** 2 / n_prompts + se ** 2 / (n_seeds * n_prompts))


@pytest.mark.parametrize("regime", ["seed-dominated", "prompt-dominated"])
def test_contrast_coverage_several_seeds(regime):
    sa, sb, se = REGIMES[regime]
    coverages = []
    for k, (n_seeds, n_prompts) in enumerate([(3, 32), (3, 64), (5, 32), (5, 64)]):
        cover, _, width = simulate_contrast(sa, sb, se, n_seeds, n_prompts, seed=k)
        assert LOWER <= cover <= 0.98, (regime, n_seeds, n_prompts, cover)
        coverages.append(cover)
        if regime == "prompt-dominated":  # the double-counted se²/(SP) widens it only a little
            assert width <= 1.2 * true_width(sa, sb, se, n_seeds, n_prompts), (n_seeds, n_prompts, width)
        else:  # seed-dominated: no wider than the textbook t-interval on the S seed means (E[s] ~ c4 sa)
            c4 = {3: 0.8862, 5: 0.9400}[n_seeds]
            textbook = 2 * scipy.stats.t.ppf(0.975, n_seeds - 1) * c4 * np.sqrt(sa ** 2 + se ** 2 / n_prompts)
            assert width <= 1.1 * textbook / np.sqrt(n_seeds), (n_seeds, n_prompts, width)
    assert np.mean(coverages) >= 0.94, coverages  # pooled over 4,000 replications: sd 0.0034


def test_contrast_coverage_interaction_only_is_conservative():
    """Both terms carry se²/(SP): the interval is wider than needed, by a bounded factor."""
    sa, sb, se = REGIMES["interaction-only"]
    for k, (n_seeds, n_prompts) in enumerate([(3, 32), (3, 64), (5, 32), (5, 64)]):
        cover, _, width = simulate_contrast(sa, sb, se, n_seeds, n_prompts, seed=10 + k)
        ratio = width / true_width(sa, sb, se, n_seeds, n_prompts)
        assert cover >= 0.97 and 1.3 <= ratio <= 1.8, (n_seeds, n_prompts, cover, ratio)


@pytest.mark.parametrize("regime", ["prompt-dominated", "interaction-only"])
def test_contrast_coverage_one_seed_without_seed_variation(regime):
    _, sb, se = REGIMES[regime]
    for k, n_prompts in enumerate([32, 64]):
        cover, _, width = simulate_contrast(0.0, sb, se, 1, n_prompts, seed=20 + k)
        assert LOWER <= cover <= 0.98, (n_prompts, cover)
        assert width <= 1.2 * true_width(0.0, sb, se, 1, n_prompts)


def test_contrast_one_seed_covers_that_seeds_effect_only():
    sa, sb, se = REGIMES["seed-dominated"]
    for k, n_prompts in enumerate([32, 64]):
        cover_mu, cover_seed1, _ = simulate_contrast(sa, sb, se, 1, n_prompts, seed=30 + k)
        assert LOWER <= cover_seed1 <= 0.98, (n_prompts, cover_seed1)
        assert cover_mu < 0.5, cover_mu  # seed-to-seed variation is not measured with one seed


def test_contrast_one_seed_is_the_paired_t_interval():
    rng = np.random.default_rng(5)
    d = 0.04 + 0.1 * rng.standard_normal((1, 16))
    ref = scipy.stats.ttest_1samp(d[0], 0.0)
    ref_lo, ref_hi = ref.confidence_interval(0.95)
    effects = [contrast_effect(d, seed=s) for s in range(20)]
    assert all(e.df == pytest.approx(15) and e.estimate == pytest.approx(d.mean()) for e in effects)
    # one bootstrap's variance is off by ~sqrt(2/B) = 3%; the mean over 20 seeds pins the P/(P-1) scaling
    # (without it the half-width would be sqrt(15/16) = 0.968 of the t-interval's)
    half = np.array([(e.hi - e.lo) / 2 for e in effects])
    assert np.mean(half) == pytest.approx((ref_hi - ref_lo) / 2, rel=0.012)
    assert np.all(np.abs(half / ((ref_hi - ref_lo) / 2) - 1) < 0.06)
    assert effects[0].p_value == pytest.approx(ref.pvalue, rel=0.2)


def test_contrast_terms_are_the_seed_and_prompt_variances():
    rng = np.random.default_rng(6)
    d = rng.standard_normal((4, 1)) * 0.3 + rng.standard_normal((1, 50)) + 0.5 * rng.standard_normal((4, 50))
    e = contrast_effect(d, n_resamples=20000, seed=1)
    seed_var = d.mean(1).var(ddof=1) / 4
    prompt_var = d.mean(0).var(ddof=1) / 50
    assert e.se ** 2 == pytest.approx(seed_var + prompt_var, rel=0.04)
    welch = (seed_var + prompt_var) ** 2 / (seed_var ** 2 / 3 + prompt_var ** 2 / 49)
    assert e.df == pytest.approx(welch, rel=0.08)


def test_p_value_agrees_with_interval():
    rng = np.random.default_rng(7)
    outcomes = set()
    for r in range(300):
        shift = rng.uniform(-0.4, 0.4)
        d = shift + 0.3 * rng.standard_normal((3, 1)) + rng.standard_normal((1, 32)) + rng.standard_normal((3, 32))
        e = contrast_effect(d, n_resamples=200, seed=r)
        excludes = e.lo > 0 or e.hi < 0
        assert (e.p_value < 1 - e.confidence) == excludes, e
        outcomes.add(excludes)
        v = np.stack([d + 0.5, np.full_like(d, 0.5)], axis=1)
        b = bootstrap_effect(v, lambda m: m[0] - m[1], n_resamples=200, seed=r)
        assert (b.p_value < 1 - b.confidence) == (b.verdict() != "not significant"), b
        outcomes.add(("b", b.verdict()))
    assert outcomes >= {True, False, ("b", "supported"), ("b", "contradicted"), ("b", "not significant")}


def test_bootstrap_is_the_crossed_resampling_it_describes():
    rng = np.random.default_rng(8)
    v = rng.random((3, 4, 20))
    compute = np.array([1.0, 2.0, 4.0, 8.0])
    rho = lambda m: scipy.stats.spearmanr(m, compute)[0]  # noqa: E731
    e = bootstrap_effect(v, rho, n_resamples=300, seed=2, null=0.2)
    # direct transcription: the same draws, the resampled seeds x prompts block, its arm means
    draws = np.random.default_rng(2)
    s_idx, p_idx = draws.integers(0, 3, (300, 3)), draws.integers(0, 20, (300, 20))
    stat = np.array([rho(v[s][:, :, p].mean(axis=(0, 2))) for s, p in zip(s_idx, p_idx)])
    k = int(np.ceil(0.025 * 300))
    assert e.estimate == pytest.approx(rho(v.mean(axis=(0, 2))))
    assert (e.lo, e.hi) == pytest.approx((np.sort(stat)[k - 1], np.sort(stat)[-k]))
    assert e.p_value == pytest.approx(min(1, 2 * min(np.mean(stat <= 0.2), np.mean(stat >= 0.2))))
    assert e.se == pytest.approx(stat.std(ddof=1))


ARMS = np.array([0.6, 0.5])
STATISTICS = {"difference": lambda m: m[0] - m[1], "ratio": lambda m: m[0] / m[1]}


def simulate_bootstrap(statistic, sa, sb, se, n_seeds, n_prompts, reps=REPS, seed=0):
    rng = np.random.default_rng(seed)
    cover = 0
    for r in range(reps):
        prompts = sb * (rng.standard_normal((1, 1, n_prompts)) + 0.5 * rng.standard_normal((1, 2, n_prompts)))
        v = (ARMS[None, :, None] + sa * rng.standard_normal((n_seeds, 2, 1)) + prompts
             + se * rng.standard_normal((n_seeds, 2, n_prompts)))
        e = bootstrap_effect(v, statistic, n_resamples=200, seed=r)
        cover += e.lo <= statistic(ARMS) <= e.hi
    return cover / reps


@pytest.mark.parametrize("name", sorted(STATISTICS))
def test_bootstrap_coverage(name):
    statistic = STATISTICS[name]
    prompt_dominated = simulate_bootstrap(statistic, 0.0, 0.1, 0.05, 3, 64, seed=40)
    assert LOWER <= prompt_dominated <= 0.985, prompt_dominated
    # three seeds, about half of the difference's variance from seeds: the seed stage's (S-1)/S shortfall
    few_seeds = simulate_bootstrap(statistic, 0.01, 0.1, 0.05, 3, 64, seed=41)
    assert few_seeds >= 0.90, few_seeds


def test_verdicts():
    rng = np.random.default_rng(9)
    noise = rng.standard_normal((3, 40))
    up = contrast_effect(1.0 + noise)
    down = contrast_effect(-1.0 + noise)
    flat = contrast_effect(noise - noise.mean())
    assert (up.verdict(), up.verdict(-1)) == ("supported", "contradicted")
    assert (down.verdict(), down.verdict(-1)) == ("contradicted", "supported")
    assert (flat.verdict(), flat.verdict(-1)) == ("not significant", "not significant")
    v = np.stack([1.0 + 0.1 * noise, np.ones_like(noise)], axis=1)  # ratio about 1: null 1, not 0
    ratio = bootstrap_effect(v, lambda m: m[0] / m[1], null=1.0)
    assert ratio.verdict() == "not significant" and bootstrap_effect(v, lambda m: m[0] / m[1]).verdict() == "supported"
    assert Effect(1.0, None, None, None, 1, 1, "t").verdict() == "not significant"
    with pytest.raises(UserError):
        up.verdict(0)


def test_reproducible_and_serialisable():
    d = np.random.default_rng(10).standard_normal((3, 30))
    assert contrast_effect(d, seed=3) == contrast_effect(d, seed=3)
    assert contrast_effect(d, seed=3).se != contrast_effect(d, seed=4).se
    v = np.random.default_rng(11).random((2, 3, 30))
    assert bootstrap_effect(v, np.ptp, seed=3) == bootstrap_effect(v, np.ptp, seed=3)
    out = json.loads(json.dumps(contrast_effect(d).to_dict()))
    assert out["ci95"] == [out["lo"], out["hi"]] and out["method"] == "t" and out["n_seeds"] == 3


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_no_interval_cases_say_why():
    one_prompt = contrast_effect(np.ones((3, 1)))
    assert one_prompt.lo is None and "fewer than 2 prompts" in one_prompt.reason
    same = contrast_effect(np.zeros((2, 5)))
    assert same.lo is None and same.p_value == 1.0 and "zero variance" in same.reason
    constant = contrast_effect(np.full((2, 5), 0.1))
    assert constant.lo is None and constant.p_value is None and constant.estimate == pytest.approx(0.1)
    interaction = contrast_effect([[1.0, -1.0], [-1.0, 1.0]])
    assert interaction.lo is None and "interaction" in interaction.reason
    undefined = bootstrap_effect(np.ones((2, 3, 4)), lambda m: scipy.stats.spearmanr(m, [1, 2, 3])[0])
    assert undefined.lo is None and "not finite" in undefined.reason


@pytest.mark.parametrize("call", [
    lambda: contrast_effect([1.0, 2.0, 3.0]),
    lambda: contrast_effect(np.zeros((2, 3, 4))),
    lambda: contrast_effect(np.zeros((0, 5))),
    lambda: contrast_effect([[1.0, np.nan], [1.0, 2.0]]),
    lambda: contrast_effect([["a", "b"]]),
    lambda: contrast_effect(np.zeros((2, 5)), n_resamples=50),
    lambda: contrast_effect(np.zeros((2, 5)), confidence=1.5),
    lambda: bootstrap_effect(np.zeros((2, 5)), np.mean),
    lambda: bootstrap_effect(np.zeros((2, 3, 5)), lambda m: m),
])
def test_bad_input_is_one_line(call):
    with pytest.raises(UserError) as err:
        call()
    assert "\n" not in str(err.value) and str(err.value)


def test_coverage_benchmark_runs(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_seed_stats.py"
    spec = importlib.util.spec_from_file_location("bench_seed_stats", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--reps", "10"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isalpha()]
    assert len(rows) == 2 + 18 + 8, out  # two headers, 3 regimes x 3 S x 2 P, 4 regimes x 2 statistics
    assert "ms CPU per call" in out
