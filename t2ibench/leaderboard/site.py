"""Static leaderboard site: one self-contained `index.html` (CSS and sorting JS inlined, no CDN)
plus PNG plots under `plots/`. Opens from file:// with no server and no network.

Ranking happens only inside a protocol group (metric + version + manifest hash); every number's
protocol manifest is one click away (a <details> in its row). All user text is HTML-escaped.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path

from t2ibench.atomic import write_text_atomic
from t2ibench.errors import UserError
from t2ibench.leaderboard import interactive, plots
from t2ibench.leaderboard.analysis import (
    SELECT_MODES,
    ProtocolGroup,
    fit_scaling,
    group_by_protocol,
    row_ci,
    significance_ranks,
    x_value,
)
from t2ibench.leaderboard.reference import (
    PAPER_FIT_METRIC,
    PAPER_FITS,
    TABLE4_SOURCE,
    table4_for,
)
from t2ibench.store import ResultRow, ResultsStore

DEFAULT_OUT = Path("leaderboard") / "site"
PLOTS_DIR = "plots"


@dataclass
class SiteReport:
    out: Path
    index: Path
    n_rows: int
    n_groups: int
    plots: list[Path] = field(default_factory=list)


def _asset(name: str) -> str:
    return resources.files("t2ibench.leaderboard").joinpath("assets", name).read_text(encoding="utf-8")


def _fmt(v: float | int | None, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v != v:
        return "NaN"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v and abs(v) < 1e-3) else f"{v:.{digits}f}"


def _num_cell(v: float | int | None, cls: str = "num", digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return f'<td class="{cls}">{_fmt(v, digits)}</td>'
    return f'<td class="{cls}" data-v="{float(v)!r}">{escape(_fmt(v, digits))}</td>'


def _text_cell(v: str | None, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(v or '')}</td>"


def _json_block(obj: object) -> str:
    return f"<pre>{escape(json.dumps(obj, indent=1, sort_keys=True, default=str))}</pre>"


def _protocol_cell(r: ResultRow) -> str:
    detail = {"manifest_hash": r.manifest_hash, "ckpt_hash": r.ckpt_hash, "step": r.step, "n_items": r.n_items,
              "version": r.version, "recorded": _dt.datetime.fromtimestamp(r.created).isoformat(timespec="seconds"),
              "manifest": r.manifest}
    label = escape((r.manifest_hash or "none")[:12])
    return f'<td class="proto"><details><summary>{label}</summary>{_json_block(detail)}</details></td>'


_COLUMNS = [  # key, header, type
    ("rank", "Rank", "num"), ("run", "Run", "text"), ("variant", "Variant", "text"), ("family", "Family", "text"),
    ("step", "Step", "num"), ("compute", "Train compute (GFLOPs, full count)", "num"),
    ("params", "Params (M)", "num"), ("gmacs", "GMACs", "num"), ("value", "VALUE", "num"),
    ("p_holm", "p vs tier leader (Holm)", "num"), ("n_items", "Items", "num"), ("protocol", "Protocol", "text"),
]

RANKING_NOTE = """<details class="ranking-note" id="ranking-procedure">
<summary>How ranks and intervals are computed</summary><p>Every score is shown with its 95% interval: a seeded bootstrap over prompts (BCa, 2,000
resamples; per-prompt means first when a prompt has several images), or for FID over the generated images'
features against fixed real statistics. Ranks are significance-aware. The best run leads rank 1; every other
run is compared with it by a paired sign-flip permutation test on the prompts both scored, and the p-values
are Holm-corrected over those comparisons. Runs whose adjusted p is at least 0.05 share rank 1. The best of
the remaining runs then leads the next rank, numbered by how many runs stand above it, and so on down. A run
without per-prompt values cannot be tested: it claims no tie and keeps its place by point estimate (empty p). Dashed
continuations on the step charts are predictions of each run's score at twice its last evaluated step, with
95% predictive intervals (see docs/statistics.md for the functional form and its backtest). A power-law fit
is drawn only on 3 or more frontier points, a rank correlation only on 3 or more runs.</p></details>"""


def _value_cell(r: ResultRow) -> str:
    v = float(r.value)
    if v != v:
        return '<td class="num value">NaN</td>'
    ci = row_ci(r)
    text = escape(_fmt(v))
    if ci:
        text += f' <span class="ci">[{escape(_fmt(ci[0]))}, {escape(_fmt(ci[1]))}]</span>'
    return f'<td class="num value" data-v="{v!r}">{text}</td>'


def _json_script(obj: object, script_id: str) -> str:
    text = json.dumps(obj, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{script_id}">{text}</script>'


def _chart(spec: dict | None, chart_id: str, charts: list[str]) -> None:
    if spec is not None:
        charts.append(f'<div class="chart" id="{chart_id}" data-spec="spec-{chart_id}"></div>'
                      + _json_script(spec, f"spec-{chart_id}"))


def _table(group: ProtocolGroup, table_id: str, mode: str) -> str:
    rows = group.selected(mode)
    tiers = significance_ranks(group, mode) if group.comparable else {}
    ranks = [tiers[r.run].rank if r.run in tiers else None for r in rows]
    pvals = [tiers[r.run].p_vs_leader if r.run in tiers else None for r in rows]
    if not group.comparable:
        ranks = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: (ranks[i] is None, ranks[i] or 0))
    rows, ranks, pvals = [rows[i] for i in order], [ranks[i] for i in order], [pvals[i] for i in order]
    head = "".join(
        f'<th data-key="{k}" data-type="{t}" aria-sort="{"descending" if k == "value" and group.higher_is_better else "ascending" if k == "value" else "none"}">'
        f'{escape(group.metric) if k == "value" else escape(h)}</th>'
        for k, h, t in _COLUMNS)
    body = []
    for rank, p_adj, r in zip(ranks, pvals, rows):
        body.append(
            "<tr>" + _num_cell(rank, digits=0) + _text_cell(r.run, "run") + _text_cell(r.variant)
            + _text_cell(r.family) + _num_cell(r.step) + _num_cell(x_value(r, "compute"), digits=3)
            + _num_cell(x_value(r, "params"), digits=2) + _num_cell(r.gmacs, digits=2)
            + _value_cell(r) + _num_cell(p_adj, digits=3) + _num_cell(r.n_items) + _protocol_cell(r) + "</tr>")
    return (f'<div class="tablewrap"><table class="sortable" id="{table_id}" data-metric="{escape(group.metric)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _figure(src: Path | None, out: Path, caption: str) -> str:
    if src is None:
        return ""
    rel = src.relative_to(out).as_posix()
    return (f'<figure><img src="{escape(rel)}" alt="{escape(caption)}" loading="lazy">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _group_section(group: ProtocolGroup, idx: int, out: Path, mode: str, made: list[Path]) -> str:
    gid = f"g{idx}"
    pdir = out / PLOTS_DIR
    figs: list[str] = []
    notes: list[str] = []

    def keep(p: Path | None, caption: str) -> None:
        if p is not None:
            made.append(p)
            figs.append(_figure(p, out, caption))

    charts: list[str] = []
    predictions = _predictions(group)
    _chart(interactive.step_chart(group, predictions), f"{gid}-step", charts)
    _chart(interactive.compute_chart(group), f"{gid}-flops", charts)
    keep(plots.plot_vs_step(group, pdir / f"{gid}-step.png"), f"{group.metric} vs training step, per run")
    keep(plots.plot_vs_flops(group, pdir / f"{gid}-flops.png"),
         f"{group.metric} vs cumulative training compute (GFLOPs, full count incl. attention products)")
    for axis in ("params", "gmacs"):
        p, corr = plots.plot_final_vs(group, axis, mode, pdir / f"{gid}-{axis}.png")
        keep(p, f"{mode} {group.metric} vs {axis}" + (f"; {corr.describe()}" if corr else ""))
    for x in ("compute", "params", "data"):
        fit = fit_scaling(group, x, mode, require=False)
        if not fit.points:
            continue
        keep(plots.plot_scaling_fit(fit, pdir / f"{gid}-pareto-{x}.png"),
             f"Pareto frontier of {group.metric} vs {x} with S = a·X^b fitted on it")
        _chart(interactive.fit_chart(fit), f"{gid}-pareto-{x}", charts)
        if fit.fit is not None and len(fit.frontier) >= 3:
            band = fit.band
            ci = (f"; 95% intervals a ∈ [{band.a_ci[0]:.4g}, {band.a_ci[1]:.4g}], b ∈ [{band.b_ci[0]:.4g}, "
                  f"{band.b_ci[1]:.4g}]" if band is not None and band.a_ci else "")
            notes.append(f"<li>vs {escape(x)}: {escape(fit.fit.describe() + ci)} on {len(fit.frontier)} frontier "
                         "points" + (f"; reference {escape(PAPER_FITS[x].label())}"
                                     if group.metric.lower() == PAPER_FIT_METRIC else "") + "</li>")
        elif fit.frontier:
            notes.append(f"<li>vs {escape(x)}: no fit drawn: the Pareto frontier has {len(fit.frontier)} point(s), "
                         "and a 2-parameter power law on fewer than 3 points fits them exactly and says nothing"
                         "</li>")
    keep(plots.plot_categories(group, mode, pdir / f"{gid}-categories.png"),
         f"{group.metric} per-category breakdown ({mode} result per run)")

    if group.comparable:
        title = (f"Protocol <code>{escape(group.manifest_hash[:12])}</code> · version "
                 f"<code>{escape(group.version)}</code> · {len(group.runs())} run(s)")
        intro = ("Ranked only against results with this exact protocol manifest and metric version. "
                 f"Showing the <b>{mode}</b> result of each run.")
    else:
        title = (f"No protocol manifest recorded · version <code>{escape(group.version)}</code> · "
                 f"run <code>{escape(group.rows[0].run)}</code> — shown, not ranked")
        intro = "This result has no protocol manifest hash, so it is not comparable with any other result."
    manifest = (f"<details><summary>Protocol manifest of this group</summary>{_json_block(group.manifest)}</details>"
                if group.manifest else "")
    fits = f'<ul class="fit">{"".join(notes)}</ul>' if notes else ""
    cls = "group" if group.comparable else "group unranked"
    chart_html = f'<div class="charts">{"".join(charts)}</div>' if charts else ""
    return (f'<article class="{cls}" id="{gid}"><h3>{title}</h3><p class="note">{intro}</p>{manifest}'
            f"{_table(group, f'tbl-{idx}', mode)}{fits}{chart_html}<div class=\"plots\">{''.join(figs)}</div>"
            "</article>")


def _predictions(group: ProtocolGroup) -> dict:
    """Each run's predicted score at twice its last evaluated step (drawn as a dashed continuation)."""
    from t2ibench.leaderboard.predict import predict_run, run_curve

    out = {}
    for run in group.runs():
        rows = run_curve(group, run)
        if len(rows) >= 2 and rows[-1].step:
            out[run] = predict_run(group, run, 2 * int(rows[-1].step))
    return out


