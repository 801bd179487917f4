"""Leaderboard: Pareto frontiers, power-law fits, protocol grouping, the static site and the CLI."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from html.parser import HTMLParser

import numpy as np
import pytest
from scipy import stats

from t2ibench.cli import main
from t2ibench.errors import UserError
from t2ibench.leaderboard.analysis import (
    competition_ranks,
    fit_power_law,
    fit_scaling,
    group_by_protocol,
    pareto_frontier,
    select_per_run,
    spearman,
)
from t2ibench.leaderboard.reference import PAPER_FITS, TABLE4
from t2ibench.leaderboard.site import build_site
from t2ibench.store import ResultRow, ResultsStore

XSS_RUN = "<script>alert(1)</script>"
MANIFEST_A = {"prompts": {"name": "tifa-v1", "sha256": "aa"}, "steps": 50, "cfg": 7.5, "note": "</pre><b>x</b>"}
MANIFEST_B = {"prompts": {"name": "tifa-v1", "sha256": "aa"}, "steps": 25, "cfg": 7.5}


def _row(run, value, step=None, metric="tifa", manifest_hash="hash-a", manifest=None, **kw):
    return ResultRow(run=run, metric=metric, version=kw.pop("version", "tifa-1.0"), value=value, n_items=10,
                     step=step, manifest_hash=manifest_hash,
                     manifest=MANIFEST_A if manifest is None else manifest, **kw)


# -- analysis ------------------------------------------------------------------------------------

def test_pareto_frontier_hand_made():
    pts = [(1, 0.5), (2, 0.4), (2, 0.6), (3, 0.55), (4, 0.7), (5, 0.7), (0.5, 0.3), (6, 0.65)]
    assert pareto_frontier(pts) == [(0.5, 0.3), (1, 0.5), (2, 0.6), (4, 0.7)]
    # lower is better (FID): cheaper and lower dominates
    assert pareto_frontier([(1, 30.0), (2, 35.0), (3, 20.0), (4, 20.0), (5, 10.0)], higher=False) == [
        (1, 30.0), (3, 20.0), (5, 10.0)]
    assert pareto_frontier([]) == []


def test_fit_recovers_known_power_law():
    rng = np.random.default_rng(0)
    a, b = 0.47, 0.11
    x = np.geomspace(1.0, 1e5, 60)
    y = a * x ** b * np.exp(rng.normal(0.0, 0.01, x.size))
    fit = fit_power_law(x, y)
    assert fit.a == pytest.approx(a, rel=0.03)
    assert fit.b == pytest.approx(b, abs=0.003)
    ref = stats.linregress(np.log(x), np.log(y))  # an independent least-squares in log-log space
    assert fit.b == pytest.approx(ref.slope, rel=1e-9)
    assert fit.r2 == pytest.approx(ref.rvalue ** 2, rel=1e-9)
    exact = fit_power_law([1, 10, 100], [0.64, 0.64 * 10 ** 0.03, 0.64 * 100 ** 0.03])
    assert (exact.a, exact.b, exact.r2) == (pytest.approx(0.64), pytest.approx(0.03), pytest.approx(1.0))
    with pytest.raises(UserError, match="at least 2"):
        fit_power_law([3, 3], [0.5, 0.6])
    with pytest.raises(UserError, match="positive"):
        fit_power_law([1, 2], [0.5, -0.1])


def test_scaling_fit_uses_frontier_only():
    a, b = 0.3, 0.05
    rows = []
    for i, c in enumerate([1e3, 1e4, 1e5, 1e6]):  # frontier points on the law, plus dominated points below it
        rows.append(_row(f"r{i}", a * c ** b, step=1, train_flops=c * 1e9))
        rows.append(_row(f"r{i}", a * c ** b * 0.8, step=2, train_flops=c * 3e9))
    fit = fit_scaling(group_by_protocol(rows)[0], "compute")
    assert len(fit.frontier) == 4 and len(fit.points) == 8
    assert fit.fit.a == pytest.approx(a) and fit.fit.b == pytest.approx(b) and fit.fit.r2 == pytest.approx(1.0)
    with pytest.raises(UserError, match="image-noun pairs"):
        fit_scaling(group_by_protocol(rows)[0], "data")
    with_data = [_row("d1", 0.5, manifest={**MANIFEST_A, "data": {"image_noun_pairs": 1e6}}),
                 _row("d2", 0.6, image_noun_pairs=1e8)]
    fit = fit_scaling(group_by_protocol(with_data)[0], "data")
    assert [p[0] for p in fit.frontier] == [1.0, 100.0]  # millions of pairs


def test_selection_ranking_and_spearman():
    rows = [_row("a", 0.5, step=10), _row("a", 0.7, step=5), _row("b", 0.6, step=3), _row("c", float("nan"), step=1)]
    latest = {r.run: r.value for r in select_per_run(rows, "latest")}
    best = {r.run: r.value for r in select_per_run(rows, "best")}
    assert latest["a"] == 0.5 and best["a"] == 0.7
    g = group_by_protocol(rows)[0]
    ordered = g.selected("best")
    assert [r.run for r in ordered] == ["a", "b", "c"]
    assert competition_ranks(ordered) == [1, 2, None]
    tie = [_row("x", 0.5), _row("y", 0.5), _row("z", 0.4)]
    assert competition_ranks(group_by_protocol(tie)[0].selected()) == [1, 1, 3]
    fid = group_by_protocol([_row("p", 20.0, metric="fid"), _row("q", 10.0, metric="fid")])[0]
    assert [r.run for r in fid.selected()] == ["q", "p"]  # lower FID ranks first
    assert spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4]).rho == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert spearman([1, 2], [1, 2]) is None


def test_groups_split_by_protocol_and_version():
    rows = [_row("a", 0.5), _row("b", 0.6, manifest_hash="hash-b", manifest=MANIFEST_B),
            _row("c", 0.7, version="tifa-2.0"), _row("d", 0.8, manifest_hash=None), _row("e", 0.9, manifest_hash=None)]
    groups = group_by_protocol(rows)
    assert sorted(tuple(sorted(g.runs())) for g in groups) == [("a",), ("b",), ("c",), ("d",), ("e",)]
    assert [g.comparable for g in groups if g.runs() in (["d"], ["e"])] == [False, False]


def test_paper_reference_constants_match_shared_table(shared_data):
    import csv

    with open(shared_data / "paper" / "table4_synthetic_captions.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(TABLE4)
    for rec, point in zip(table, TABLE4):
        assert rec["training_data"] == point.training_data
        for metric, value in point.scores.items():
            assert float(rec[metric]) == value
    protocol = (shared_data / "paper" / "protocol.md").read_text()
    for fit in PAPER_FITS.values():
        assert f"{fit.a:g} * " in protocol and f"^{fit.b:g}" in protocol


# -- site ----------------------------------------------------------------------------------------

class _Tables(HTMLParser):
    """Collects {table id: [[cell text, ...], ...]} and every <script> opened."""

    def __init__(self):
        super().__init__()
        self.tables, self.scripts, self._table, self._cell, self._row = {}, 0, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("type") != "application/json":  # chart data is JSON, not code
            self.scripts += 1
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    store = ResultsStore(root / "db.sqlite")
    rows = []
    for i, (run, params) in enumerate([("small", 2e6), ("medium", 8e6), (XSS_RUN, 4e6), ("big $x$", 20e6)]):
        for step in (100, 200, 300):
            v = 0.3 + 0.05 * math.log10(params / 1e6) + step / 1e4
            rows.append(_row(run, v, step=step, train_flops=params * 6 * 64 * step, params=int(params),
                             gmacs=params / 1e6, categories={"color": v - 0.1, "counting": v + 0.05, "<b>cat</b>": v},
                             variant="micro", family="unet", image_noun_pairs=(i + 1) * 1e6))
    rows.append(_row("other-protocol-best", 0.99, step=300, manifest_hash="hash-b", manifest=MANIFEST_B))
    rows.append(_row("no-manifest", 0.98, manifest_hash=None, manifest={}))
    store.add(rows)
    report = build_site(store, root / "out")
    return report, report.index.read_text(encoding="utf-8")


def test_site_escapes_user_text(built_site):
    _, html = built_site
    parser = _Tables()
    parser.feed(html)
    assert parser.scripts == 3  # the page's own sorting script, the bundled plotly.min.js, the chart loader
    assert XSS_RUN not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>cat</b>" not in html and "</pre><b>x</b>" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN, nothing fetched from the network


def test_site_ranks_only_within_a_protocol(built_site):
    report, html = built_site
    parser = _Tables()
    parser.feed(html)
    tables = list(parser.tables.values())
    assert len(tables) == 3  # protocol A (4 runs), protocol B (1 run), no manifest (unranked)
    by_runs = {tuple(sorted(row[1] for row in t)): t for t in tables}
    a = by_runs[tuple(sorted(["small", "medium", XSS_RUN, "big $x$"]))]
    assert [row[0] for row in a] == ["1", "2", "3", "4"]
    assert [row[1] for row in a] == ["big $x$", "medium", XSS_RUN, "small"]
    assert [row[0] for row in by_runs[("other-protocol-best",)]] == ["1"]  # its own ranking, not above "big"
    assert [row[0] for row in by_runs[("no-manifest",)]] == [""]  # shown, never ranked
    assert "not ranked" in html
    # each value's manifest is in its row
    assert html.count("<details><summary>hash-a") == 4
    assert "Published reference, not ranked" in html and "LensArt + Top5 Syn." in html
    names = sorted(p.name for p in report.plots)
    for kind in ("step", "flops", "params", "gmacs", "pareto-compute", "pareto-params", "pareto-data", "categories"):
        assert f"g0-{kind}.png" in names
    for p in report.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="plots/{p.name}"' in html


def test_empty_store_gives_a_site_that_says_so(tmp_path):
    report = build_site(ResultsStore(tmp_path / "missing.sqlite"), tmp_path / "out")
    html = report.index.read_text()
    assert 'id="empty"' in html and "has no results yet" in html and "<table" not in html
    assert report.n_rows == 0 and report.plots == []


# -- CLI -----------------------------------------------------------------------------------------

def test_cli_fit_export_import_and_errors(tmp_path, capsys):
    db = tmp_path / "db.sqlite"
    a, b = 0.5, 0.08
    ResultsStore(db).add([_row(f"r{i}", a * (p / 1e6) ** b, step=1, params=int(p))
                          for i, p in enumerate([1e6, 4e6, 16e6, 64e6])])
    assert main(["leaderboard", "fit", "--x", "params", "--db", str(db), "--no-plot", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == pytest.approx(a) and out["b"] == pytest.approx(b) and out["paper"]["b"] == 0.11
    plot = tmp_path / "fit.png"
    assert main(["leaderboard", "fit", "--x", "params", "--db", str(db), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "b = 0.08" in text and "R^2 = 1.0000" in text and "paper fit: S = 0.77 X^0.11" in text
    assert plot.read_bytes()[:4] == b"\x89PNG"

    assert main(["leaderboard", "fit", "--x", "compute", "--db", str(db)]) == 2
    assert "train_flops" in capsys.readouterr().err

    csv_path = tmp_path / "all.csv"
    assert main(["leaderboard", "export", str(csv_path), "--db", str(db)]) == 0
    assert main(["leaderboard", "import", str(csv_path), "--db", f"sqlite:///{tmp_path}/copy.sqlite"]) == 0
    assert ResultsStore(tmp_path / "copy.sqlite").query() == ResultsStore(db).query()
    capsys.readouterr()

    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    assert main(["leaderboard", "build", "--db", str(db), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert "schema version 99" in err and "upgrade t2ibench" in err and "Traceback" not in err
    assert not (tmp_path / "site" / "index.html").exists()
