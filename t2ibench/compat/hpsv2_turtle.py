"""hpsv2 1.2's vendored open_clip has a stray `from turtle import forward` in factory.py (an editor
auto-import; the name is never used). `turtle` needs tkinter, which headless Pythons often lack, and
then `import hpsv2.img_score` fails. When, and only when, `turtle` cannot be imported, register an
empty stand-in module whose `forward` raises if anything ever calls it.
"""

from __future__ import annotations

import importlib
import sys
import types

STAND_IN_DOC = "t2ibench stand-in for the standard library turtle module (tkinter is unavailable)"


def _forward(*_args, **_kwargs):
    raise RuntimeError("turtle graphics are unavailable (no tkinter); " + STAND_IN_DOC)


def ensure_turtle_importable() -> bool:
    """True when a stand-in had to be registered; False when the real `turtle` imports (then nothing changes)."""
    if sys.modules.get("turtle") is not None:
        return False
    try:
        importlib.import_module("turtle")
        return False
    except ImportError:
        pass
    stand_in = types.ModuleType("turtle", STAND_IN_DOC)
    stand_in.forward = _forward
    sys.modules["turtle"] = stand_in
    return True
