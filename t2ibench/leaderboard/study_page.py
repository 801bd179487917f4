"""The report of `t2ibench study`, from its claims record (`<out>/claims.json`), in two forms: Markdown
(`report.md`) and a page of the leaderboard site (`site/study.html`), with the same claims table and the
plots behind the claims (`site/plots/study-*.png`).

The record is plain data (settings, seeds, claims with their effects, per-arm score summaries), so this
module knows nothing of how the study ran. The report carries no wall-clock time: a resumed study
gives the identical report.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from t2ibench.atomic import write_text_atomic
from t2ibench.leaderboard.plots import _figure, _save

PLOTS = ("study-claims.png", "study-steps.png", "study-params.png")
VERDICT_CLASS = {"supported": "good", "contradicted": "bad", "not significant": "neutral"}
SCALING_ARMS = ("base", "deeper", "wider")


def _num(v: float | None, digits: int = 3, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _interval(effect: dict[str, Any], digits: int = 3) -> str:
    if effect.get("lo") is None:
        return f"none ({effect.get('reason') or 'no interval'})"
    return f"[{_num(effect['lo'], digits, True)}, {_num(effect['hi'], digits, True)}]"


def _p(effect: dict[str, Any]) -> str:
    p = effect.get("p_value")
    return "-" if p is None else (f"{p:.2g}" if p >= 1e-3 else "<0.001")


def claims_rows(record: dict[str, Any]) -> list[list[str]]:
    """The claims table: claim, effect, 95% interval, p, verdict (the same cells in both forms)."""
    return [[f"{c['id']}: {c['title']}", _num(c["effect"]["estimate"], 3, True), _interval(c["effect"]),
             _p(c["effect"]), c["verdict"]] for c in record["claims"]]


def claims_markdown_table(record: dict[str, Any]) -> str:
    head = "| claim | effect | 95% interval | p | verdict |\n|---|---:|---|---:|---|\n"
    return head + "".join(f"| {' | '.join(row)} |\n" for row in claims_rows(record))


def _score_rows(record: dict[str, Any]) -> tuple[list[int], list[tuple[str, list[str]]]]:
    scores = record["scores"]
    rows = []
    for arm, d in scores["arms"].items():
        cells = [f"{_num(e['estimate'])} {_interval(e)}" for e in d["interval"]]
        rows.append((arm, cells))
    return scores["steps"], rows


def _how_to_read(record: dict[str, Any]) -> str:
    n_seeds = len(record["seeds"])
    seeds = ("one seed: intervals cover prompt sampling only, so a verdict holds for this seed, not for training "
             "seeds in general" if n_seeds == 1 else
             f"{n_seeds} seeds: intervals add seed-to-seed variation to prompt resampling")
    return (f"Effects are measured on every held-out prompt of every seed ({seeds}). Differences (C1-C4, C7) "
            "get a t interval whose variance is the between-seed variance of the seed means plus the bootstrap "
            "variance over prompts, with Welch-Satterthwaite degrees of freedom; rank correlations (C5, C6) "
            "get a percentile interval from resampling seeds and prompts together. The verdict follows from the "
            "interval alone: *supported* when it lies on the claimed side of zero, *contradicted* when it lies on "
            "the other side, *not significant* otherwise. The paper's numbers are references, not targets: a "
            "micro model of a shapes world is not the paper's model, and its effects are not expected to match "
            "in size. See docs/study.md.")


def draw_plots(record: dict[str, Any], plot_dir: Path) -> list[Path]:
    """The claims' forest plot, score against step per arm, and final score against parameters."""
    made = []
    claims = record["claims"]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 4.2), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.14, wspace=0.45)
    for i, (method, xlabel) in enumerate((("t", "effect (TIFA; C4: TIFA per doubling of parameters)"),
                                          ("bootstrap", "effect (rank correlation)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        sel = [c for c in claims if c["effect"]["method"] == method]
        for j, c in enumerate(sel):
            e = c["effect"]
            color = {"supported": "tab:green", "contradicted": "tab:red"}.get(c["verdict"], "tab:grey")
            if e.get("lo") is not None:
                ax.plot([e["lo"], e["hi"]], [j, j], color=color, lw=2)
            ax.plot([e["estimate"]], [j], "o", color=color)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(sel)), [c["id"] for c in sel])
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Claims: effect and 95% interval (green supported, red contradicted, grey not significant)",
                 fontsize=9)
    made.append(_save(fig, fig.axes[0], plot_dir / PLOTS[0], legend=False))

    scores = record["scores"]
    steps = np.asarray(scores["steps"], float)
    fig, ax = _figure("TIFA against training step (mean over seeds and prompts, 95% interval)", "step", "TIFA")
    for arm, d in scores["arms"].items():
        lo = [e["lo"] if e.get("lo") is not None else e["estimate"] for e in d["interval"]]
        hi = [e["hi"] if e.get("hi") is not None else e["estimate"] for e in d["interval"]]
        mean = np.asarray(d["mean"])
        ax.errorbar(steps, mean, yerr=[mean - np.asarray(lo), np.asarray(hi) - mean], marker="o", capsize=3,
                    label=arm)
    made.append(_save(fig, ax, plot_dir / PLOTS[1]))

    fig, ax = _figure("Final TIFA against parameters (scaling arms)", "parameters", "TIFA")
    for arm in SCALING_ARMS:
        d = scores["arms"].get(arm)
        if not d or not d.get("params"):
            continue
        e = d["interval"][-1]
        err = [[e["estimate"] - e["lo"]], [e["hi"] - e["estimate"]]] if e.get("lo") is not None else None
        ax.errorbar([d["params"]], [e["estimate"]], yerr=err, marker="o", capsize=3, label=arm)
    ax.set_xscale("log")
    made.append(_save(fig, ax, plot_dir / PLOTS[2]))
    return made


