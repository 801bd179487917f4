"""The CPU-torchvision fix: needed here, effective, and inert where torchvision's ops load."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from t2ibench.compat import torchvision_ops

SITE = sysconfig.get_paths()["purelib"]
TV_DIR = Path(SITE) / "torchvision"
NEEDS_FIX = TV_DIR.is_dir() and not torchvision_ops.compiled_ops_load(TV_DIR)


def _python(code: str, *, site_hooks: bool) -> subprocess.CompletedProcess:
    # -S skips site-packages' .pth hooks; the path is then added by hand, without the hooks.
    prelude = "" if site_hooks else f"import sys; sys.path.append({SITE!r}); "
    args = [sys.executable] + ([] if site_hooks else ["-S"]) + ["-c", prelude + code]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_scorer_libraries_import_with_the_installed_hook():
    proc = _python("import torchvision, open_clip, torch_fidelity, timm; "
                   "import torchvision.transforms as T; print(T.Resize(8))", site_hooks=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(not NEEDS_FIX, reason="torchvision's compiled ops load here; the fix is not needed")
def test_without_the_hook_torchvision_fails_and_with_it_imports():
    broken = _python("import torchvision", site_hooks=False)
    assert broken.returncode != 0 and "torchvision::nms" in broken.stderr
    fixed = _python("import t2ibench.compat.torchvision_ops as h; h.install_import_hook(); "
                    "import torchvision, sys; "
                    "assert not any(isinstance(f, h._FirstImportHook) for f in sys.meta_path)", site_hooks=False)
    assert fixed.returncode == 0, fixed.stderr[-2000:]


def test_compiled_ops_probe_tells_loadable_from_broken_libraries(tmp_path):
    import torch

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    shutil.copy(next(Path(torch.__file__).parent.joinpath("lib").glob("libc10.so*")), good / "_C.so")
    (bad / "_C.so").write_bytes(b"not a shared object")
    assert torchvision_ops.compiled_ops_load(good)
    assert not torchvision_ops.compiled_ops_load(bad)
    assert not torchvision_ops.compiled_ops_load(tmp_path)  # no library at all


def test_fix_is_inert_when_compiled_ops_load(monkeypatch):
    # Let the start-up hook do its one-shot work first: find_spec("torchvision") inside
    # define_missing_ops would otherwise fire it under the patch below and leave this process broken.
    import torchvision  # noqa: F401

    monkeypatch.setattr(torchvision_ops, "compiled_ops_load", lambda _dir: True)
    monkeypatch.setattr(torchvision_ops, "_library", None)
    assert torchvision_ops.define_missing_ops() == []
    assert torchvision_ops._library is None
