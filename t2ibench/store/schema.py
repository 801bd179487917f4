"""The results store's schema, the same on SQLite and PostgreSQL, and its migrations.

A store records its version in `meta` (key `schema_version`). Opening a store applies every migration
above that version, each in the one transaction that also bumps the version, so a crash leaves either
the old or the new schema, and concurrent openers migrate once (SQLite's write lock, PostgreSQL's
advisory lock). A store of a newer version than this t2ibench knows is refused, never touched.

Adding a schema change is one entry at the end of MIGRATIONS: SQL text (types written as {INTEGER},
{REAL}, {TEXT}, which each dialect spells its own way) or an AddColumn, which is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

# The identity of a result: a rerun of the same evaluation, or the same row arriving twice through
# import or merge, has the same identity and is stored once. NULLs would be distinct in a UNIQUE index,
# hence the COALESCE (a result without a step, manifest or checkpoint hash is still one result).
IDENTITY_FIELDS = ("run", "metric", "version", "step", "manifest_hash", "ckpt_hash")
IDENTITY_SQL = "run, metric, version, COALESCE(step, -1), COALESCE(manifest_hash, ''), COALESCE(ckpt_hash, '')"


@dataclass(frozen=True)
class AddColumn:
    """ALTER TABLE ... ADD COLUMN, skipped where the column exists (a nullable column: old rows read None)."""

    table: str
    name: str
    type: str  # INTEGER | REAL | TEXT


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    steps: tuple[str | AddColumn, ...]


_V1_COLUMNS = ", ".join(f"{name} {{{kind}}}" for name, kind in (
    ("run", "TEXT"), ("metric", "TEXT"), ("version", "TEXT"), ("value", "REAL"), ("n_items", "INTEGER"),
    ("variant", "TEXT"), ("family", "TEXT"), ("step", "INTEGER"), ("train_flops", "REAL"), ("params", "INTEGER"),
    ("gmacs", "REAL"), ("categories", "TEXT"), ("ckpt_hash", "TEXT"), ("manifest_hash", "TEXT"),
    ("manifest", "TEXT"), ("created", "REAL"), ("image_noun_pairs", "REAL")))
_KEEP_FIRST = f"SELECT MIN(id) FROM results GROUP BY {IDENTITY_SQL}"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "results table", (
        f"CREATE TABLE IF NOT EXISTS results (id {{ID}}, {_V1_COLUMNS})",
        "CREATE INDEX IF NOT EXISTS results_run_metric ON results (run, metric)",
    )),
    Migration(2, "one row per result identity; earlier duplicates move to the table `duplicates`", (
        "CREATE TABLE IF NOT EXISTS duplicates AS SELECT * FROM results WHERE 1 = 0",
        f"INSERT INTO duplicates SELECT * FROM results WHERE id NOT IN ({_KEEP_FIRST})",
        f"DELETE FROM results WHERE id NOT IN ({_KEEP_FIRST})",
        f"CREATE UNIQUE INDEX IF NOT EXISTS results_identity ON results ({IDENTITY_SQL})",
    )),
    Migration(3, "uncertainty: each result's interval record and its per-prompt values (JSON)", (
        AddColumn("results", "interval", "TEXT"),
        AddColumn("results", "item_values", "TEXT"),
        AddColumn("duplicates", "interval", "TEXT"),
        AddColumn("duplicates", "item_values", "TEXT"),
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1)), "migrations must be numbered 1..N"


def pending(found: int) -> list[Migration]:
    return [m for m in MIGRATIONS if m.version > found]
