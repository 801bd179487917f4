"""Deprecated alias of `t2ibench.train` (and `trainers.curation` of `t2ibench.data`), kept for one release.

`import trainers.loop` still works and warns once; new code imports `t2ibench.train` / `t2ibench.data`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_RENAMES = {"trainers.curation": "t2ibench.data", "trainers.checkpoint": "t2ibench.train.state",
            "trainers": "t2ibench.train"}

warnings.warn("the `trainers` package is now `t2ibench.train` (curation tools: `t2ibench.data`); "
              "`trainers` will be removed in the next release", DeprecationWarning, stacklevel=2)


def _target(name: str) -> str:
    for old, new in _RENAMES.items():  # longest prefixes first, by insertion order
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    raise ModuleNotFoundError(name)


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return importlib.import_module(_target(spec.name))

    def exec_module(self, module):  # the aliased module is already executed
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("trainers."):
            return importlib.util.spec_from_loader(fullname, _AliasLoader())
        return None


sys.meta_path.insert(0, _AliasFinder())