def _reference(metric: str) -> str:
    rows = table4_for(metric.lower())
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(m)}</td><td>{escape(d)}</td><td class=\"num\">{v:g}</td></tr>"
                   for m, d, v in rows)
    return (f'<aside class="reference"><b>Published reference, not ranked:</b> {escape(TABLE4_SOURCE)} '
            "(SD2 UNet trained at 256x256 under the paper's protocol; not comparable with the measured rows above "
            f"unless the protocol matches).<table><thead><tr><th>Model</th><th>Training data</th>"
            f"<th>{escape(metric)}</th></tr></thead><tbody>{body}</tbody></table></aside>")


def _page(title: str, meta: str, nav: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_asset("style.css")}</style></head>
<body><header><h1>{escape(title)}</h1><p class="meta">{meta}</p></header>
{nav}<main>{body}</main>
<footer><p>Built by <code>t2ibench leaderboard build</code>. Training compute is the full FLOP count
(attention-score and attention-value products included), cumulative over training. Dashed grey lines and grey
boxes are the paper's published results (Li et al., CVPR 2024), drawn as a separate reference, never ranked.
Click a column header to sort; click a protocol hash to see the manifest behind a number.</p></footer>
<script>{_asset("sort.js")}</script>
<script src="assets/{interactive.PLOTLY_JS}"></script><script>{_asset("charts.js")}</script></body></html>
"""


def build_site(store: ResultsStore, out: str | os.PathLike[str] | None = None, select: str = "latest",
               pages: tuple[tuple[str, str], ...] = ()) -> SiteReport:
    """Write the site for every result in `store` into `out` (default ./leaderboard/site). `pages`: extra
    (relative href, title) links for the navigation bar, e.g. a study report written beside the index."""
    if select not in SELECT_MODES:
        raise UserError(f"unknown selection {select!r}; choose one of {', '.join(SELECT_MODES)}")
    out = Path(out) if out is not None else DEFAULT_OUT
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    rows = store.query()  # first: a store we cannot read leaves no half-built site behind
    index = out / "index.html"
    if not rows and index.is_file() and 'id="empty"' not in index.read_text(encoding="utf-8", errors="replace"):
        raise UserError(f"the results store {store.path} has no results; not replacing the site in {out}, which shows "
                        "some (check --db, or delete the site first)")
    out.mkdir(parents=True, exist_ok=True)
    groups = group_by_protocol(rows)
    made: list[Path] = []
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    meta = (f"Store <code>{escape(str(store))}</code> · {len(rows)} result(s) · {len(groups)} protocol group(s)"
            f" · selection: <b>{select}</b> · built {escape(stamp)}")
    if not rows:
        body = (f'<p class="empty" id="empty">The results store <code>{escape(str(store))}</code> has no results '
                "yet. Add some with <code>t2ibench eval ... --db PATH</code>, a training run with in-training "
                "evaluation, or <code>t2ibench leaderboard import FILE</code>, then build again.</p>")
        nav = ""
    else:
        sections, links = [], []
        metrics = list(dict.fromkeys(g.metric for g in groups))
        for m_idx, metric in enumerate(metrics):
            parts = [_group_section(g, i, out, select, made) for i, g in enumerate(groups) if g.metric == metric]
            sections.append(f'<section class="metric" id="m{m_idx}"><h2>{escape(metric)}</h2>'
                            f"{''.join(parts)}{_reference(metric)}</section>")
            links.append(f'<li><a href="#m{m_idx}">{escape(metric)}</a></li>')
        body = RANKING_NOTE + "".join(sections)
        interactive.copy_plotly_js(out / "assets")
        links += [f'<li><a href="{escape(href)}">{escape(title)}</a></li>' for href, title in pages]
        nav = f"<nav><ul>{''.join(links)}</ul></nav>"
    _remove_stale_plots(out / PLOTS_DIR, keep=set(made))
    index = out / "index.html"
    write_text_atomic(index, _page("t2ibench leaderboard", meta, nav, body))
    return SiteReport(out=out, index=index, n_rows=len(rows), n_groups=len(groups), plots=made)


def _remove_stale_plots(pdir: Path, keep: set[Path]) -> None:
    """Plots from an earlier build that this build did not redraw (only our own g<N>-*.png names)."""
    if not pdir.is_dir():
        return
    for p in pdir.glob("g*-*.png"):
        if p not in keep:
            p.unlink()


