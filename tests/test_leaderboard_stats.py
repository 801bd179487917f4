"""Leaderboard statistics: intervals in tables, significance-aware ranks, fit intervals, predictions,
interactive chart specs and the bundled plotly.min.js."""

from __future__ import annotations

import json
import re

import numpy as np

from t2ibench.cli import main
from t2ibench.leaderboard.site import build_site
from t2ibench.stats import bootstrap_mean
from t2ibench.store import ResultRow, ResultsStore

MAN = {"prompts": {"name": "shapes", "sha256": "bb"}, "sampler": "ddim"}
N_PROMPTS = 120


def _store(tmp_path, runs):
    rng = np.random.default_rng(0)
    base = rng.random(N_PROMPTS)
    ids = [f"p{i}" for i in range(N_PROMPTS)]
    rows = []
    for run, (params, gain) in runs.items():
        for step in (100, 200, 300, 400, 500):
            level = 0.3 + gain * np.sqrt(step / 100)
            vals = np.clip(base * 0.2 + level + 0.05 * rng.standard_normal(N_PROMPTS), 0, 1)
            iv = bootstrap_mean(vals)
            rows.append(ResultRow(run=run, metric="tifa", version="v1", value=float(vals.mean()), n_items=N_PROMPTS,
                                  step=step, train_flops=params * 6 * 32 * step, params=int(params),
                                  manifest_hash="proto-1", manifest=MAN, interval=iv.to_dict(),
                                  item_values=dict(zip(ids, vals.tolist()))))
    store = ResultsStore(tmp_path / "db.sqlite")
    store.add(rows)
    return store


RUNS = {"big": (8e6, 0.05), "big-twin": (7.9e6, 0.0498), "small": (1e6, 0.02), "tiny": (0.5e6, 0.01)}


def test_site_shows_intervals_tiers_and_interactive_charts(tmp_path):
    store = _store(tmp_path, RUNS)
    report = build_site(store, tmp_path / "site")
    html = report.index.read_text()
    assert (tmp_path / "site" / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    assert 'src="assets/plotly.min.js"' in html and "cdn" not in html.lower()
    rows = re.findall(r'<tr><td class="num" data-v="([\d.]+)">\d+</td><td class="run">([^<]+)</td>', html)
    ranks = {run: int(float(r)) for r, run in rows}
    assert ranks["big"] == 1 and ranks["big-twin"] == 1  # indistinguishable at 120 prompts: they share rank 1
    assert ranks["small"] == 3 and ranks["tiny"] == 4
    assert re.search(r'<span class="ci">\[0\.\d+, 0\.\d+\]</span>', html)
    assert "How ranks and intervals are computed" in html
    specs = [json.loads(s) for s in re.findall(r'<script type="application/json" id="spec-[^"]+">(.*?)</script>',
                                              html)]
    step = next(s for s in specs if "training step" in s["layout"]["xaxis"]["title"]["text"])
    measured = [t for t in step["data"] if t.get("showlegend", True)]
    assert {t["name"] for t in measured} == set(RUNS)
    assert all(t["error_y"]["visible"] for t in measured)
    dashed = [t for t in step["data"] if t["line"].get("dash") == "dash"]
    assert len(dashed) == len(RUNS) and all(t["x"][-1] == 1000 for t in dashed)
    assert any(s["layout"]["xaxis"]["type"] == "log" for s in specs)


def test_cli_fit_reports_intervals_for_a_and_b(tmp_path, capsys):
    store = _store(tmp_path, RUNS)
    assert main(["leaderboard", "fit", "--x", "params", "--db", str(store.path), "--no-plot", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a_ci95"][0] <= out["a"] <= out["a_ci95"][1] and out["b_ci95"][0] <= out["b"] <= out["b_ci95"][1]
    two = _store(tmp_path / "two", {"big": RUNS["big"], "small": RUNS["small"]}) if (tmp_path / "two").mkdir() is None \
        else None
    assert main(["leaderboard", "fit", "--x", "params", "--db", str(two.path), "--no-plot"]) == 0
    assert "no intervals for a and b: 2 point(s)" in capsys.readouterr().out


def test_cli_predict_run_and_rank(tmp_path, capsys):
    store = _store(tmp_path, RUNS)
    assert main(["leaderboard", "predict", "--run", "small", "--up-to-step", "300", "--at-step", "500", "--db",
                 str(store.path), "--format", "json"]) == 0
    (p,) = json.loads(capsys.readouterr().out)["predictions"]
    truth = next(r.value for r in store.query(run="small") if r.step == 500)
    assert p["observed_steps"] == [100, 200, 300] and p["ci95"][0] <= truth <= p["ci95"][1]
    assert abs(p["estimate"] - truth) < 0.03
    assert main(["leaderboard", "predict", "--rank", "--up-to-step", "300", "--db", str(store.path),
                 "--format", "json"]) == 0
    ranking = [q["run"] for q in json.loads(capsys.readouterr().out)["predictions"]]
    assert ranking[2:] == ["small", "tiny"] and set(ranking[:2]) == {"big", "big-twin"}
    assert main(["leaderboard", "predict", "--db", str(store.path)]) == 2
    assert "--run R, or use --rank" in capsys.readouterr().err
    assert main(["leaderboard", "predict", "--run", "nope", "--db", str(store.path)]) == 2
    assert main(["leaderboard", "predict", "--run", "small", "--up-to-step", "100", "--db", str(store.path)]) == 0
    assert "no prediction: 1 evaluation(s)" in capsys.readouterr().out
