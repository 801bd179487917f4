"""Where t2ibench keeps its caches: `$T2IBENCH_CACHE`, else `$XDG_CACHE_HOME/t2ibench`, else
`~/.cache/t2ibench` (prompt downloads, FID real-side statistics, file hashes, compute counts)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("T2IBENCH_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "t2ibench"
