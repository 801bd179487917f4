"""Leaderboard figures (matplotlib, object API: no pyplot state, no display needed).

Every function draws one protocol group only, so results under different protocols never share a
plot, and the paper's published fits are drawn as a separate dashed, labelled reference series.
Each returns the PNG path it wrote, or None when the group lacks the data for that view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from t2ibench.leaderboard.analysis import (
    X_AXES,
    ProtocolGroup,
    RankCorrelation,
    ScalingFit,
    row_ci,
    runs_by_key,
    spearman,
    x_value,
)
from t2ibench.leaderboard.reference import PAPER_FIT_METRIC, PAPER_FITS

_DPI = 100
_MAX_LEGEND = 14


def _label(text: str, limit: int = 32) -> str:
    """User text for matplotlib: mathtext must not interpret `$`, and long names are cut."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _colors(runs: list[str]) -> dict[str, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(runs) <= 10 else "tab20"]
    return {run: cmap(i % cmap.N) for i, run in enumerate(sorted(runs))}


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, object]:
    # Fixed margins: a layout engine would draw every figure twice, doubling the build time.
    fig = Figure(figsize=(6.4, 4.2), dpi=_DPI)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.13)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Figure, ax, path: Path, legend: bool = True) -> Path:
    handles, _ = ax.get_legend_handles_labels()
    if legend and 0 < len(handles) <= _MAX_LEGEND:
        ax.legend(fontsize=7, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _ylabel(group: ProtocolGroup) -> str:
    return f"{group.metric} ({'higher' if group.higher_is_better else 'lower'} is better)"


def _paper_curve(ax, group: ProtocolGroup, x: str, xs: np.ndarray) -> None:
    if group.metric.lower() != PAPER_FIT_METRIC or x not in PAPER_FITS or xs.size == 0:
        return
    ref = PAPER_FITS[x]
    grid = np.geomspace(xs.min(), xs.max(), 64) if xs.max() > xs.min() else np.array([xs.min() * 0.5, xs.min() * 2])
    ax.plot(grid, ref.a * grid ** ref.b, "--", color="0.45", lw=1.2,
            label=f"reference, paper fit: {ref.a:g}·X^{ref.b:g} (Li et al. 2024)")


def _errorbars(ax, xs, rows, color) -> None:
    """95% intervals as error bars, where the results recorded them."""
    cis = [row_ci(r) for r in rows]
    if not any(cis):
        return
    lower = [r.value - c[0] if c else 0.0 for r, c in zip(rows, cis)]
    upper = [c[1] - r.value if c else 0.0 for r, c in zip(rows, cis)]
    ax.errorbar(xs, [r.value for r in rows], yerr=[lower, upper], fmt="none", ecolor=color, elinewidth=0.8,
                capsize=2, alpha=0.8)


def plot_vs_step(group: ProtocolGroup, path: Path) -> Path | None:
    curves = {run: [r for r in rows if r.step is not None] for run, rows in runs_by_key(group.rows).items()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    colors = _colors(list(curves))
    fig, ax = _figure(f"{group.metric} vs training step", "training step", _ylabel(group))
    for run, rows in curves.items():
        ax.plot([r.step for r in rows], [r.value for r in rows], "o-", ms=3, color=colors[run], label=_label(run))
        _errorbars(ax, [r.step for r in rows], rows, colors[run])
    return _save(fig, ax, path)


def plot_vs_flops(group: ProtocolGroup, path: Path) -> Path | None:
    curves = {run: [(x_value(r, "compute"), r.value, r) for r in rows] for run, rows in runs_by_key(group.rows).items()}
    curves = {k: [p for p in v if p[0] is not None] for k, v in curves.items()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    colors = _colors(list(curves))
    fig, ax = _figure(f"{group.metric} vs cumulative training compute", X_AXES["compute"], _ylabel(group))
    for run, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, color=colors[run], label=_label(run))
        _errorbars(ax, [p[0] for p in pts], [p[2] for p in pts], colors[run])
    ax.set_xscale("log")
    return _save(fig, ax, path)


def plot_final_vs(group: ProtocolGroup, axis: str, mode: str, path: Path) -> tuple[Path | None, RankCorrelation | None]:
    """Selected (final or best) score per run against params (millions) or forward GMACs."""
    rows = [r for r in group.selected(mode) if x_value(r, axis) is not None and np.isfinite(r.value)]
    if not rows:
        return None, None
    xs = np.array([x_value(r, axis) for r in rows])
    ys = np.array([r.value for r in rows])
    corr = spearman(list(xs), list(ys))
    what = "parameters (millions)" if axis == "params" else "forward GMACs at 256x256 (full count)"
    title = f"{mode} {group.metric} vs {'parameters' if axis == 'params' else 'GMACs'}"
    title += f" — {corr.describe()}" if corr else " — Spearman n/a (needs ≥3 distinct points)"
    fig, ax = _figure(title, what, _ylabel(group))
    colors = _colors([r.run for r in rows])
    for r, x, y in zip(rows, xs, ys):
        ax.scatter([x], [y], color=colors[r.run], s=30, zorder=3, label=_label(r.run))
    ax.set_xscale("log")
    if axis == "params":
        _paper_curve(ax, group, "params", xs)
    return _save(fig, ax, path), corr


def plot_scaling_fit(fit: ScalingFit, path: Path) -> Path | None:
    """All points, the Pareto frontier, S = a X^b fitted on it, and the paper's fit as reference."""
    if not fit.points:
        return None
    group = fit.group
    xs = np.array([p[0] for p in fit.points])
    fig, ax = _figure(f"{group.metric}: Pareto frontier vs {fit.x}", X_AXES[fit.x], _ylabel(group))
    ax.scatter(xs, [p[1] for p in fit.points], s=14, color="0.7", label="measured (all points)", zorder=2)
    _errorbars(ax, xs, [p[2] for p in fit.points], "0.6")
    fx = [p[0] for p in fit.frontier]
    ax.step(fx, [p[1] for p in fit.frontier], where="post", color="tab:red", lw=1.2, zorder=3)
    ax.scatter(fx, [p[1] for p in fit.frontier], s=28, color="tab:red", label="Pareto frontier", zorder=4)
    if fit.fit is not None and len(fit.frontier) >= 3:  # 2 points fit exactly: nothing to show
        grid = np.geomspace(min(fx), max(fx), 64)
        ax.plot(grid, fit.fit(grid), "-", color="tab:blue", lw=1.5,
                label=f"fit on frontier: {fit.fit.a:.3g}·X^{fit.fit.b:.3g} (R²={fit.fit.r2:.3f})")
        if fit.band is not None and fit.band.a_ci is not None:
            ax.fill_between(fit.band.grid, fit.band.lower, fit.band.upper, color="tab:blue", alpha=0.15, lw=0,
                            label="95% band (bootstrap)")
    elif fit.frontier:
        ax.text(0.02, 0.02, f"no fit drawn: {len(fit.frontier)} frontier point(s), needs ≥3", transform=ax.transAxes,
                fontsize=8, color="0.3")
    _paper_curve(ax, group, fit.x, xs)
    ax.set_xscale("log")
    return _save(fig, ax, path)


def plot_categories(group: ProtocolGroup, mode: str, path: Path) -> Path | None:
    """Per-category breakdown (e.g. TIFA's 12 element categories) of each run's selected result."""
    rows = [r for r in group.selected(mode) if r.categories][:_MAX_LEGEND]
    if not rows:
        return None
    cats = sorted({c for r in rows for c in r.categories})
    height_in = max(3.0, 0.28 * len(cats) * max(1, len(rows)) ** 0.5 + 1.2)
    fig = Figure(figsize=(7.2, height_in), dpi=_DPI)
    fig.subplots_adjust(left=0.2, right=0.97, top=1 - 0.35 / height_in, bottom=0.55 / height_in)
    ax = fig.add_subplot()
    ax.set_title(f"{group.metric} per category ({mode} result of each run)", fontsize=10)
    colors = _colors([r.run for r in rows])
    height = 0.8 / len(rows)
    ypos = np.arange(len(cats))
    for i, r in enumerate(rows):
        vals = [r.categories.get(c, np.nan) for c in cats]
        ax.barh(ypos + i * height - 0.4 + height / 2, vals, height=height, color=colors[r.run], label=_label(r.run))
    ax.set_yticks(ypos, [_label(c, 24) for c in cats], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(group.metric)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, ax, path)
