"""Where a results store lives: a SQLite file or a PostgreSQL database, parsed once from `--db`,
`$T2IBENCH_DB` or the trainer's `eval.db`.

    results.sqlite | sqlite:///relative.sqlite | sqlite:////abs/path.sqlite    -> SQLite file
    postgresql://user@host:5432/dbname (also postgres://, ?host=/socket/dir)   -> PostgreSQL

A password may sit in the URL, but everything shown to a person (`str(location)`, messages, the
site, saved configs) is the redacted form, which never contains it. libpq itself reads
`$PGPASSWORD` and `~/.pgpass` when the URL has no password.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from t2ibench.errors import UserError

DEFAULT_DB = Path("results") / "t2ibench.sqlite"
POSTGRES_SCHEMES = ("postgresql", "postgres")
USAGE = "a file path, sqlite:///PATH or postgresql://user@host:port/dbname"


@dataclass(frozen=True)
class StoreLocation:
    kind: str  # "sqlite" | "postgresql"
    path: Path | None = None  # SQLite file
    # PostgreSQL: the URL exactly as given (may hold a password: never shown), and its parts for messages
    url: str | None = field(default=None, repr=False)
    host: str = ""
    port: int | None = None
    dbname: str = ""
    user: str = ""
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        if self.kind == "sqlite":
            return str(self.path)
        # The URL as given, less its password (in the netloc or a password= parameter).
        parts = urlsplit(self.url or "")
        netloc = parts.netloc.rpartition("@")
        userinfo = netloc[0].partition(":")[0]
        netloc = f"{userinfo}@{netloc[2]}" if netloc[1] else netloc[2]
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"],
                          safe="/")
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")

    @property
    def server(self) -> str:
        """host:port as a person would name the server (a socket directory for local sockets)."""
        host = self.host or "local socket"
        return f"{host}:{self.port or 5432}"

    def scrub(self, text: str) -> str:
        """`text` with this location's password (raw and URL-quoted) replaced by ***."""
        if self.password:
            for secret in {self.password, self.url_password}:
                if secret:
                    text = text.replace(secret, "***")
        return text

    @property
    def url_password(self) -> str | None:
        if not self.url:
            return None
        return urlsplit(self.url).password


def parse_location(path_or_url: str | os.PathLike[str]) -> StoreLocation:
    text = os.fspath(path_or_url).strip()
    if not text:
        raise UserError("results store: empty location; give " + USAGE)
    if "://" not in text:
        return StoreLocation("sqlite", path=Path(text).expanduser())
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite":
        # SQLAlchemy style: sqlite:///relative/path, sqlite:////absolute/path
        if not rest.startswith("/") or rest == "/":
            raise UserError("results store: write sqlite:///relative/path or sqlite:////absolute/path")
        return StoreLocation("sqlite", path=Path(rest[1:]).expanduser())
    if scheme in POSTGRES_SCHEMES:
        return _parse_postgres(text)
    # Only the scheme is echoed: the rest of an unknown URL may hold a password.
    raise UserError(f"results store: unsupported URL scheme {scheme!r}; give {USAGE}")


def _parse_postgres(url: str) -> StoreLocation:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise UserError("results store: the PostgreSQL URL has a port that is not a number") from None
    query = parse_qs(parts.query)
    host = unquote(parts.hostname or "") or (query.get("host") or [""])[0]
    if "port" in query and port is None:
        try:
            port = int(query["port"][0])
        except ValueError:
            raise UserError("results store: the PostgreSQL URL has a port that is not a number") from None
    dbname = unquote(parts.path.lstrip("/")) or (query.get("dbname") or [""])[0]
    if not dbname:
        raise UserError("results store: name the database, as in postgresql://user@host:port/dbname")
    password = unquote(parts.password) if parts.password else (query.get("password") or [None])[0]
    return StoreLocation("postgresql", url=url, host=host, port=port, dbname=dbname,
                         user=unquote(parts.username or "") or (query.get("user") or [""])[0], password=password)


def default_location() -> StoreLocation:
    """`$T2IBENCH_DB` if set, else `./results/t2ibench.sqlite` (relative to the working directory)."""
    env = os.environ.get("T2IBENCH_DB")
    return parse_location(env) if env else StoreLocation("sqlite", path=DEFAULT_DB)


def redact(path_or_url: str | None) -> str | None:
    """A store location as it may be shown or saved: a PostgreSQL password removed, anything else as is."""
    if not path_or_url or "://" not in str(path_or_url):
        return path_or_url
    try:
        return str(parse_location(path_or_url))
    except UserError:
        return str(path_or_url).partition("://")[0] + "://(unparsable URL)"