def markdown(record: dict[str, Any], plots_rel: str) -> str:
    s = record["settings"]
    p = s["preset"]
    lines = [
        "# t2ibench study: the paper's claims at micro scale", "",
        f"Preset `{p['name']}` ({record.get('description', '')}) · seeds {', '.join(map(str, record['seeds']))} · "
        f"{len(record['arms'])} arms x {s['steps']} steps · {record['scores']['n_prompts']} held-out prompts · "
        "TIFA with the measuring VQA backend (`shapes-measure`)", "",
        claims_markdown_table(record), _how_to_read(record), "", "## The claims", ""]
    for c in record["claims"]:
        lines += [f"**{c['id']}: {c['title']}.** Measured: {c['measure']}. Paper: {c['paper']}."]
        for key, e in c.get("details", {}).items():
            if isinstance(e, dict) and "estimate" in e:
                lines.append(f"- {key}: {_num(e['estimate'], 3, True)} {_interval(e)}")
        lines.append("")
    steps, rows = _score_rows(record)
    lines += ["## Scores (TIFA, mean over seeds and prompts, 95% interval)", "",
              "| arm | " + " | ".join(f"step {t}" for t in steps) + " |", "|---|" + "---|" * len(steps)]
    lines += [f"| {arm} | " + " | ".join(cells) + " |" for arm, cells in rows]
    lines += ["", "## Plots", ""] + [f"![{name}]({plots_rel}/{name})" for name in PLOTS]
    lines += ["", "## Arms", "", "| arm | micro variant | alt-text share | parameters | |", "|---|---|---:|---:|---|"]
    for a in record["arms"]:
        params = record["scores"]["arms"].get(a["name"], {}).get("params")
        lines.append(f"| {a['name']} | {a['variant']} | {a['alt_text_prob']:.0%} | {params or '-'} | {a['description']} |")
    lines += ["", "## Settings", "", "```json", json.dumps(s, indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines)


def html_body(record: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr class="{VERDICT_CLASS.get(r[4], "")}"><td>{escape(r[0])}</td><td class="num">{escape(r[1])}</td>'
        f'<td>{escape(r[2])}</td><td class="num">{escape(r[3])}</td><td class="verdict">{escape(r[4])}</td></tr>'
        for r in claims_rows(record))
    table = ('<table id="claims"><thead><tr><th>claim</th><th>effect</th><th>95% interval</th><th>p</th>'
             f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table>")
    details = "".join(f"<li><b>{escape(c['id'])}</b>: {escape(c['measure'])}. <i>Paper:</i> {escape(c['paper'])}.</li>"
                      for c in record["claims"])
    steps, score_rows = _score_rows(record)
    scores = ("<table><thead><tr><th>arm</th>" + "".join(f"<th>step {t}</th>" for t in steps) + "</tr></thead><tbody>"
              + "".join(f"<tr><td>{escape(arm)}</td>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
                        for arm, cells in score_rows) + "</tbody></table>")
    figures = "".join(f'<figure><img src="plots/{name}" alt="{escape(name)}"></figure>' for name in PLOTS)
    settings = escape(json.dumps(record["settings"], indent=1, sort_keys=True))
    return (f"<section><h2>Claims</h2>{table}<p>{escape(_how_to_read(record))}</p><ul>{details}</ul></section>"
            f"<section><h2>Scores</h2>{scores}{figures}</section>"
            f"<section><h2>Settings</h2><p>Seeds: {escape(', '.join(map(str, record['seeds'])))}</p>"
            f"<pre>{settings}</pre></section>")


def write_study_report(record: dict[str, Any], markdown_path: Path, site: Path) -> tuple[Path, Path]:
    """Write `markdown_path` and `<site>/study.html` (plots in `<site>/plots/`); returns both paths."""
    import os

    from t2ibench.leaderboard.site import _page

    plot_dir = site / "plots"
    draw_plots(record, plot_dir)
    rel = os.path.relpath(plot_dir, markdown_path.parent)
    write_text_atomic(markdown_path, markdown(record, Path(rel).as_posix()))
    page = site / "study.html"
    p = record["settings"]["preset"]
    meta = (f"Preset <b>{escape(p['name'])}</b> · seeds {escape(', '.join(map(str, record['seeds'])))} · "
            '<a href="index.html">leaderboard</a>')
    write_text_atomic(page, _page("t2ibench study: the paper's claims at micro scale", meta, "", html_body(record)))
    return markdown_path, page


__all__ = ["claims_markdown_table", "draw_plots", "markdown", "write_study_report"]
