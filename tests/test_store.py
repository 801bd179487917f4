"""Results store on both backends (SQLite file, real PostgreSQL server): concurrent writers, killed
writers, schema versions and migrations, one row per result identity, CSV/JSON round trips, merge,
bad input."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from t2ibench.errors import UserError
from t2ibench.store import (
    SCHEMA_VERSION,
    ResultRow,
    ResultsStore,
    default_db_path,
    schema,
)

# Writers per backend: PostgreSQL is the many-machines store; SQLite on local disk serves one machine.
WRITERS = {"sqlite": 4, "postgresql": 16}


def _row(run: str = "run-a", step: int | None = 100, value: float = 0.5, **kw) -> ResultRow:
    base = dict(run=run, metric="tifa", version="tifa-1.0/vqa=x", value=value, n_items=8, variant="sdxl_td4_8",
                family="unet", step=step, train_flops=1.5e15, params=123_456_789_012, gmacs=12.5,
                categories={"color": 0.25, "counting": 1 / 3}, ckpt_hash="c" * 64, manifest_hash="m" * 16,
                manifest={"prompts": {"name": "tifa-v1", "sha256": "ab"}, "seeds": [0, 1], "cfg": 7.5})
    base.update(kw)
    return ResultRow(**base)


def _kind(url: str) -> str:
    return "postgresql" if url.startswith("postgresql://") else "sqlite"


def _execute(url: str, sql: str, params: tuple = ()) -> None:
    """Raw SQL on the store's database, outside t2ibench (to fake old or newer stores)."""
    if _kind(url) == "sqlite":
        con = sqlite3.connect(url)
        con.execute(sql, params)
        con.commit()
        con.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            con.execute(sql.replace("?", "%s"), params)


