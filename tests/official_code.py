"""The official scoring code of GenEval and DPG-Bench, read at test time when a copy is at hand.

The official files cannot be committed (not ours) nor fetched in CI (no network). When
`$T2IBENCH_OFFICIAL_SRC` points at a folder holding them (`geneval/evaluation/evaluate_images.py`,
`geneval/evaluation/summary_scores.py`, `ELLA/dpg_bench/compute_dpg_bench.py`), the replay tests also run
the official functions themselves on the same recorded outputs; each file must be the pinned version
(its git blob id at the pinned commit). Without the folder those tests skip and the hand-derived
expectations (written from the same official rules) still run.

    mkdir -p $DIR/geneval/evaluation $DIR/ELLA/dpg_bench
    git -C geneval show af4902f2:evaluation/evaluate_images.py > $DIR/geneval/evaluation/evaluate_images.py
    git -C geneval show af4902f2:evaluation/summary_scores.py  > $DIR/geneval/evaluation/summary_scores.py
    git -C ELLA show 3c228f1d:dpg_bench/compute_dpg_bench.py   > $DIR/ELLA/dpg_bench/compute_dpg_bench.py
"""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

import pytest

PINNED_BLOBS = {
    "geneval/evaluation/evaluate_images.py": "5be79705391718e51139172bb65892fa5b7b78fb",  # djghosh13/geneval@af4902f2
    "geneval/evaluation/summary_scores.py": "6de7b08a6c8a28df60c39002b720196afbab58fd",
    "ELLA/dpg_bench/compute_dpg_bench.py": "aa2014bef0b7dd8e95e76693c0de7de65deba4dc",  # TencentQQGYLab/ELLA@3c228f1d
}


def official_file(rel: str) -> Path:
    root = os.environ.get("T2IBENCH_OFFICIAL_SRC")
    if not root or not (Path(root) / rel).is_file():
        pytest.skip(f"official source {rel} not available (set T2IBENCH_OFFICIAL_SRC)")
    path = Path(root) / rel
    raw = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
    assert blob == PINNED_BLOBS[rel], f"{path} is not the pinned official file (git blob {blob})"
    return path


def official_functions(rel: str, names: list[str], env: dict) -> dict:
    """Execute only the named top-level functions of an official file (its imports of unavailable
    libraries such as mmdet or modelscope are not executed) in `env`, which supplies their globals."""
    tree = ast.parse(official_file(rel).read_text())
    keep = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = set(names) - {n.name for n in keep}
    assert not missing, f"{rel} has no function(s) {missing}"
    module = ast.Module(body=keep, type_ignores=[])
    exec(compile(module, str(official_file(rel)), "exec"), env)  # noqa: S102 (pinned official file, test only)
    return {n: env[n] for n in names}


def official_module(rel: str, name: str):
    """Import a whole official file as a module (all its imports must be installed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, official_file(rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
