"""Results store and site build timings, against plain sqlite3 as the baseline, in one run.

    python benchmarks/bench_leaderboard.py [--rows 2000] [--writers 4]

Prints: single-row inserts through ResultsStore.add (connection per call, WAL, retry) vs a bare
sqlite3 connection inserting the same rows; concurrent writers' throughput and lost rows (must be 0);
query time; site build time for a realistic study (runs x steps x metrics).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sqlite3
import tempfile
import time
from pathlib import Path

from t2ibench.store import ResultRow, ResultsStore

MANIFEST = {"prompts": {"name": "tifa-v1", "sha256": "0" * 64}, "sampler": "ddim", "steps": 50, "cfg": 7.5,
            "versions": {"torch": "2.13.0", "diffusers": "0.42.1"}}


def _row(run: str, step: int, metric: str = "tifa", params: float = 1e7) -> ResultRow:
    v = 0.3 + 0.05 * math.log10(params / 1e6) + 0.1 * (1 - math.exp(-step / 3000))
    return ResultRow(run=run, metric=metric, version="1", value=v, n_items=4081, variant=run, family="unet",
                     step=step, train_flops=params * 6 * 2048 * step, params=int(params), gmacs=params / 1e6,
                     categories={c: v for c in ("color", "counting", "shape", "spatial")},
                     ckpt_hash="c" * 64, manifest_hash="m" * 16, manifest=MANIFEST)


def _baseline(db: Path, rows: list[ResultRow]) -> None:
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE r (run, metric, version, value, n_items, step, categories, manifest)")
    for r in rows:
        con.execute("INSERT INTO r VALUES (?,?,?,?,?,?,?,?)", (r.run, r.metric, r.version, r.value, r.n_items, r.step,
                                                              json.dumps(r.categories), json.dumps(r.manifest)))
        con.commit()
    con.close()


def _writer(db: str, w: int, n: int) -> None:
    store = ResultsStore(db)
    for i in range(n):
        store.add(_row(f"w{w}", i))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rows = [_row("r", i) for i in range(args.rows)]

    t = time.perf_counter()
    _baseline(tmp / "base.sqlite", rows)
    base = time.perf_counter() - t
    store = ResultsStore(tmp / "store.sqlite")
    t = time.perf_counter()
    for r in rows:
        store.add(r)
    ours = time.perf_counter() - t
    print(f"single-row inserts x{args.rows}: bare sqlite3 defaults (rollback journal, sync FULL, kept open) {base * 1e3 / args.rows:.3f} ms/row, "
          f"ResultsStore.add {ours * 1e3 / args.rows:.3f} ms/row, ratio {ours / base:.2f}x")
    t = time.perf_counter()
    store.add(rows)
    print(f"batched add of {args.rows} rows: {(time.perf_counter() - t) * 1e3:.1f} ms")
    t = time.perf_counter()
    got = store.query(run="r")
    print(f"query {len(got)} rows: {(time.perf_counter() - t) * 1e3:.1f} ms")

    per = args.rows // args.writers
    db = str(tmp / "concurrent.sqlite")
    procs = [mp.get_context("spawn").Process(target=_writer, args=(db, w, per)) for w in range(args.writers)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t
    n = len(ResultsStore(db))
    print(f"{args.writers} concurrent writers x {per} single-row adds: {n * 1.0 / dt:.0f} rows/s (incl. spawn), "
          f"lost rows {args.writers * per - n}")

    from t2ibench.leaderboard.site import build_site

    study = ResultsStore(tmp / "study.sqlite")
    study.add([_row(f"run{k}", s, m, 10 ** (6 + k / 3)) for k in range(8) for s in range(0, 20001, 2000)
               for m in ("tifa", "imagereward", "clip")])
    t = time.perf_counter()
    report = build_site(study, tmp / "site")
    print(f"site build: {report.n_rows} results, {report.n_groups} groups, {len(report.plots)} plots in "
          f"{time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