def _fresh_processes():
    """Processes forked from a fresh interpreter that has imported the store once (as separate
    `t2ibench eval` processes would be, without paying the interpreter start-up 16 times)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "t2ibench.store", "psycopg"])
    return ctx


def _writer(db: str, worker: int, n_rows: int) -> None:
    store = ResultsStore(db)
    for i in range(n_rows):
        # single-row transactions maximise lock contention between the processes
        store.add(_row(run=f"w{worker}", step=i, value=i / n_rows))


def test_concurrent_writers_lose_no_row(store_url):
    n_workers, n_rows = WRITERS[_kind(store_url)], 25
    procs = [_fresh_processes().Process(target=_writer, args=(store_url, w, n_rows)) for w in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    rows = ResultsStore(store_url).query()
    assert len(rows) == n_workers * n_rows
    for w in range(n_workers):
        assert sorted(r.step for r in rows if r.run == f"w{w}") == list(range(n_rows))
    if _kind(store_url) == "sqlite":
        con = sqlite3.connect(store_url)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _killed_writer(db: str, marker: str) -> None:
    """Adds a 50-row batch but stops inside the transaction, after the INSERTs and before COMMIT."""
    original = ResultsStore._insert

    def insert_then_stall(self, con, batch, values):
        report = original(self, con, batch, values)
        Path(marker).touch()
        time.sleep(120)  # SIGKILLed here
        return report

    ResultsStore._insert = insert_then_stall
    ResultsStore(db).add([_row(run="killed", step=i) for i in range(50)])


def test_writer_killed_mid_transaction_leaves_no_partial_row(store_url, tmp_path):
    store = ResultsStore(store_url)
    store.add(_row(run="before"))
    marker = tmp_path / "inside-transaction"
    proc = _fresh_processes().Process(target=_killed_writer, args=(store_url, str(marker)))
    proc.start()
    deadline = time.time() + 120
    while not marker.exists() and proc.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the writer never reached its transaction"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    fresh = ResultsStore(store_url)
    assert [r.run for r in fresh.query()] == ["before"]
    fresh.add(_row(run="after"))  # the killed writer's lock is gone: writing goes on
    assert sorted(r.run for r in fresh.query()) == ["after", "before"]


def test_roundtrip_fields_and_query_filters(store_url):
    store = ResultsStore(store_url)
    assert store.query() == [] and len(store) == 0
    rows = [_row(), _row(run="run-b", step=5, metric="fid", value=31.0, categories={}), _row(step=200)]
    assert store.add(rows) == 3
    assert store.schema_version() == SCHEMA_VERSION
    got = store.query()
    assert got == rows  # exact: 8-byte floats and integers past 2^31 on both backends
    assert [r.step for r in store.query(run="run-a")] == [100, 200]
    assert [r.run for r in store.query(metric=["fid"])] == ["run-b"]
    assert store.query(run="run-a", step=200) == [rows[2]]
    assert store.query(run=[]) == []
    with pytest.raises(UserError, match="unknown filter"):
        store.query(colour="red")


def test_sqlite_file_is_created_on_first_write(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path}/sub/db.sqlite")
    assert store.query() == [] and len(store) == 0  # nothing written yet: empty, no file needed
    store.add(_row())
    assert (tmp_path / "sub" / "db.sqlite").is_file()


def test_same_result_is_stored_once_and_conflicts_are_reported(store_url):
    store = ResultsStore(store_url)
    rows = [_row(step=1), _row(step=2), _row(step=None, manifest_hash=None, ckpt_hash=None)]
    assert store.insert(rows).added == 3
    again = store.insert(rows)  # a rerun of the same evaluation
    assert (again.added, again.duplicates, again.conflicts) == (0, 3, [])
    assert len(store) == 3
    # Same identity, another value: the stored row stays, the new one is reported.
    report = store.insert([_row(step=1, value=0.75), _row(step=3)])
    assert (report.added, report.duplicates) == (1, 0)
    assert [(c.stored.value, c.incoming.value) for c in report.conflicts] == [(0.5, 0.75)]
    assert "kept stored value 0.5" in report.conflicts[0].describe()
    assert sorted((r.step, r.value) for r in store.query() if r.step is not None) == [(1, 0.5), (2, 0.5), (3, 0.5)]
    # Every part of the identity separates results.
    for change in ({"run": "other"}, {"metric": "clip"}, {"version": "2"}, {"manifest_hash": "n" * 16},
                   {"ckpt_hash": "d" * 64}):
        assert store.add(_row(step=1, **change)) == 1
    assert len(store) == 9
    # A duplicate within one batch counts once.
    assert store.insert([_row(step=9), _row(step=9)]).added == 1


def test_migration_from_v1_keeps_one_row_per_identity(store_url):
    from t2ibench.store.backends import backend_for
    from t2ibench.store.location import parse_location

    spell = backend_for(parse_location(store_url)).spell
    _execute(store_url, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    _execute(store_url, "INSERT INTO meta VALUES ('schema_version', '1')")
    for step in schema.MIGRATIONS[0].steps:
        _execute(store_url, spell(step))
    cols = "run, metric, version, value, n_items, step, manifest_hash, ckpt_hash, categories, manifest, created"
    for run, step, value, created in (("a", 1, 0.5, 1.0), ("a", 1, 0.5, 2.0), ("a", 1, 0.6, 3.0), ("a", 2, 0.7, 4.0),
                                      ("b", None, 0.1, 5.0), ("b", None, 0.1, 6.0)):
        _execute(store_url, f"INSERT INTO results ({cols}) VALUES (?, 'tifa', '1', ?, 4, ?, 'm', NULL, '{{}}', '{{}}', ?)",
                 (run, value, step, created))
    store = ResultsStore(store_url)
    assert store.schema_version() == SCHEMA_VERSION
    assert [(r.run, r.step, r.value) for r in store.query()] == [("a", 1, 0.5), ("a", 2, 0.7), ("b", None, 0.1)]
    moved = ResultsStore(store_url)._connection(write=False)
    with moved as con:
        n = con.execute("SELECT COUNT(*) AS n FROM duplicates").fetchone()["n"]
    assert n == 3  # kept aside, not deleted
    assert store.add(_row(run="a", step=1, metric="tifa", version="1", manifest_hash="m", ckpt_hash=None)) == 0


def test_newer_schema_is_a_clear_error(store_url):
    row = _row()
    ResultsStore(store_url).add(row)
    _execute(store_url, "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(UserError, match=rf"schema version {SCHEMA_VERSION + 1}, newer.*upgrade t2ibench"):
        ResultsStore(store_url).query()
    with pytest.raises(UserError, match="newer"):
        ResultsStore(store_url).add(_row(step=5))
    _execute(store_url, "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    assert ResultsStore(store_url).query() == [row]  # untouched


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(UserError, match="not a usable SQLite"):
        ResultsStore(bad).query()
    assert bad.read_text() == "this is not sqlite " * 100
    with pytest.raises(UserError, match="unsupported URL scheme 'mysql'") as err:
        ResultsStore("mysql://user:hunter2@host/db")
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_import_roundtrip(store_url, tmp_path, fmt):
    src = ResultsStore(store_url)
    rows = [_row(value=0.1 + 0.2), _row(run='odd, "name"\nline2', step=None, train_flops=None, params=None,
                                        categories={}, manifest={}, image_noun_pairs=2.5e6),
            _row(run="r", metric="fid", value=float("nan"))]
    src.add(rows)
    out = tmp_path / f"export.{fmt}"
    assert src.export(out) == 3
    dst = ResultsStore(tmp_path / "b.sqlite")
    assert dst.import_file(out).added == 3
    got = dst.query()
    for a, b in zip(got[:2], rows[:2]):
        assert a == b  # exact, floats included
    assert got[2].value != got[2].value  # NaN survives
    # Importing the same export again, into either backend, adds nothing.
    assert dst.import_file(out).duplicates == 3 and len(dst) == 3
    report = src.import_file(out)
    assert (report.added, report.duplicates, report.conflicts) == (0, 3, []) and len(src) == 3


def test_import_rejects_bad_files(store_url, tmp_path):
    store = ResultsStore(store_url)
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(UserError, match="not a valid CSV"):
        store.import_file(bad)
    with pytest.raises(UserError, match="format"):
        store.import_file(bad.rename(tmp_path / "bad.txt"))
    assert len(store) == 0


def test_add_is_all_or_nothing(store_url):
    store = ResultsStore(store_url)
    with pytest.raises(UserError, match="not a number"):
        store.add([_row(), _row(value="high")])
    assert len(store) == 0


def test_merge_gives_the_union_once(store_url, tmp_path):
    a, b = ResultsStore(tmp_path / "a.sqlite"), ResultsStore(tmp_path / "b.sqlite")
    shared = [_row(run="shared", step=s) for s in range(3)]
    a.add(shared + [_row(run="only-a")])
    b.add(shared + [_row(run="only-b", step=s) for s in range(2)])
    into = ResultsStore(store_url)
    assert into.merge_from(a).added == 4
    report = into.merge_from(b)
    assert (report.added, report.duplicates, report.conflicts) == (2, 3, [])
    union = sorted((r.run, r.step) for r in into.query())
    assert union == sorted({(r.run, r.step) for r in a.query() + b.query()}) and len(union) == 6
    before = into.query()
    for source in (a, b):  # merging again changes nothing
        assert into.merge_from(source).added == 0
    assert into.query() == before
    # A conflicting row (same identity, other value) is reported and the stored one kept.
    c = ResultsStore(tmp_path / "c.sqlite")
    c.add(_row(run="shared", step=1, value=0.9))
    report = into.merge_from(c)
    assert report.added == 0 and [x.incoming.value for x in report.conflicts] == [0.9]
    assert into.query() == before
    with pytest.raises(UserError, match="no results store"):
        into.merge_from(ResultsStore(tmp_path / "missing.sqlite"))
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(UserError, match="destination itself"):
        into.merge_from(ResultsStore(store_url))


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.delenv("T2IBENCH_DB", raising=False)
    assert str(default_db_path()) == "results/t2ibench.sqlite"
    monkeypatch.setenv("T2IBENCH_DB", f"sqlite:///{tmp_path}/x.sqlite")
    assert default_db_path() == tmp_path / "x.sqlite"
    assert ResultsStore().path == tmp_path / "x.sqlite"
    monkeypatch.setenv("T2IBENCH_DB", "postgresql://u:secret@h:5/d")
    assert ResultsStore().kind == "postgresql" and str(ResultsStore()) == "postgresql://u@h:5/d"


def test_check_writable_creates_nothing_and_reports_problems(store_url, tmp_path):
    store = ResultsStore(store_url)
    store.check_writable()
    if store.kind == "sqlite":
        assert not Path(store_url).exists()
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        with pytest.raises(UserError, match="cannot create it"):
            ResultsStore(blocker / "db.sqlite").check_writable()
    store.add(_row())
    _execute(store_url, "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(UserError, match="newer"):
        ResultsStore(store_url).check_writable()
