"""Interactive leaderboard charts: Plotly figure specs (JSON) drawn in the page by the plotly.js that
ships inside the `plotly` Python package, copied next to the site (no CDN: the site works offline).

Hover shows run, step, value, 95% interval and checkpoint; clicking a legend entry toggles a run (its
measured curve and its predicted continuation share a legend group); zoom and pan work on the log
axes. Run names are HTML-escaped: Plotly renders a few tags in text, and user text must stay text.
"""

from __future__ import annotations

import shutil
from html import escape
from pathlib import Path
from typing import Any

from t2ibench.leaderboard.analysis import (
    X_AXES,
    ProtocolGroup,
    ScalingFit,
    row_ci,
    runs_by_key,
    x_value,
)

PLOTLY_JS = "plotly.min.js"
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf"]


def plotly_js_source() -> Path | None:
    """plotly.min.js from the installed plotly package, or None when plotly is not installed."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    return path if path.is_file() else None


def copy_plotly_js(assets_dir: Path) -> Path | None:
    src = plotly_js_source()
    if src is None:
        return None
    dest = assets_dir / PLOTLY_JS
    if not dest.is_file() or dest.stat().st_size != src.stat().st_size:
        assets_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return dest


def _text(s: Any) -> str:
    return escape(str(s), quote=False)


def _ci_text(ci: list[float] | None) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "n/a"


def _colors(runs: list[str]) -> dict[str, str]:
    return {run: _PALETTE[i % len(_PALETTE)] for i, run in enumerate(sorted(runs))}


def _layout(title: str, xtitle: str, ytitle: str, xlog: bool = False) -> dict:
    return {"title": {"text": _text(title), "font": {"size": 14}}, "xaxis": {"title": {"text": _text(xtitle)},
            "type": "log" if xlog else "linear"}, "yaxis": {"title": {"text": _text(ytitle)}},
            "hovermode": "closest", "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 480,
            "legend": {"font": {"size": 11}, "orientation": "h", "y": -0.22, "yanchor": "top"}}


def _hover(xname: str | None) -> str:
    return ("<b>%{customdata[3]}</b><br>step %{customdata[2]}<br>" + (f"{xname} %{{x:.4g}}<br>" if xname else "")
            + "value %{y:.4f}<br>95% interval %{customdata[0]}<br>checkpoint %{customdata[1]}<extra></extra>")


def _legend_name(run: str, limit: int = 36) -> str:
    return _text(run if len(run) <= limit else run[: limit - 1] + "…")


def _curve_traces(group: ProtocolGroup, x: str, predictions: dict[str, Any] | None) -> list[dict]:
    traces = []
    curves = runs_by_key(group.rows)
    colors = _colors(list(curves))
    for run, rows in curves.items():
        pts = [(r.step if x == "step" else x_value(r, "compute"), r) for r in rows]
        pts = [(xv, r) for xv, r in pts if xv is not None and (x != "compute" or xv > 0)]
        if not pts:
            continue
        cis = [row_ci(r) for _, r in pts]
        name = _legend_name(run)
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": name, "legendgroup": name,
            "x": [xv for xv, _ in pts], "y": [float(r.value) for _, r in pts],
            "line": {"color": colors[run]}, "marker": {"size": 6},
            "error_y": {"type": "data", "symmetric": False, "visible": any(cis),
                        "array": [(c[1] - float(r.value)) if c else 0 for c, (_, r) in zip(cis, pts)],
                        "arrayminus": [(float(r.value) - c[0]) if c else 0 for c, (_, r) in zip(cis, pts)]},
            "customdata": [[f"[{c[0]:.4f}, {c[1]:.4f}]" if c else "n/a", _text((r.ckpt_hash or "-")[:12]),
                            r.step if r.step is not None else "-", _text(run)] for c, (_, r) in zip(cis, pts)],
            "hovertemplate": _hover(None if x == "step" else "GFLOPs"),
        })
        pred = (predictions or {}).get(run)
        if x == "step" and pred is not None and pred.prediction.estimate is not None and pts:
            last_x, last = pts[-1]
            p = pred.prediction
            ci = f"[{p.lo:.4f}, {p.hi:.4f}]" if p.lo is not None else "n/a"
            traces.append({
                "type": "scatter", "mode": "lines+markers", "name": f"{name} (predicted)", "legendgroup": name,
                "showlegend": False, "x": [last_x, p.step], "y": [float(last.value), p.estimate],
                "line": {"color": colors[run], "dash": "dash"}, "marker": {"size": [0, 7], "symbol": "diamond-open"},
                "error_y": {"type": "data", "symmetric": False, "visible": p.lo is not None,
                            "array": [0, (p.hi - p.estimate) if p.lo is not None else 0],
                            "arrayminus": [0, (p.estimate - p.lo) if p.lo is not None else 0]},
                "customdata": [[ci, "predicted", p.step]] * 2,
                "hovertemplate": "<b>%{fullData.name}</b><br>step %{x}<br>predicted %{y:.4f}<br>"
                                 f"95% predictive interval {ci}<br>form {p.form}<extra></extra>",
            })
    return traces


def step_chart(group: ProtocolGroup, predictions: dict[str, Any] | None = None) -> dict | None:
    traces = _curve_traces(group, "step", predictions)
    if not traces:
        return None
    return {"data": traces, "layout": _layout(f"{group.metric} vs training step (bars: 95% intervals; dashed: "
                                              "predicted)", "training step", group.metric)}


def compute_chart(group: ProtocolGroup) -> dict | None:
    traces = _curve_traces(group, "compute", None)
    if not traces:
        return None
    return {"data": traces, "layout": _layout(f"{group.metric} vs training compute", X_AXES["compute"],
                                              group.metric, xlog=True)}


def fit_chart(fit: ScalingFit) -> dict | None:
    if not fit.points:
        return None
    group = fit.group
    xs = [p[0] for p in fit.points]
    data: list[dict] = [{
        "type": "scatter", "mode": "markers", "name": "measured", "x": xs, "y": [p[1] for p in fit.points],
        "marker": {"color": "#aaaaaa", "size": 6},
        "error_y": {"type": "data", "symmetric": False,
                    "array": [(row_ci(r)[1] - y) if row_ci(r) else 0 for _, y, r in fit.points],
                    "arrayminus": [(y - row_ci(r)[0]) if row_ci(r) else 0 for _, y, r in fit.points]},
        "customdata": [[_text(r.run), r.step if r.step is not None else "-", _ci_text(row_ci(r))]
                       for _, _, r in fit.points],
        "hovertemplate": "<b>%{customdata[0]}</b><br>step %{customdata[1]}<br>x %{x:.4g}<br>value %{y:.4f}<br>"
                         "95% interval %{customdata[2]}<extra></extra>"}]
    data.append({"type": "scatter", "mode": "lines+markers", "name": "Pareto frontier",
                 "x": [p[0] for p in fit.frontier], "y": [p[1] for p in fit.frontier],
                 "line": {"shape": "hv", "color": "#d62728"}})
    band = fit.band
    drawn = fit.fit is not None and len(fit.frontier) >= 3  # 2 points fit exactly: nothing to show
    if drawn and band is not None and band.a_ci is not None:
        data.append({"type": "scatter", "mode": "lines", "name": "95% band", "x": band.grid + band.grid[::-1],
                     "y": band.upper + band.lower[::-1], "fill": "toself", "fillcolor": "rgba(31,119,180,0.15)",
                     "line": {"width": 0}, "hoverinfo": "skip"})
    if drawn:
        import numpy as np

        grid = np.geomspace(min(p[0] for p in fit.frontier), max(p[0] for p in fit.frontier), 48)
        data.append({"type": "scatter", "mode": "lines", "name": f"fit {fit.fit.a:.3g}·X^{fit.fit.b:.3g}",
                     "x": grid.tolist(), "y": fit.fit(grid).tolist(), "line": {"color": "#1f77b4"}})
    return {"data": data, "layout": _layout(f"{group.metric}: Pareto frontier vs {fit.x}", X_AXES[fit.x],
                                            group.metric, xlog=True)}
