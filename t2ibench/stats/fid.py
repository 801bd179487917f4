"""FID's uncertainty over the generated images: bootstrap intervals against fixed real statistics and
a permutation test between two sets of generated features."""

from __future__ import annotations

import numpy as np

from t2ibench.stats import (
    _CHUNK_ELEMENTS,
    CONFIDENCE,
    DEFAULT_PERMUTATIONS,
    DEFAULT_SEED,
    Comparison,
    Interval,
    _no_interval,
    bootstrap_sums,
    resample_indices,
)


# -- FID over generated features ----------------------------------------------------------------------
def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid_from_moments(mu_g, sigma_g, mu_r, sigma_r) -> float:
    """||mu_g - mu_r||^2 + tr(S_g) + tr(S_r) - 2 tr((S_r^1/2 S_g S_r^1/2)^1/2) (the same value as
    tr sqrt(S_g S_r), computed through a symmetric PSD matrix)."""
    a = _sqrt_psd(np.asarray(sigma_r, dtype=float))
    inner = a @ np.asarray(sigma_g, dtype=float) @ a
    tr_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None))))
    diff = np.asarray(mu_g, dtype=float) - np.asarray(mu_r, dtype=float)
    return float(diff @ diff + np.trace(sigma_g) + np.trace(sigma_r) - 2 * tr_sqrt)


def fid_bootstrap(features: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray, *, n_resamples: int = 1000,
                  seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE, exact: bool | None = None) -> Interval:
    """FID of generated `features` (n, d) against fixed real statistics, with a percentile interval
    from resampling the generated images. It covers the sampling of the generated images (which
    prompts and seeds were drawn), not the real side, which is held fixed.

    exact=True recomputes FID on every resample (O(n d^2 + d^3) each); exact=False uses FID's
    first-order expansion in the resample weights, FID* = FID + mean_i((w_i - 1) * IF_i), with the
    influence IF_i of image i computed once (O(n d^2 + d^3) in all, then O(n) per resample).
    Default: exact when n * d^2 * n_resamples is small (tests compare the two)."""
    g = np.asarray(features, dtype=np.float64)
    n, d = g.shape
    if n < 2:
        return _no_interval(None, n, "percentile", n_resamples, seed, f"fewer than 2 generated images (n={n})")
    if exact is None:
        exact = n * d * d * n_resamples < 5e9
    alpha = (1 - confidence) / 2
    if exact:
        mu_g = g.mean(0)
        centred = g - mu_g
        value = fid_from_moments(mu_g, centred.T @ centred / (n - 1), mu_r, sigma_r)
        theta_b = np.empty(n_resamples)
        k = 0
        for idx in resample_indices(n, n_resamples, seed):
            for row in idx:
                s = g[row]
                m = s.mean(0)
                c = s - m
                theta_b[k] = fid_from_moments(m, c.T @ c / (n - 1), mu_r, sigma_r)
                k += 1
        method = "percentile (exact FID per resample)"
    else:
        value, influence = fid_influence(g, mu_r, sigma_r)
        theta_b = value + bootstrap_sums(influence, n_resamples, seed)[0] / n - influence.mean()
        method = "percentile (first-order FID expansion per resample)"
    lo, hi = np.quantile(theta_b, [alpha, 1 - alpha])
    return Interval(value, float(lo), float(hi), n, method, n_resamples, seed, confidence)


def fid_influence(g: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray) -> tuple[float, np.ndarray]:
    """(FID, influence of each generated feature vector on it): the derivative of FID when image i's
    weight grows, 2 (mu_g - mu_r).(x_i - mu_g) + (x_i - mu_g)' M (x_i - mu_g) - tr(M S_g), with
    M = I - A (A S_g A)^-1/2 A and A = S_r^1/2, from d tr f(X) = tr(f'(X) dX). One eigen-decomposition
    of A S_g A serves both the value and the influence."""
    from scipy.linalg.blas import dsyrk

    g = np.asarray(g, dtype=np.float64)
    n, d = g.shape
    mu_g = g.mean(0)
    c = g - mu_g
    upper = dsyrk(1.0 / (n - 1), c, trans=1)  # c'c / (n-1), half the work of a general product
    sigma_g = np.triu(upper) + np.triu(upper, 1).T
    sigma_r = np.asarray(sigma_r, dtype=float)
    a = _sqrt_psd(sigma_r)
    inner = a @ sigma_g @ a
    w, v = np.linalg.eigh((inner + inner.T) / 2)
    w = np.clip(w, 0, None)
    shift = mu_g - np.asarray(mu_r, dtype=float)
    value = float(shift @ shift + np.trace(sigma_g) + np.trace(sigma_r) - 2 * np.sum(np.sqrt(w)))
    inv_sqrt = np.where(w > 1e-10 * max(w.max(), 1e-300), 1 / np.sqrt(np.where(w > 0, w, 1.0)), 0.0)
    m = np.eye(d) - a @ (v * inv_sqrt) @ v.T @ a
    m = (m + m.T) / 2
    quad = np.sum((c @ m) * c, axis=1)
    return value, 2 * c @ shift + quad - float(np.sum(m * sigma_g))  # tr(M S) of symmetric M, S


def fid_permutation_test(features_a: np.ndarray, features_b: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray, *,
                         n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_SEED) -> Comparison:
    """FID(A) - FID(B) against the same real statistics, with a two-sided permutation p-value: the
    generated images of A and B are pooled and relabelled at random. Each relabelling's statistic is
    FID's first-order expansion around the pooled set, mean_A*(IF) - mean_B*(IF), with IF each image's
    influence on the pooled FID; the observed statistic is computed the same way (so both sides share
    any small-sample bias), the reported diff is the exact FID difference."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return Comparison(None, None, None, None, min(na, nb), "permutation", 0, n_permutations, seed,
                          reason=f"fewer than 2 generated images (A {na}, B {nb})")
    fa, fb = fid_influence(a, mu_r, sigma_r)[0], fid_influence(b, mu_r, sigma_r)[0]
    pooled = np.concatenate([a, b])
    influence = fid_influence(pooled, mu_r, sigma_r)[1]
    influence = influence - influence.mean()
    labels = np.r_[np.ones(na), np.zeros(nb)]
    observed = abs(influence[:na].mean() - influence[na:].mean())
    rng = np.random.default_rng(seed)
    ge = 0
    rows = max(1, _CHUNK_ELEMENTS // (na + nb))
    for start in range(0, n_permutations, rows):
        k = min(rows, n_permutations - start)
        perm = np.argsort(rng.random((k, na + nb)), axis=1)
        is_a = labels[perm]  # (k, n): 1 where the permuted position belongs to A
        stat = np.abs((is_a @ influence) / na - ((1 - is_a) @ influence) / nb)
        ge += int(np.sum(stat >= observed - 1e-12 * max(1.0, observed)))
    p = (1 + ge) / (1 + n_permutations)
    return Comparison(float(fa - fb), None, None, float(min(1.0, p)), min(na, nb), "permutation (first-order FID)",
                      0, n_permutations, seed)
