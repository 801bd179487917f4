"""hpsv2 1.2.0's wheel lacks its vendored open_clip's BPE vocabulary (`import hpsv2.img_score` then
fails). The file is byte-identical to the one open_clip ships, so install copies it across."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

VOCAB = "bpe_simple_vocab_16e6.txt.gz"


def repair() -> list[str]:
    hps = importlib.util.find_spec("hpsv2")
    oc = importlib.util.find_spec("open_clip")
    if hps is None or oc is None:
        return []
    target = Path(next(iter(hps.submodule_search_locations))) / "src" / "open_clip" / VOCAB
    source = Path(next(iter(oc.submodule_search_locations))) / VOCAB
    if target.exists() or not target.parent.is_dir() or not source.exists():
        return []
    shutil.copyfile(source, target)
    return [f"copied {VOCAB} into {target.parent}"]
