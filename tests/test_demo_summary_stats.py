"""The demo's summary shows intervals and the last-step difference of the two variants, with its
interval and p-value (from the runs' results.json files, as the demo writes them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from t2ibench.demo.runner import (
    MICRO_VARIANTS,
    Demo,
    DemoReport,
    DemoSettings,
    StepScore,
    VariantReport,
    _last_step_difference,
    summary_table,
)
from t2ibench.stats import bootstrap_mean, paired_compare


def test_summary_states_intervals_and_the_last_step_difference(tmp_path):
    settings = DemoSettings(out=str(tmp_path / "demo"))
    demo = Demo(settings)
    rng = np.random.default_rng(0)
    ids = [f"q{i}" for i in range(64)]
    values, variants = {}, []
    for name, level in zip(settings.variants, (0.45, 0.6)):
        report = VariantReport(name, 1000)
        for step in (0, 600, 1200):
            v = np.clip(level * step / 1200 + 0.3 + 0.1 * rng.standard_normal(64), 0, 1)
            values[(name, step)] = v
            iv = bootstrap_mean(v)
            path = demo.eval_dir(MICRO_VARIANTS[name], step) / "results.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({
                "run": name, "step": step,
                "metrics": {"tifa": {"value": float(v.mean()), "version": "t", "manifest_hash": "m", "ci95": iv.ci}},
                "per_item": {"tifa": [{"id": i, "value": float(x)} for i, x in zip(ids, v)]}}))
            report.scores.append(StepScore(step, float(v.mean()), {}, None, None, iv.ci))
        variants.append(report)
    report = DemoReport(demo.out, demo.db, demo.site, variants, 1.0)
    report.last_step_difference = _last_step_difference(demo, report)
    ref = paired_compare(values[(settings.variants[1], 1200)], values[(settings.variants[0], 1200)])
    d = report.last_step_difference
    assert d["step"] == 1200 and d["diff"] == pytest.approx(ref.diff) and d["ci95"] == ref.ci
    assert d["p_value"] == ref.p_value and d["n"] == 64
    console = Console(width=200, record=True)
    console.print(summary_table(report))
    text = console.export_text()
    lo, hi = variants[0].scores[-1].ci95
    assert f"{variants[0].scores[-1].tifa:.3f} [{lo:.3f}, {hi:.3f}]" in text
    assert f"{d['diff']:+.3f} [{ref.lo:+.3f}, {ref.hi:+.3f}], p = {ref.p_value:.3g}" in text
    assert json.loads(json.dumps(report.to_dict()))["last_step_difference"]["p_value"] == ref.p_value
