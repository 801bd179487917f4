"""Results store: concurrent writers, schema versioning, CSV/JSON round trips, bad input."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from t2ibench.errors import UserError
from t2ibench.store import SCHEMA_VERSION, ResultRow, ResultsStore, default_db_path


def _row(run: str = "run-a", step: int = 100, value: float = 0.5, **kw) -> ResultRow:
    base = dict(run=run, metric="tifa", version="tifa-1.0/vqa=x", value=value, n_items=8, variant="sdxl_td4_8",
                family="unet", step=step, train_flops=1.5e15, params=123_456_789, gmacs=12.5,
                categories={"color": 0.25, "counting": 1 / 3}, ckpt_hash="c" * 64, manifest_hash="m" * 16,
                manifest={"prompts": {"name": "tifa-v1", "sha256": "ab"}, "seeds": [0, 1], "cfg": 7.5})
    base.update(kw)
    return ResultRow(**base)


def _writer(db: str, worker: int, n_rows: int) -> None:
    store = ResultsStore(db)
    for i in range(n_rows):
        # single-row transactions maximise lock contention between the processes
        store.add(_row(run=f"w{worker}", step=i, value=i / n_rows))


def test_concurrent_writers_lose_no_row(tmp_path):
    db = str(tmp_path / "db.sqlite")
    n_workers, n_rows = 6, 40
    ctx = mp.get_context("spawn")  # fresh interpreters, as separate `t2ibench eval` processes would be
    procs = [ctx.Process(target=_writer, args=(db, w, n_rows)) for w in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = ResultsStore(db).query()
    assert len(rows) == n_workers * n_rows
    for w in range(n_workers):
        assert sorted(r.step for r in rows if r.run == f"w{w}") == list(range(n_rows))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_roundtrip_fields_and_query_filters(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path}/sub/db.sqlite")
    assert store.query() == [] and len(store) == 0  # nothing written yet: empty, no file needed
    rows = [_row(), _row(run="run-b", step=5, metric="fid", value=31.0, categories={}), _row(step=200)]
    assert store.add(rows) == 3
    assert (tmp_path / "sub" / "db.sqlite").is_file()
    got = store.query()
    assert got == rows
    assert [r.step for r in store.query(run="run-a")] == [100, 200]
    assert [r.run for r in store.query(metric=["fid"])] == ["run-b"]
    assert store.query(run="run-a", step=200) == [rows[2]]
    with pytest.raises(UserError, match="unknown filter"):
        store.query(colour="red")


def test_newer_schema_is_a_clear_error(tmp_path):
    db = tmp_path / "db.sqlite"
    ResultsStore(db).add(_row())
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(UserError, match=r"schema version 2, newer.*upgrade t2ibench"):
        ResultsStore(db).query()
    with pytest.raises(UserError, match="newer"):
        ResultsStore(db).add(_row())


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(UserError, match="not a usable SQLite"):
        ResultsStore(bad).query()
    with pytest.raises(UserError, match="only SQLite"):
        ResultsStore("postgresql://host/db")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_import_roundtrip(tmp_path, fmt):
    src = ResultsStore(tmp_path / "a.sqlite")
    rows = [_row(value=0.1 + 0.2), _row(run='odd, "name"\nline2', step=None, train_flops=None, params=None,
                                        categories={}, manifest={}, image_noun_pairs=2.5e6),
            _row(run="r", metric="fid", value=float("nan"))]
    src.add(rows)
    out = tmp_path / f"export.{fmt}"
    assert src.export(out) == 3
    dst = ResultsStore(tmp_path / "b.sqlite")
    assert dst.import_file(out) == 3
    got = dst.query()
    for a, b in zip(got[:2], rows[:2]):
        assert a == b  # exact, floats included
    assert got[2].value != got[2].value  # NaN survives


def test_import_rejects_bad_files(tmp_path):
    store = ResultsStore(tmp_path / "db.sqlite")
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(UserError, match="not a valid CSV"):
        store.import_file(bad)
    with pytest.raises(UserError, match="format"):
        store.import_file(bad.rename(tmp_path / "bad.txt"))
    assert len(store) == 0


def test_add_is_all_or_nothing(tmp_path):
    store = ResultsStore(tmp_path / "db.sqlite")
    with pytest.raises(UserError, match="not a number"):
        store.add([_row(), _row(value="high")])
    assert len(store) == 0


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.delenv("T2IBENCH_DB", raising=False)
    assert str(default_db_path()) == "results/t2ibench.sqlite"
    monkeypatch.setenv("T2IBENCH_DB", f"sqlite:///{tmp_path}/x.sqlite")
    assert default_db_path() == tmp_path / "x.sqlite"
    assert ResultsStore().path == tmp_path / "x.sqlite"
