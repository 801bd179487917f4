"""Where a prompt set's files come from: manifests, checksums, local copies, upstream downloads.

A manifest (`prompts/<name>.json` at the top of the repository) names each file of a set with its
upstream at a pinned commit (`url`), its `sha256`, its license and record count, and `local_path`,
where the file sits inside a local prompts directory laid out like `shared/data/prompts/`
(`tifa/tifa_v1.0_text_inputs.json`, `coco/coco_30k.csv`, ...).

A file is looked up, in order, in the local prompts directory (`--prompts-dir`, else
`$T2IBENCH_PROMPTS_DIR`), in the download cache (`$T2IBENCH_CACHE/prompts`, default
`~/.cache/t2ibench/prompts`), then fetched from its upstream into the cache. Every copy is checked
against the manifest's sha256 before use, wherever it came from.

Checksum convention: sha256 of the file's bytes after removing a leading UTF-8 byte-order mark
(identical to plain sha256 for files without one). Copies of the DrawBench sheet differ only in it.
A file whose sha256 could not be recorded (TIFA's question file, DPG-Bench's dpg_bench.csv, the HPSv2
and GenAI-Bench files: not reachable when the manifests were written) is checked by its git blob SHA-1
from the pinned tree when the manifest has one, else it is used unverified and its sha256 is recorded
in every result. The record count of every set is checked against the manifest's `count`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2ibench.atomic import write_bytes_atomic
from t2ibench.errors import UserError

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "prompts"
_BOM = b"\xef\xbb\xbf"
_FETCH_TIMEOUT_S = 60


@dataclass(frozen=True)
class FileSpec:
    key: str
    local_path: str
    url: str | None = None
    sha256: str | None = None
    git_blob_sha1: str | None = None
    hf_dataset: str | None = None
    hf_path: str | None = None
    revision: str | None = None
    count: int | None = None

    @property
    def filename(self) -> str:
        return Path(self.local_path).name


def manifest_names() -> list[str]:
    if not MANIFEST_DIR.is_dir():
        return []
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))


def read_manifest(name: str) -> dict[str, Any]:
    path = MANIFEST_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(manifest_names()) or "none found"
        raise UserError(f"unknown prompt set {name!r}; known: {known} (or give a .txt/.csv/.jsonl/.json file)")
    return json.loads(path.read_text())


def file_specs(manifest: dict[str, Any]) -> dict[str, FileSpec]:
    out = {}
    for key, f in manifest["files"].items():
        out[key] = FileSpec(key=key, local_path=f["local_path"], url=f.get("url"), sha256=f.get("sha256"),
                            git_blob_sha1=f.get("git_blob_sha1"), hf_dataset=f.get("hf_dataset"),
                            hf_path=f.get("path") if f.get("hf_dataset") else None,
                            revision=f.get("revision"), count=f.get("count"))
    return out


def content_sha256(data: bytes) -> str:
    """The manifests' checksum: sha256 after removing a leading UTF-8 BOM."""
    return hashlib.sha256(data[len(_BOM):] if data.startswith(_BOM) else data).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def cache_dir() -> Path:
    from t2ibench.paths import cache_root

    return cache_root() / "prompts"


def local_prompts_dir(local_dir: str | os.PathLike[str] | None) -> Path | None:
    chosen = local_dir if local_dir is not None else os.environ.get("T2IBENCH_PROMPTS_DIR")
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise UserError(f"prompts directory {path} does not exist")
    return path


def verify(set_name: str, spec: FileSpec, path: Path) -> str:
    """Check `path` against the manifest; returns its sha256 (BOM-stripped convention)."""
    data = path.read_bytes()
    digest = content_sha256(data)
    fix = f"replace it with the pinned copy (`t2ibench prompts fetch {set_name}` downloads it)"
    if spec.sha256 and digest != spec.sha256:
        raise UserError(f"prompt set {set_name!r}: {path} has sha256 {digest[:12]}..., the manifest pins "
                        f"{spec.sha256[:12]}... (a different version of {spec.filename}); {fix}")
    if not spec.sha256 and spec.git_blob_sha1 and git_blob_sha1(data) != spec.git_blob_sha1:
        raise UserError(f"prompt set {set_name!r}: {path} (sha256 {digest[:12]}...) is not the pinned {spec.filename} "
                        f"(git blob {git_blob_sha1(data)[:12]}..., expected {spec.git_blob_sha1[:12]}...); {fix}")
    return digest


def _local_candidates(root: Path, spec: FileSpec) -> list[Path]:
    # shared/data layout first (tifa/x.json), then a flat directory (x.json)
    return [root / spec.local_path, root / spec.filename]


def resolve_spec(set_name: str, spec: FileSpec, local_dir: str | os.PathLike[str] | None = None,
                 fetch: bool = True) -> tuple[Path, str]:
    """(verified path, sha256) of one manifest file: local dir, then cache, then upstream."""
    root = local_prompts_dir(local_dir)
    if root is not None:
        for cand in _local_candidates(root, spec):
            if cand.is_file():
                return cand, verify(set_name, spec, cand)
    cached = cache_dir() / set_name / spec.local_path
    if cached.is_file():
        return cached, verify(set_name, spec, cached)
    where = f"not in {root}" if root is not None else "no --prompts-dir or $T2IBENCH_PROMPTS_DIR given"
    if not fetch:
        raise UserError(f"prompt set {set_name!r}: {spec.filename} not available locally ({where}); "
                        f"run `t2ibench prompts fetch {set_name}`")
    try:
        _download(spec, cached)
    except UserError:
        raise
    except Exception as exc:  # network errors of every flavour: one line, with both ways out
        source = spec.url or f"hf dataset {spec.hf_dataset}:{spec.hf_path}"
        raise UserError(f"prompt set {set_name!r}: {spec.filename} not found locally ({where}) and fetching "
                        f"{source} failed ({type(exc).__name__}: {str(exc)[:120]}); pass --prompts-dir DIR holding "
                        f"{spec.local_path}") from None
    try:
        return cached, verify(set_name, spec, cached)
    except UserError:
        cached.unlink(missing_ok=True)  # never keep a wrong download in the cache
        raise


def _download(spec: FileSpec, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if spec.hf_dataset:
        if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes"):
            raise ConnectionError("HF_HUB_OFFLINE is set")
        from huggingface_hub import hf_hub_download

        got = Path(hf_hub_download(spec.hf_dataset, spec.hf_path, repo_type="dataset", revision=spec.revision))
        data = got.read_bytes()
    else:
        import urllib.request

        if not spec.url:
            raise UserError(f"{spec.filename}: the manifest names no upstream URL")
        with urllib.request.urlopen(spec.url, timeout=_FETCH_TIMEOUT_S) as resp:  # noqa: S310 (pinned https URL)
            data = resp.read()
    write_bytes_atomic(dest, data)
