"""Results store: one row per result, identified by (run, step, metric, version, manifest hash,
checkpoint hash); SQLite by default, PostgreSQL for many machines.

`ResultRow` is the shared record every writer uses (`t2ibench eval`, the trainers' in-training
evaluation, import and merge). `ResultsStore` keeps the rows in a SQLite file (WAL journal, busy
timeout, retried write transactions, so concurrent processes on one machine lose no row) or in a
PostgreSQL database (every job of a cluster writing to one server). The same result arriving twice
is stored once; the same identity with a different value is a conflict, reported and not written.

Where the store lives: `--db PATH|URL`, else `$T2IBENCH_DB`, else `./results/t2ibench.sqlite`
(see t2ibench/store/location.py). Schema and migrations: t2ibench/store/schema.py.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from t2ibench.atomic import write_text_atomic
from t2ibench.errors import UserError
from t2ibench.store import schema
from t2ibench.store.backends import Backend, backend_for
from t2ibench.store.location import (
    DEFAULT_DB,
    StoreLocation,
    default_location,
    parse_location,
    redact,
)
from t2ibench.store.schema import SCHEMA_VERSION

_WRITE_RETRIES = 20
T = TypeVar("T")


@dataclass
class ResultRow:
    run: str
    metric: str
    version: str
    value: float
    n_items: int
    variant: str | None = None
    family: str | None = None
    step: int | None = None
    train_flops: float | None = None  # cumulative training FLOPs, full count (see t2ibench.variants)
    params: int | None = None
    gmacs: float | None = None  # forward GMACs at 256x256, full count
    categories: dict[str, float] = field(default_factory=dict)
    ckpt_hash: str | None = None
    manifest_hash: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    # Training-data size of the run in image-noun pairs (the paper's D); not part of the protocol
    # manifest, since runs on different data are still evaluated under the same protocol.
    image_noun_pairs: float | None = None
    # Uncertainty (t2ibench.stats): the 95% interval and how it was made ({"ci95": [lo, hi], "method",
    # "n_resamples", "seed", "categories_ci95"}), and per-prompt values {prompt id: value} that paired
    # comparisons and significance-aware ranks need (schema migration 3).
    interval: dict[str, Any] = field(default_factory=dict)
    item_values: dict[str, float] = field(default_factory=dict)

    def identity(self) -> tuple:
        """What makes two rows the same result (schema.IDENTITY_FIELDS, NULLs as the index sees them)."""
        return (self.run, self.metric, self.version, -1 if self.step is None else int(self.step),
                self.manifest_hash or "", self.ckpt_hash or "")

    def same_result(self, other: ResultRow) -> bool:
        """Same measured outcome: value (NaN equals NaN), item count and per-category scores."""
        a, b = float(self.value), float(other.value)
        same_value = a == b or (math.isnan(a) and math.isnan(b))
        return same_value and int(self.n_items) == int(other.n_items) and \
            (self.categories or {}) == (other.categories or {})


ROW_FIELDS = [f.name for f in fields(ResultRow)]
_JSON_FIELDS = {"categories", "manifest", "interval", "item_values"}
_INT_FIELDS = {"n_items", "step", "params"}
_FLOAT_FIELDS = {"value", "train_flops", "gmacs", "created", "image_noun_pairs"}
_SQL_TYPES = {name: ("INTEGER" if name in _INT_FIELDS else "REAL" if name in _FLOAT_FIELDS else "TEXT")
              for name in ROW_FIELDS}
_QUERY_FIELDS = ("run", "metric", "version", "variant", "family", "manifest_hash", "ckpt_hash", "step")


def default_db_path() -> Path | str:
    """`$T2IBENCH_DB` if set, else `./results/t2ibench.sqlite`: a Path for SQLite, the redacted URL otherwise."""
    location = default_location()
    return location.path if location.kind == "sqlite" else str(location)


@dataclass
class Conflict:
    """A row whose identity is already stored with a different result; the stored row was kept."""

    stored: ResultRow
    incoming: ResultRow

    def describe(self) -> str:
        r = self.stored
        step = f" step {r.step}" if r.step is not None else ""
        return (f"{r.run}{step} {r.metric} ({r.version}): kept stored value {self.stored.value!r} "
                f"(n={self.stored.n_items}), not {self.incoming.value!r} (n={self.incoming.n_items})")


@dataclass
class AddReport:
    added: int = 0
    duplicates: int = 0  # already stored with the same result: skipped
    conflicts: list[Conflict] = field(default_factory=list)  # already stored with another result: skipped

    def summary(self) -> str:
        text = f"{self.added} added, {self.duplicates} already there"
        return text + (f", {len(self.conflicts)} conflicting (kept the stored rows)" if self.conflicts else "")


def _validate(row: ResultRow) -> None:
    if not isinstance(row, ResultRow):
        raise UserError(f"results store: expected a ResultRow, got {type(row).__name__}")
    if not row.run or not row.metric:
        raise UserError("results store: a result needs a run name and a metric name")
    try:
        value = float(row.value)
    except (TypeError, ValueError):
        raise UserError(f"results store: value {row.value!r} of run {row.run!r} is not a number") from None
    if math.isinf(value):
        raise UserError(f"results store: value of run {row.run!r}, metric {row.metric!r} is infinite")


def _to_sql(row: ResultRow) -> tuple:
    out = []
    for name in ROW_FIELDS:
        v = getattr(row, name)
        if name in _JSON_FIELDS:
            v = json.dumps(v or {}, sort_keys=True, default=_json_default)
        elif v is not None and name in _INT_FIELDS:
            v = int(v)
        elif v is not None and name in _FLOAT_FIELDS:
            v = float(v)
        out.append(v)
    return tuple(out)


def _nan_from_sql(d: dict[str, Any]) -> dict[str, Any]:
    if d["value"] is None:  # SQLite stores a NaN REAL as NULL; a failed metric keeps its NaN
        d["value"] = math.nan
    return d


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (Path, set, tuple)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _from_mapping(d: dict[str, Any]) -> ResultRow:
    """A row from SQL, CSV or JSON: JSON fields may be text, empty strings mean None."""
    kwargs: dict[str, Any] = {}
    for name in ROW_FIELDS:
        if name not in d:
            continue
        v = d[name]
        if name in _JSON_FIELDS:
            v = json.loads(v) if isinstance(v, str) and v else (v or {})
        elif v == "" or v is None:
            v = None
        elif name in _INT_FIELDS:
            v = int(float(v))
        elif name in _FLOAT_FIELDS:
            v = float(v)
        kwargs[name] = v
    missing = [n for n in ("run", "metric", "version", "value", "n_items") if kwargs.get(n) is None]
    if missing:
        raise UserError(f"results import: a row lacks {', '.join(missing)}")
    return ResultRow(**kwargs)


class ResultsStore:
    """Results in a SQLite file or a PostgreSQL database. Connections are kept per (process, thread),
    so a store object can be shared across fork() and threads; write transactions retry while another
    process holds the lock. (Closing SQLite's last connection checkpoints the WAL with an fsync, so
    one connection per call would be slow.)"""

    def __init__(self, path_or_url: str | os.PathLike[str] | StoreLocation | None = None):
        if isinstance(path_or_url, StoreLocation):
            self.location = path_or_url
        else:
            self.location = parse_location(path_or_url) if path_or_url is not None else default_location()
        if self.location.kind == "sqlite" and self.location.path.is_dir():
            raise UserError(f"results store {self.location.path} is a directory; give a file path")
        self._backend: Backend = backend_for(self.location)
        self._initialised = False
        self._connections: dict[tuple[int, int], Any] = {}

    @property
    def path(self) -> Path | None:
        """The SQLite file (None for a server database)."""
        return self.location.path

    @property
    def kind(self) -> str:
        return self.location.kind

    def __str__(self) -> str:
        return str(self.location)  # never holds a password

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.location)!r})"

    # -- connection and schema ---------------------------------------------------------------
    def exists(self) -> bool:
        """Whether there is a store to read (a SQLite file; a server database always answers)."""
        return self._backend.exists()

    @contextmanager
    def _connection(self, write: bool) -> Iterator[Any]:
        backend = self._backend
        if write:
            backend.prepare_write()
        elif not backend.exists():
            raise FileNotFoundError(self.path)
        key = (os.getpid(), threading.get_ident())
        con = self._connections.get(key)
        if con is None:
            con = self._connections[key] = backend.connect()
        try:
            if not self._initialised:
                self._init_schema(con)
            yield con
        except UserError:
            self._drop(key)
            raise
        except BaseException as exc:
            self._drop(key)
            if backend.is_db_error(exc) and not backend.retryable(exc):
                raise backend.user_error(exc) from None
            raise

    def _drop(self, key: tuple[int, int]) -> None:
        con = self._connections.pop(key, None)
        if con is not None:
            try:
                con.close()
            except Exception:  # noqa: BLE001 -- a broken connection may fail to close; it is gone either way
                pass

    def close(self) -> None:
        """Close this process's connections (those inherited over fork() are left alone)."""
        for key in [k for k in self._connections if k[0] == os.getpid()]:
            self._drop(key)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown
            pass

    def _run(self, con: Any, fn: Callable[[], T], write: bool) -> T:
        """fn() (inside one write transaction when `write`), retried while the database is busy."""
        backend = self._backend

        def attempt() -> T:
            if not write:
                return fn()
            with backend.transaction(con):
                return fn()

        for i in range(_WRITE_RETRIES):
            try:
                return attempt()
            except Exception as exc:
                if not backend.retryable(exc) or i == _WRITE_RETRIES - 1:
                    raise
                # busy_timeout already waits inside sqlite; this covers BEGIN IMMEDIATE / WAL-switch
                # races that return at once, and PostgreSQL deadlocks between crossing batches.
                time.sleep(min(2.0, 0.02 * 2 ** i) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _version(self, con: Any) -> int:
        b = self._backend
        if not b.has_table(con, "meta"):
            return 0
        row = con.execute(b.sql("SELECT value FROM meta WHERE key = ?"), ("schema_version",)).fetchone()
        return int(row["value"]) if row is not None else 0

    def _check_not_newer(self, found: int) -> None:
        if found > SCHEMA_VERSION:
            raise UserError(f"results store {self.location} has schema version {found}, newer than this t2ibench "
                            f"understands ({SCHEMA_VERSION}); upgrade t2ibench or use another --db")

    def _init_schema(self, con: Any) -> None:
        b = self._backend
        found = self._version(con)
        self._check_not_newer(found)
        if found == SCHEMA_VERSION and set(ROW_FIELDS) <= b.columns(con, "results"):
            self._initialised = True
            return
        self._run(con, lambda: b.on_open(con), write=False)

        def migrate() -> None:
            b.lock_schema(con)
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            now = self._version(con)  # again, under the lock: another process may have migrated meanwhile
            self._check_not_newer(now)
            for migration in schema.pending(now):
                for step in migration.steps:
                    if isinstance(step, schema.AddColumn):
                        b.add_column(con, step.table, step.name, b.types[step.type])
                    else:
                        con.execute(b.spell(step))
                con.execute(b.sql("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                                  "DO UPDATE SET value = excluded.value"), ("schema_version", str(migration.version)))
            # Optional fields appended to ResultRow later arrive as nullable columns (no migration needed).
            have = b.columns(con, "results")
            for name in ROW_FIELDS:
                if name not in have:
                    b.add_column(con, "results", name, b.types[_SQL_TYPES[name]])

        self._run(con, migrate, write=True)
        self._initialised = True

    def check_writable(self) -> None:
        """Raise the UserError a write would raise (server unreachable, wrong password, newer schema, not a
        SQLite file) without writing a row; a SQLite file that does not exist yet is not created."""
        if self.kind == "sqlite" and not self.path.exists():
            parent = next((p for p in [self.path.parent, *self.path.parent.parents] if p.exists()), None)
            if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"results store {self.path}: cannot create it ({parent} is not a writable folder)")
            return
        with self._connection(write=True):
            pass

    def schema_version(self) -> int:
        with self._connection(write=True) as con:
            return self._version(con)

    # -- writing -------------------------------------------------------------------------------
    def add(self, rows: ResultRow | Iterable[ResultRow]) -> int:
        """Insert rows in one transaction; returns how many were new (see `insert` for the rest)."""
        return self.insert(rows).added

    def insert(self, rows: ResultRow | Iterable[ResultRow]) -> AddReport:
        """Insert rows in one transaction (all or none). A row whose identity is already stored is
        skipped: counted as a duplicate when its result is the same, else reported as a conflict."""
        batch = [rows] if isinstance(rows, ResultRow) else list(rows)
        for row in batch:
            _validate(row)
        if not batch:
            return AddReport()
        values = [_to_sql(r) for r in batch]
        with self._connection(write=True) as con:
            # One statement is atomic by itself on PostgreSQL: no BEGIN/COMMIT round trips for one row.
            explicit = len(batch) > 1 or self._backend.kind == "sqlite"
            return self._run(con, lambda: self._insert(con, batch, values), write=explicit)

    def _insert(self, con: Any, batch: list[ResultRow], values: list[tuple]) -> AddReport:
        b = self._backend
        sql = b.sql(f"INSERT INTO results ({', '.join(ROW_FIELDS)}) VALUES ({', '.join('?' * len(ROW_FIELDS))}) "
                    "ON CONFLICT DO NOTHING")
        cur = con.cursor()
        if len(values) == 1:
            cur.execute(sql, values[0])
        else:
            cur.executemany(sql, values)
        report = AddReport(added=max(cur.rowcount, 0))
        if report.added == len(batch):
            return report
        # Some identities were there already (or repeated within the batch): same result or conflict?
        stored = self._stored_by_identity(con, batch)
        for row in batch:
            if not stored[row.identity()].same_result(row):
                report.conflicts.append(Conflict(stored[row.identity()], row))
        report.duplicates = len(batch) - report.added - len(report.conflicts)
        return report

    def _stored_by_identity(self, con: Any, batch: list[ResultRow]) -> dict[tuple, ResultRow]:
        """The stored rows with the identities of `batch`, fetched run by run (few queries for a merge)."""
        wanted = {r.identity() for r in batch}
        runs = sorted({r.run for r in batch})
        found: dict[tuple, ResultRow] = {}
        for i in range(0, len(runs), 500):
            chunk = runs[i:i + 500]
            sql = self._backend.sql(f"SELECT {', '.join(ROW_FIELDS)} FROM results "
                                    f"WHERE run IN ({', '.join('?' * len(chunk))})")
            for record in con.execute(sql, chunk).fetchall():
                row = _from_mapping(_nan_from_sql(dict(record)))
                if row.identity() in wanted:
                    found[row.identity()] = row
        return found

    def is_same_store(self, other: ResultsStore) -> bool:
        a, b = self.location, other.location
        if a.kind == b.kind == "sqlite":
            return a.path.resolve() == b.path.resolve()
        return (a.kind, a.host, a.port, a.dbname) == (b.kind, b.host, b.port, b.dbname)

    def merge_from(self, source: ResultsStore) -> AddReport:
        """Every row of `source` not already here (by identity); conflicts are reported, not written."""
        if source.is_same_store(self):
            raise UserError(f"results merge: {source} is the destination itself")
        if not source.exists():
            raise UserError(f"results merge: no results store at {source}")
        return self.insert(source.query())

    # -- reading -------------------------------------------------------------------------------
    def query(self, run: str | Iterable[str] | None = None, metric: str | Iterable[str] | None = None,
              **filters: Any) -> list[ResultRow]:
        """Rows matching every given filter (a value or a list of values), oldest first.
        Filters: run, metric, version, variant, family, manifest_hash, ckpt_hash, step."""
        unknown = set(filters) - set(_QUERY_FIELDS)
        if unknown:
            raise UserError(f"results query: unknown filter(s) {sorted(unknown)}; known: {list(_QUERY_FIELDS)}")
        filters = {"run": run, "metric": metric, **filters}
        where, params = [], []
        for name, wanted in filters.items():
            if wanted is None:
                continue
            options = [wanted] if isinstance(wanted, (str, int, float)) else list(wanted)
            if not options:
                return []
            where.append(f"{name} IN ({', '.join('?' * len(options))})")
            params.extend(options)
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql = self._backend.sql(sql + " ORDER BY created, id")
        try:
            with self._connection(write=False) as con:
                records = self._run(con, lambda: con.execute(sql, params).fetchall(), write=False)
        except FileNotFoundError:
            return []  # a store nobody has written to yet is an empty store
        return [_from_mapping(_nan_from_sql(dict(r))) for r in records]

    def __len__(self) -> int:
        try:
            with self._connection(write=False) as con:
                return int(con.execute("SELECT COUNT(*) AS n FROM results").fetchone()["n"])
        except FileNotFoundError:
            return 0

    # -- import / export -------------------------------------------------------------------------
    def export(self, dest: str | os.PathLike[str], fmt: str | None = None) -> int:
        """Write every row to a CSV or JSON file (format from `fmt` or the suffix); returns row count."""
        dest = Path(dest)
        fmt = _format_of(dest, fmt)
        rows = self.query()
        text = rows_to_json(rows) if fmt == "json" else rows_to_csv(rows)
        write_text_atomic(dest, text, newline="")
        return len(rows)

    def import_file(self, src: str | os.PathLike[str], fmt: str | None = None) -> AddReport:
        """Add every row of a CSV or JSON export that is not already stored (importing twice adds nothing)."""
        src = Path(src)
        if not src.is_file():
            raise UserError(f"results import: {src} does not exist")
        fmt = _format_of(src, fmt)
        text = src.read_text(encoding="utf-8")
        try:
            rows = rows_from_json(text) if fmt == "json" else rows_from_csv(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"results import: {src} is not a valid {fmt.upper()} export ({exc})") from None
        return self.insert(rows)


def _format_of(path: Path, fmt: str | None) -> str:
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "json"):
        raise UserError(f"results import/export: cannot tell the format of {path}; use .csv or .json")
    return fmt


def rows_to_json(rows: Iterable[ResultRow]) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "rows": [asdict(r) for r in rows]}, indent=1,
                      default=_json_default) + "\n"


def rows_from_json(text: str) -> list[ResultRow]:
    data = json.loads(text)
    if isinstance(data, dict):
        if int(data.get("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
            raise UserError(f"results import: export has schema version {data['schema_version']}, newer than "
                            f"this t2ibench understands ({SCHEMA_VERSION}); upgrade t2ibench")
        data = data["rows"]
    if not isinstance(data, list):
        raise ValueError("expected a list of rows")
    return [_from_mapping(d) for d in data]


def rows_to_csv(rows: Iterable[ResultRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        d = asdict(r)
        for name in _JSON_FIELDS:
            d[name] = json.dumps(d[name], sort_keys=True, default=_json_default)
        # repr keeps every bit of a float, so a CSV round trip is exact
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in d.items()})
    return buf.getvalue()


def rows_from_csv(text: str) -> list[ResultRow]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"run", "metric", "value"} <= set(reader.fieldnames):
        raise ValueError("missing header with run, metric, value")
    return [_from_mapping(d) for d in reader]


__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "AddReport", "Conflict", "ResultRow", "ResultsStore", "StoreLocation",
           "default_db_path", "default_location", "parse_location", "redact", "rows_from_csv", "rows_from_json",
           "rows_to_csv", "rows_to_json"]
