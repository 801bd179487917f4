"""A throwaway PostgreSQL server for the tests and CI: Debian's `postgresql` binaries, a temporary data
directory, a local TCP port (127.0.0.1) with password authentication, stopped when done.

    python3 tests/pg_server.py start DIR PORT   # PORT 0: any free one; prints the admin URL (export it as T2IBENCH_TEST_PG_URL)
    python3 tests/pg_server.py stop DIR

The tests take the server from $T2IBENCH_TEST_PG_URL (`.ci/run` starts one); without it, the session
fixture `pg_server_url` starts its own here when the binaries are installed, and the PostgreSQL cases
are skipped, with the reason, only when they are not.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ENV = "T2IBENCH_TEST_PG_URL"
SUPERUSER = "t2ibench"


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).resolve().parent if which else None


def _as_server_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as Debian's `postgres` account then.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start(data_dir: Path, port: int, password: str | None = None) -> str:
    """Start a server in `data_dir` (created, must not exist) on 127.0.0.1:`port`; returns its admin URL."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    password = password or "pw-" + secrets.token_hex(8)
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True)
    pwfile = data_dir / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        for parent in data_dir.parents:  # the server user must reach its directory
            if parent == Path("/") or os.stat(parent).st_mode & 0o001:
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    pgdata = data_dir / "data"
    subprocess.run(_as_server_user([str(binaries / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "-E", "UTF8",
                                    "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
                                    f"--pwfile={pwfile}"]), check=True, capture_output=True)
    pwfile.unlink()
    # A test server: durability settings off (a crash of the server is not what the tests exercise;
    # a killed client is, and that needs no fsync).
    options = (f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=200")
    subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(pgdata), "-o", options,
                                    "-l", str(data_dir / "server.log"), "-w", "-t", "60", "start"]),
                   check=True, capture_output=True)
    return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/postgres"


def stop(data_dir: Path) -> None:
    binaries = bin_dir()
    pgdata = Path(data_dir).resolve() / "data"
    if binaries and (pgdata / "postmaster.pid").exists():
        subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w",
                                        "stop"]), capture_output=True, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server_url():
    """Admin URL of a running PostgreSQL server ($T2IBENCH_TEST_PG_URL, else a throwaway one)."""
    url = os.environ.get(ENV)
    if url:
        yield url
        return
    if bin_dir() is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql (./install.sh --postgres), "
                    f"or point ${ENV} at a server")
    root = Path(tempfile.mkdtemp(prefix="t2ibench-pg-")) / "server"
    try:
        url = start(root, free_port())
    except (subprocess.CalledProcessError, OSError) as exc:
        log = root / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else getattr(exc, "stderr", b"").decode(errors="replace")
        pytest.fail(f"could not start a throwaway PostgreSQL server: {exc}\n{detail}")
    try:
        yield url
    finally:
        stop(root)
        shutil.rmtree(root.parent, ignore_errors=True)


def new_database(admin_url: str) -> str:
    """A fresh, empty database on the server; returns its URL (same user and password)."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")  # a name we made, not user text
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty results store location on each backend: a SQLite path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite")
        return
    admin = request.getfixturevalue("pg_server_url")
    url = new_database(admin)
    try:
        yield url
    finally:
        drop_database(admin, url)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "start":
        print(start(Path(sys.argv[2]), int(sys.argv[3]) or free_port()))
    elif len(sys.argv) == 3 and sys.argv[1] == "stop":
        stop(Path(sys.argv[2]))
    else:
        sys.exit("usage: pg_server.py start DIR PORT | stop DIR")
