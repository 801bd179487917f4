"""Results store and site build timings on both backends, each against its bare driver, in one run.

    python benchmarks/bench_leaderboard.py [--rows 2000] [--pg-url URL | --no-postgres]

PostgreSQL: --pg-url (default $T2IBENCH_TEST_PG_URL), else a throwaway local server started from
Debian's binaries (tests/pg_server.py) and stopped at the end. Prints rows/s for single-row
ResultsStore.add (one transaction each) and one batched add, next to the bare driver inserting the
same rows (sqlite3 / psycopg, no identity check); re-adding the batch (every row a duplicate);
concurrent writers (SQLite 4 processes, PostgreSQL 16) with lost rows (must be 0); query time; and
the site build time for a realistic study (runs x steps x metrics).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from t2ibench.store import ResultRow, ResultsStore

MANIFEST = {"prompts": {"name": "tifa-v1", "sha256": "0" * 64}, "sampler": "ddim", "steps": 50, "cfg": 7.5,
            "versions": {"torch": "2.13.0", "diffusers": "0.42.1"}}
WRITERS = {"sqlite": 4, "postgresql": 16}


def _row(run: str, step: int, metric: str = "tifa", params: float = 1e7) -> ResultRow:
    v = 0.3 + 0.05 * math.log10(params / 1e6) + 0.1 * (1 - math.exp(-step / 3000))
    return ResultRow(run=run, metric=metric, version="1", value=v, n_items=4081, variant=run, family="unet",
                     step=step, train_flops=params * 6 * 2048 * step, params=int(params), gmacs=params / 1e6,
                     categories={c: v for c in ("color", "counting", "shape", "spatial")},
                     ckpt_hash="c" * 64, manifest_hash="m" * 16, manifest=MANIFEST)


def _bare_sqlite(db: str, rows: list[ResultRow]) -> None:
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE r (run, metric, version, value, n_items, step, categories, manifest)")
    for r in rows:
        con.execute("INSERT INTO r VALUES (?,?,?,?,?,?,?,?)", (r.run, r.metric, r.version, r.value, r.n_items, r.step,
                                                              json.dumps(r.categories), json.dumps(r.manifest)))
        con.commit()
    con.close()


def _bare_postgres(url: str, rows: list[ResultRow]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE r (run TEXT, metric TEXT, version TEXT, value DOUBLE PRECISION, n_items BIGINT, "
                    "step BIGINT, categories TEXT, manifest TEXT)")
        for r in rows:
            con.execute("INSERT INTO r VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                        (r.run, r.metric, r.version, r.value, r.n_items, r.step, json.dumps(r.categories),
                         json.dumps(r.manifest)))


def _writer(db: str, w: int, n: int) -> None:
    store = ResultsStore(db)
    for i in range(n):
        store.add(_row(f"w{w}", i))


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.0f} rows/s"


def _bench_backend(kind: str, fresh, rows: list[ResultRow], n_rows: int) -> None:
    """fresh(): a new empty store location of this backend."""
    bare = _bare_sqlite if kind == "sqlite" else _bare_postgres
    loc = fresh()
    t = time.perf_counter()
    bare(loc, rows)
    base = time.perf_counter() - t
    store = ResultsStore(fresh())
    store.add(_row("warm", 0))  # connection and schema set-up are not per-row costs
    t = time.perf_counter()
    for r in rows:
        store.add(r)
    single = time.perf_counter() - t
    print(f"{kind:10s} single-row: bare driver {_rate(n_rows, base)}, ResultsStore.add {_rate(n_rows, single)} "
          f"(ResultsStore/bare speed {base / single:.2f}x)")
    batch = [_row("batched", i) for i in range(n_rows)]
    t = time.perf_counter()
    added = store.add(batch)
    batched = time.perf_counter() - t
    t = time.perf_counter()
    again = store.insert(batch)
    dup = time.perf_counter() - t
    assert added == n_rows and again.added == 0 and again.duplicates == n_rows
    print(f"{kind:10s} batched add of {n_rows}: {_rate(n_rows, batched)} ({single / batched:.1f}x single-row); "
          f"the same batch again, all duplicates: {_rate(n_rows, dup)}")
    t = time.perf_counter()
    got = store.query(run="r")
    print(f"{kind:10s} query {len(got)} rows: {(time.perf_counter() - t) * 1e3:.1f} ms")
    store.close()

    writers = WRITERS[kind]
    per = max(1, n_rows // writers)
    db = fresh()
    ResultsStore(db).schema_version()  # created once, not raced by the writers
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["t2ibench.store"])
    procs = [ctx.Process(target=_writer, args=(db, w, per)) for w in range(writers)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t
    n = len(ResultsStore(db))
    print(f"{kind:10s} {writers} concurrent writers x {per} single-row adds: {_rate(n, dt)} (incl. process start), "
          f"lost rows {writers * per - n}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--pg-url", default=os.environ.get("T2IBENCH_TEST_PG_URL"),
                    help="admin URL of a PostgreSQL server to create scratch databases on "
                         "(default $T2IBENCH_TEST_PG_URL, else a throwaway local server)")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rows = [_row("r", i) for i in range(args.rows)]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

    _bench_backend("sqlite", lambda: str(tmp / f"{uuid.uuid4().hex}.sqlite"), rows, args.rows)

    if not args.no_postgres:
        import pg_server

        admin, server_dir = args.pg_url, None
        if not admin:
            server_dir = tmp / "pg"
            admin = pg_server.start(server_dir, pg_server.free_port())
        made: list[str] = []

        def fresh_pg() -> str:
            made.append(pg_server.new_database(admin))
            return made[-1]

        try:
            _bench_backend("postgresql", fresh_pg, rows, args.rows)
        finally:
            for url in made:
                pg_server.drop_database(admin, url)
            if server_dir:
                pg_server.stop(server_dir)

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
