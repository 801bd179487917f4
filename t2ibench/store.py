"""Results store: one row per (run, step, metric) result; SQLite by default.

`ResultRow` is the shared record every writer uses (`t2ibench eval`, the trainers' in-training
evaluation). `ResultsStore` keeps rows in one SQLite file that several processes may write at once:
WAL journal, a busy timeout, and a retry loop around every write transaction, so no row is lost.

Where the store lives: `--db PATH` (or `sqlite:///PATH`), else `$T2IBENCH_DB`, else
`./results/t2ibench.sqlite` (see `default_db_path`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from t2ibench.atomic import write_text_atomic
from t2ibench.errors import UserError

SCHEMA_VERSION = 1
DEFAULT_DB = Path("results") / "t2ibench.sqlite"
_BUSY_TIMEOUT_S = 30.0
_WRITE_RETRIES = 20


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
    # comparisons and significance-aware ranks need. Both nullable, added to old stores as columns.
    interval: dict[str, Any] = field(default_factory=dict)
    item_values: dict[str, float] = field(default_factory=dict)


ROW_FIELDS = [f.name for f in fields(ResultRow)]
_JSON_FIELDS = {"categories", "manifest", "interval", "item_values"}
_INT_FIELDS = {"n_items", "step", "params"}
_FLOAT_FIELDS = {"value", "train_flops", "gmacs", "created", "image_noun_pairs"}
_SQL_TYPES = {name: ("INTEGER" if name in _INT_FIELDS else "REAL" if name in _FLOAT_FIELDS else "TEXT")
              for name in ROW_FIELDS}
_QUERY_FIELDS = ("run", "metric", "version", "variant", "family", "manifest_hash", "ckpt_hash", "step")


def default_db_path() -> Path:
    """`$T2IBENCH_DB` if set, else `./results/t2ibench.sqlite` (relative to the working directory)."""
    env = os.environ.get("T2IBENCH_DB")
    return _parse_location(env) if env else DEFAULT_DB


def _parse_location(path_or_url: str | os.PathLike[str]) -> Path:
    text = os.fspath(path_or_url)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "sqlite":
            raise UserError(f"results store {text!r}: only SQLite is supported (a path or sqlite:///PATH)")
        # SQLAlchemy style: sqlite:///relative/path, sqlite:////absolute/path
        if not rest.startswith("/") or rest == "/":
            raise UserError(f"results store {text!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        text = rest[1:]
    if not text:
        raise UserError("results store: empty path")
    return Path(text).expanduser()


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


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
    """Results in one SQLite file. Connections are kept per (process, thread), so a store object can
    be shared across fork() and threads; writes retry while another process holds the lock.
    (Closing the last connection checkpoints the WAL with an fsync, so one per call would be slow.)"""

    def __init__(self, path_or_url: str | os.PathLike[str] | None = None):
        self.path = _parse_location(path_or_url) if path_or_url is not None else default_db_path()
        if self.path.is_dir():
            raise UserError(f"results store {self.path} is a directory; give a file path")
        self._initialised = False
        self._connections: dict[tuple[int, int], sqlite3.Connection] = {}

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    # -- connection and schema ---------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise UserError(f"results store {self.path}: cannot open ({exc})") from None
        con.row_factory = sqlite3.Row
        try:
            con.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            # In WAL mode NORMAL never corrupts the file; a power cut may drop the last commits only.
            con.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            con.close()
            raise UserError(f"results store {self.path}: not a usable SQLite results store ({exc})") from None
        return con

    @contextmanager
    def _connection(self, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise FileNotFoundError(self.path)
        key = (os.getpid(), threading.get_ident())
        con = self._connections.get(key)
        if con is None:
            con = self._connections[key] = self._connect()
        try:
            if not self._initialised:
                self._init_schema(con)
            yield con
        except sqlite3.DatabaseError as exc:
            self._drop(key)
            if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
                raise
            raise UserError(f"results store {self.path}: not a usable SQLite results store ({exc})") from None
        except BaseException:
            self._drop(key)
            raise

    def _drop(self, key: tuple[int, int]) -> None:
        con = self._connections.pop(key, None)
        if con is not None:
            con.close()

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

    def _init_schema(self, con: sqlite3.Connection) -> None:
        columns = ", ".join(f"{name} {_SQL_TYPES[name]}" for name in ROW_FIELDS)

        def create() -> None:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                con.execute(f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {columns})")
                con.execute("CREATE INDEX IF NOT EXISTS results_run_metric ON results (run, metric)")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

        row = None
        has_meta = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None:
            found = int(row[0])
            if found > SCHEMA_VERSION:
                raise UserError(
                    f"results store {self.path} has schema version {found}, newer than this t2ibench "
                    f"understands ({SCHEMA_VERSION}); upgrade t2ibench or use another --db")
        # WAL lets readers run beside one writer; the setting is stored in the file.
        _retry(lambda: con.execute("PRAGMA journal_mode = WAL"))
        if row is None or not self._has_all_columns(con):
            _retry(create)
            self._add_missing_columns(con)
        self._initialised = True

    def _has_all_columns(self, con: sqlite3.Connection) -> bool:
        have = {r[1] for r in con.execute("PRAGMA table_info(results)")}
        return set(ROW_FIELDS) <= have

    def _add_missing_columns(self, con: sqlite3.Connection) -> None:
        # Optional fields appended to ResultRow later are added as nullable columns (same schema version).
        have = {r[1] for r in con.execute("PRAGMA table_info(results)")}
        for name in ROW_FIELDS:
            if name not in have:
                try:
                    _retry(lambda n=name: con.execute(f"ALTER TABLE results ADD COLUMN {n} {_SQL_TYPES[n]}"))
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc).lower():  # another process added it first
                        raise

    def schema_version(self) -> int:
        with self._connection(write=True) as con:
            return int(con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    # -- writing -------------------------------------------------------------------------------
    def add(self, rows: ResultRow | Iterable[ResultRow]) -> int:
        """Insert rows in one transaction (all or none); returns how many were added."""
        batch = [rows] if isinstance(rows, ResultRow) else list(rows)
        for row in batch:
            _validate(row)
        if not batch:
            return 0
        values = [_to_sql(r) for r in batch]
        sql = f"INSERT INTO results ({', '.join(ROW_FIELDS)}) VALUES ({', '.join('?' * len(ROW_FIELDS))})"
        with self._connection(write=True) as con:
            def insert() -> None:
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.executemany(sql, values)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            _retry(insert)
        return len(batch)

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
            where.append(f"{name} IN ({', '.join('?' * len(options))})")
            params.extend(options)
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created, id"
        try:
            with self._connection(write=False) as con:
                records = _retry(lambda: con.execute(sql, params).fetchall())
        except FileNotFoundError:
            return []  # a store nobody has written to yet is an empty store
        return [_from_mapping(_nan_from_sql(dict(r))) for r in records]

    def __len__(self) -> int:
        try:
            with self._connection(write=False) as con:
                return int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
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

    def import_file(self, src: str | os.PathLike[str], fmt: str | None = None) -> int:
        """Add every row of a CSV or JSON export; returns how many were added."""
        src = Path(src)
        if not src.is_file():
            raise UserError(f"results import: {src} does not exist")
        fmt = _format_of(src, fmt)
        text = src.read_text(encoding="utf-8")
        try:
            rows = rows_from_json(text) if fmt == "json" else rows_from_csv(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"results import: {src} is not a valid {fmt.upper()} export ({exc})") from None
        return self.add(rows)


def _retry(fn):  # noqa: ANN001, ANN202 -- small helper around sqlite's busy errors
    """Run fn, retrying with jittered back-off while the database is locked (busy_timeout already
    waits inside sqlite; this covers BEGIN IMMEDIATE / WAL-switch races that return at once)."""
    for attempt in range(_WRITE_RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or attempt == _WRITE_RETRIES - 1:
                raise
            time.sleep(min(2.0, 0.02 * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


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


__all__ = ["SCHEMA_VERSION", "ResultRow", "ResultsStore", "default_db_path", "rows_from_csv", "rows_from_json",
           "rows_to_csv", "rows_to_json"]
