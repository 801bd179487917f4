"""Names that moved, kept importable from their old module for one release with a DeprecationWarning.

    __getattr__ = moved_names(__name__, {"old_name": "new.home.module:new_name"})

The new home is imported by name when the old name is first used, so the old module never imports a
module above it (the layers of DESIGN.md hold, and no import circle forms).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_names(module: str, moves: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` serving each old name in `moves` from its "package.module:name" target."""

    def __getattr__(name: str) -> Any:
        if name not in moves:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target_module, target = moves[name].split(":")
        warnings.warn(f"{module}.{name} moved to {target_module}.{target}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target_module), target)

    return __getattr__
