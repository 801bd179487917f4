"""Let a CUDA build of torchvision import against a CPU-only torch.

PyPI ships no CPU torchvision for torch 2.13. The CUDA wheel's `_C.so` cannot load without the CUDA
libraries, torchvision swallows that failure, and then `_meta_registrations.py` calls
`register_fake("torchvision::nms")` on an op that was never defined, so `import torchvision` raises
(and with it open_clip, timm, torch-fidelity, image-reward and hpsv2).

The fix defines the schemas of the two ops that are registered unguarded (`nms`, `qnms`), without
kernels, before torchvision is first imported, and only when `_C` really cannot be loaded. Nothing
the scorers use needs those kernels. It runs from a `.pth` start-up hook as a meta-path finder that
acts on the first `import torchvision` only, so Python start-up pays nothing for it.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.util
import sys
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the torch.library.Library alive; its ops vanish when it is collected
PTH_NAME = "t2ibench-torchvision-compat.pth"


def compiled_ops_load(torchvision_dir: Path) -> bool:
    """True when torchvision's own compiled extension loads (then no fix is needed)."""
    libs = sorted(torchvision_dir.glob("_C*.so")) + sorted(torchvision_dir.glob("_C*.pyd"))
    if not libs:
        return False
    try:
        ctypes.CDLL(str(libs[0]))
        return True
    except OSError:
        return False


def define_missing_ops() -> list[str]:
    """Define the op schemas torchvision registers fakes for, when its `_C` cannot load.

    Returns the names of the ops it defined (empty when nothing was needed).
    """
    global _library
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return []
    if compiled_ops_load(Path(next(iter(spec.submodule_search_locations)))):
        return []
    import torch

    missing = [name for name in _SCHEMAS if not _op_exists(torch, name)]
    if missing and _library is None:
        _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 (kept alive on purpose)
        for name in missing:
            _library.define(_SCHEMAS[name])
    return missing


def _op_exists(torch, name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


class _FirstImportHook(importlib.abc.MetaPathFinder):
    """Runs `define_missing_ops` just before the first `import torchvision`, then removes itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            try:
                define_missing_ops()
            except Exception:  # never break an import that might have worked on its own
                pass
        return None


def install_import_hook() -> None:
    """Called from the `.pth` file at interpreter start-up."""
    if "torchvision" in sys.modules or any(isinstance(f, _FirstImportHook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _FirstImportHook())


def write_pth(site_packages: Path) -> Path:
    path = site_packages / PTH_NAME
    path.write_text(
        "import t2ibench.compat.torchvision_ops as _t2ib_tv; _t2ib_tv.install_import_hook()\n"
    )
    return path
