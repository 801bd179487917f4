"""The results store through the command line on both backends: merge, import twice, build/fit never
counting a result twice, and bad store locations (one line, exit 2, nothing changed, no password)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t2ibench.errors import UserError
from t2ibench.store import SCHEMA_VERSION, ResultRow, ResultsStore

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    """`t2ibench ARGS` in this process (as the command line runs it; an uncaught exception fails the test)."""
    from t2ibench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return subprocess.CompletedProcess(["t2ibench", *args], rc, out.getvalue(), err.getvalue())


def cli_process(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`t2ibench ARGS` as a separate process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "t2ibench", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO, check=False)


def _row(run: str, step: int, value: float = 0.5, params: int = 10_000_000) -> ResultRow:
    return ResultRow(run=run, metric="tifa", version="tifa-1.0", value=value, n_items=10, variant=run, family="unet",
                     step=step, train_flops=6.0 * params * 1000 * step, params=params, gmacs=1.0,
                     manifest_hash="m" * 16, ckpt_hash=f"{run}-{step}", manifest={"protocol": "p"})


def _study(n_runs: int = 3) -> list[ResultRow]:
    return [_row(f"r{k}", s, 0.3 + 0.1 * k + 0.01 * s, params=10 ** (6 + k)) for k in range(n_runs) for s in (1, 2)]


def test_merge_import_build_fit_count_each_result_once(store_url, tmp_path):
    study = _study()
    a, b = ResultsStore(tmp_path / "job-a.sqlite"), ResultsStore(tmp_path / "job-b.sqlite")
    a.add(study[:4])
    b.add(study[2:])  # two rows in both stores
    first = cli("leaderboard", "merge", str(a.path), str(b.path), "--into", store_url)
    assert first.returncode == 0, first.stderr
    assert "4 added, 0 already there" in first.stdout and "2 added, 2 already there" in first.stdout
    assert len(ResultsStore(store_url)) == 6
    again = cli("leaderboard", "merge", str(a.path), str(b.path), "--into", store_url, "--format", "json")
    assert again.returncode == 0, again.stderr
    assert [s["added"] for s in json.loads(again.stdout)["sources"]] == [0, 0]
    # Export, then import the export twice: nothing new.
    export = tmp_path / "all.csv"
    assert cli("leaderboard", "export", str(export), "--db", store_url).returncode == 0
    for _ in range(2):
        res = cli("leaderboard", "import", str(export), "--db", store_url)
        assert res.returncode == 0 and "0 added, 6 already there" in res.stdout, res.stdout + res.stderr
    built = cli("leaderboard", "build", "--db", store_url, "--out", str(tmp_path / "site"), "--format", "json")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["results"] == 6
    fit = cli("leaderboard", "fit", "--x", "params", "--db", store_url, "--no-plot", "--format", "json")
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)["n_points"] == 3  # one (latest) point per run
    # A conflicting row: reported on stderr, exit 1, the stored value kept.
    c = ResultsStore(tmp_path / "job-c.sqlite")
    c.add(_row("r0", 2, value=0.99, params=10 ** 6))
    res = cli("leaderboard", "merge", str(c.path), "--into", store_url)
    assert res.returncode == 1
    assert "conflict: r0 step 2 tifa" in res.stderr and "not 0.99" in res.stderr
    assert [r.value for r in ResultsStore(store_url).query(run="r0", step=2)] == [study[1].value]
    missing = cli("leaderboard", "merge", str(tmp_path / "nope.sqlite"), "--into", store_url)
    assert missing.returncode == 2 and "no results store at" in missing.stderr
    assert not (tmp_path / "nope.sqlite").exists() and len(ResultsStore(store_url)) == 6


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(res: subprocess.CompletedProcess, secret: str) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert secret not in res.stdout + res.stderr
    return lines[0]


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    ResultsStore(tmp_path / "good.sqlite").add(_study(1))
    assert cli("leaderboard", "build", "--db", str(tmp_path / "good.sqlite"), "--out", str(site)).returncode == 0
    return site


def test_unsupported_scheme_and_unreachable_server(tmp_path):
    secret = "hunter2-" + os.urandom(4).hex()
    site = _site(tmp_path)
    before = _checksums(site)
    line = _one_line_error(cli_process("leaderboard", "build", "--db", f"mysql://me:{secret}@db/res", "--out", str(site)),
                           secret)
    assert "unsupported URL scheme 'mysql'" in line
    # A port nobody listens on: refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    line = _one_line_error(cli("leaderboard", "build", "--db", f"postgresql://me:{secret}@127.0.0.1:{closed}/res",
                               "--out", str(site)), secret)
    assert f"127.0.0.1:{closed}" in line and "cannot reach" in line
    # A server that accepts the connection and never answers: the connect timeout, well within 10 s
    # (timed in-process: the command's own start-up on a loaded CI machine is not the store's doing).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"postgresql://me:{secret}@127.0.0.1:{port}/res"
        t0 = time.monotonic()
        with pytest.raises(UserError, match=f"cannot reach a PostgreSQL server at 127.0.0.1:{port}") as err:
            ResultsStore(url).query()
        elapsed = time.monotonic() - t0
        assert elapsed < 10, f"took {elapsed:.1f} s"
        assert secret not in str(err.value)
        line = _one_line_error(cli("leaderboard", "build", "--db", url, "--out", str(site)), secret)
    assert f"127.0.0.1:{port}" in line and "no answer" in line
    assert _checksums(site) == before


def test_wrong_password_and_newer_schema(pg_server_url, store_url, tmp_path):
    store = ResultsStore(store_url)
    store.add(_study(2))
    rows = store.query()
    site = _site(tmp_path)
    before = _checksums(site)
    if store_url.startswith("postgresql://"):
        wrong = "wrong-" + os.urandom(4).hex()
        user, rest = store_url.split("://", 1)[1].split("@", 1)
        bad = f"postgresql://{user.split(':')[0]}:{wrong}@{rest}"
        line = _one_line_error(cli("leaderboard", "build", "--db", bad, "--out", str(site)), wrong)
        assert "refused the password" in line and user.split(":")[0] in line
        real = user.split(":", 1)[1]
        assert real not in line
    # A store of a newer schema version: refused by every command, left as it was.
    if store_url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as con:
            con.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
        password = store_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    else:
        import sqlite3

        con = sqlite3.connect(store_url)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
        con.commit()
        con.close()
        password = "no password in a path"
    export = tmp_path / "x.json"
    ResultsStore(tmp_path / "good.sqlite").export(export)
    for args in (["build", "--db", store_url, "--out", str(site)], ["import", str(export), "--db", store_url],
                 ["merge", str(tmp_path / "good.sqlite"), "--into", store_url]):
        line = _one_line_error(cli("leaderboard", *args), password)
        assert f"schema version {SCHEMA_VERSION + 1}, newer" in line
    assert _checksums(site) == before
    if store_url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as con:
            con.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    else:
        import sqlite3

        con = sqlite3.connect(store_url)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        con.commit()
        con.close()
    assert ResultsStore(store_url).query() == rows


def test_password_from_pgpassword_or_pgpass(pg_server_url, monkeypatch, tmp_path):
    from pg_server import drop_database, new_database

    url = new_database(pg_server_url)
    try:
        user_pw, rest = url.split("://", 1)[1].split("@", 1)
        user, password = user_pw.split(":", 1)
        bare = f"postgresql://{user}@{rest}"
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
        monkeypatch.delenv("PGPASSWORD", raising=False)
        with pytest.raises(UserError, match="wants a password and none was given"):
            ResultsStore(bare).query()
        monkeypatch.setenv("PGPASSWORD", password)
        assert ResultsStore(bare).add(_study(1)) == 2
        monkeypatch.delenv("PGPASSWORD")
        host, port_db = rest.split(":", 1)
        port, db = port_db.split("/", 1)
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"{host}:{port}:{db}:{user}:{password}\n")
        pgpass.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
        assert len(ResultsStore(bare)) == 2
    finally:
        drop_database(pg_server_url, url)
