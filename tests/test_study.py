"""`t2ibench study --quick` end to end: the real trainer, TIFA through `evaluate`, the store, the claims and
the report, run as a user runs it (the CLI in a subprocess, two runs at a time).

These tests check the machinery, never the science: every claim has an effect, an interval, a p-value
and a verdict that follows from the interval; the report renders (also in headless Chromium); kill -9
and a rerun give the identical report. Which verdict a claim gets is not asserted anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
CLAIMS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7a", "C7b")


def _study(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "t2ibench", "study", "--quick", "--out", str(out), "--jobs", "2",
                           "--format", "json", *extra], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "quick"
    proc = _study(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout)


def test_every_claim_has_effect_interval_p_and_verdict(quick):
    out, report = quick
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert tuple(claims) == CLAIMS
    assert [c["id"] for c in report["claims"]] == list(CLAIMS)
    for c in claims.values():
        e = c["effect"]
        assert e["n_seeds"] == 2 and e["n_prompts"] == 12, c["id"]
        for key in ("estimate", "lo", "hi", "p_value"):
            assert e[key] is not None and np.isfinite(e[key]), (c["id"], key, e.get("reason"))
        assert e["lo"] <= e["estimate"] <= e["hi"], c["id"]
        assert 0.0 <= e["p_value"] <= 1.0
        # the verdict follows from the interval alone
        side = c["direction"] * np.array([e["lo"], e["hi"]])
        expected = "supported" if side.min() > 0 else "contradicted" if side.max() < 0 else "not significant"
        assert c["verdict"] == expected, c["id"]
        # ... and agrees with the p-value (both come from the same test)
        assert (e["p_value"] < 0.05) == (expected != "not significant"), (c["id"], e)
        assert c["paper"] and c["measure"]


def test_effects_are_computed_from_the_stored_per_prompt_scores(quick):
    """C2 recomputed by hand from the runs' results.json: the mean over seeds and prompts of wider - base."""
    out, _ = quick
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}

    def per_prompt(arm: str, seed: int) -> dict[str, float]:
        path = sorted((out / "runs" / arm / f"seed-{seed}" / "eval").glob("step-*/results.json"))[-1]
        items = json.loads(path.read_text())["per_item"]["tifa"]
        return {it["id"]: it["value"] for it in items}

    diffs = [per_prompt("wider", s)[p] - per_prompt("base", s)[p] for s in (0, 1) for p in per_prompt("base", s)]
    assert claims["C2"]["effect"]["estimate"] == pytest.approx(float(np.mean(diffs)), abs=1e-9)


def test_runs_land_in_the_store_and_the_site(quick):
    import sqlite3

    out, _ = quick
    con = sqlite3.connect(out / "results.sqlite")
    try:
        runs = {r for (r,) in con.execute("SELECT DISTINCT run FROM results")}
        n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        con.close()
    arms = ("base", "deeper", "wider", "alt-only", "synthetic-only")
    assert runs == {f"{a}-s{s}" for a in arms for s in (0, 1)}
    assert n == len(runs) * 4  # 25/50/75/100% of training
    index = (out / "site" / "index.html").read_text()
    assert 'href="study.html"' in index
    page = (out / "site" / "study.html").read_text()
    for cid in CLAIMS:
        assert f"{cid}: " in page
    md = (out / "report.md").read_text()
    assert md.count("\n| C") == len(CLAIMS)
    for name in ("study-claims.png", "study-steps.png", "study-params.png"):
        assert (out / "site" / "plots" / name).stat().st_size > 1000
        assert f"site/plots/{name}" in md


def test_training_data_mixes_alt_texts_and_synthetic_captions(quick):
    out, _ = quick
    train = out / "data" / "train"
    scenes = [json.loads(line) for line in (train / "scenes.jsonl").read_text().splitlines()]
    multi = [s for s in scenes if len(s["groups"]) > 1]
    assert multi
    for s in multi[:20]:
        alt = (train / f"{s['stem']}.txt").read_text()
        syn = json.loads((train / f"{s['stem']}.syn.json").read_text())["captions"]
        assert len(syn) == 5 and syn[0] == s["caption"]  # the whole scene, best first
        assert alt != s["caption"] and alt in s["caption"]  # alt-text: one group of the scene only
    # the arms' run configs carry the mixing probability to the trainer
    probs = {arm: json.loads((out / "runs" / arm / "seed-0" / "config.json").read_text())["data"]["alt_text_prob"]
             for arm in ("base", "alt-only", "synthetic-only")}
    assert probs == {"base": 0.5, "alt-only": 1.0, "synthetic-only": 0.0}


def test_kill_9_then_rerun_gives_the_identical_report(quick, tmp_path):
    """A study stopped after eight of its ten runs (a copy of the finished one, less the last two runs, their
    store rows and everything written after training) is started, SIGKILLed with its workers while both
    train, and run again: the report is the uninterrupted study's. Starting from eight finished runs keeps
    the test to the two runs the kill interrupts (re-training the whole study cost about 4 minutes)."""
    import shutil
    import sqlite3

    reference, _ = quick
    out = tmp_path / "killed"
    shutil.copytree(reference, out)
    last = ("alt-only", "synthetic-only")  # the last two arms of seed 1
    for arm in last:
        shutil.rmtree(out / "runs" / arm / "seed-1")
    for name in ("claims.json", "report.md", "timing.json"):
        (out / name).unlink()
    shutil.rmtree(out / "site")
    con = sqlite3.connect(out / "results.sqlite")
    with con:
        assert con.execute("DELETE FROM results WHERE run IN (?, ?)", [f"{arm}-s1" for arm in last]).rowcount == 8
    con.close()

    cmd = [sys.executable, "-m", "t2ibench", "study", "--quick", "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    # kill the whole process group (the study and both workers) once both runs have a checkpoint
    markers = [out / "runs" / arm / "seed-1" / "checkpoints" for arm in last]
    deadline = time.time() + 600
    while not all(m.is_dir() for m in markers) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert all(m.is_dir() for m in markers), proc.stderr.read().decode()[-3000:]
    assert not (out / "claims.json").exists()
    rerun = _study(out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (out / "claims.json").read_text() == (reference / "claims.json").read_text()
    assert (out / "report.md").read_text().replace(str(out), "") == \
        (reference / "report.md").read_text().replace(str(reference), "")


def test_other_settings_in_the_same_directory_are_refused(quick):
    out, _ = quick
    proc = subprocess.run([sys.executable, "-m", "t2ibench", "study", "--preset", "default", "--out", str(out)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "other settings" in lines[0] and "--fresh" in lines[0]


def test_study_page_in_headless_chromium(quick, tmp_path):
    from test_leaderboard_browser import CHROMIUM, Chromium

    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    out, _ = quick
    browser = Chromium(tmp_path / "profile")
    try:
        browser.page("Page.navigate", {"url": (out / "site" / "study.html").resolve().as_uri()})
        browser.wait_for("document.readyState === 'complete'")
        rows = browser.js("Array.from(document.querySelectorAll('#claims tbody tr')).map(r => "
                          "Array.from(r.cells).map(c => c.textContent))")
        assert [r[0].split(":")[0] for r in rows] == list(CLAIMS)
        assert all(r[4] in ("supported", "not significant", "contradicted") for r in rows)
        loaded = browser.js("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert loaded and all(loaded)
        assert browser.js("document.querySelector('a[href=\"index.html\"]') !== null")
    finally:
        browser.close()
