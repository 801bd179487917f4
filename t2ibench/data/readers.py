"""Stream image-text samples from the three dataset kinds, shard by shard.

Kinds (the on-disk formats agreed with t2ibench/train/data.py; see docs/data.md):
- ``webdataset``: a directory of ``*.tar`` shards (or one ``.tar`` file, or a glob); members grouped by
  webdataset's key rule (basename up to the first dot): image ``.jpg/.jpeg/.png/.webp``, caption ``.txt``
  or ``.json`` (``"caption"``, fallback ``"text"``), synthetic captions ``.syn.json``.
- ``folder``: images anywhere under a directory, caption sidecars ``<stem>.txt`` or ``<stem>.json``,
  synthetic captions ``<stem>.syn.json``. Shards are fixed-size chunks of the sorted image list.
- ``parquet``: ``*.parquet`` files; image bytes column ``image`` (raw bytes or an HF-datasets
  ``{"bytes", "path"}`` struct), caption column ``caption`` (fallback ``text``), optional ``syn_captions``
  (the synthetic record as JSON text). Shards are row groups.

A shard that cannot be opened or is truncated is counted (``bad_shards``), never a crash; samples read
before the damage are kept. Image decoding is separate (`decode_image`): the caller counts failures.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from t2ibench.atomic import write_bytes_atomic as atomic_write_bytes  # noqa: F401 (re-exported)
from t2ibench.errors import UserError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
SYN_EXT = "syn.json"
SYN_COLUMN = "syn_captions"
SYN_FORMAT_VERSION = 1
PIL_FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


@dataclass
class Sample:
    """One raw (undecoded) sample. `record` is the parsed ``.json`` record (or parquet row extras)."""

    key: str
    image: bytes | None
    ext: str
    caption: str | None
    record: dict = field(default_factory=dict)
    syn: dict | None = None
    extra: dict[str, bytes] = field(default_factory=dict)  # other webdataset members, copied through


@dataclass
class ShardStats:
    bad_shard: bool = False
    error: str = ""


@dataclass
class Shard:
    """A resumable unit of work: a tar file, a chunk of a folder, or a parquet row group."""

    name: str  # unique and filesystem-safe within a dataset
    kind: str
    source: Path
    members: tuple = ()  # folder: image paths; parquet: (row_group,)

    def samples(self, stats: ShardStats) -> Iterator[Sample]:
        reader = {"webdataset": _tar_samples, "folder": _folder_samples, "parquet": _parquet_samples}[self.kind]
        yield from reader(self, stats)


@dataclass
class Dataset:
    kind: str
    root: Path
    shards: list[Shard]


# ----------------------------------------------------------------------------------------------
# discovery

def detect_kind(path: Path) -> str:
    if path.is_file():
        if path.suffix == ".tar":
            return "webdataset"
        if path.suffix == ".parquet":
            return "parquet"
        raise UserError(f"{path}: not a .tar shard, a .parquet file or a directory")
    if not path.is_dir():
        raise UserError(f"dataset not found: {path}")
    if any(path.glob("*.tar")):
        return "webdataset"
    if any(path.glob("*.parquet")):
        return "parquet"
    return "folder"


def open_dataset(spec: str | Path, kind: str | None = None, chunk_size: int = 1000) -> Dataset:
    """Find the shards of a dataset. `spec` is a directory, a file or a glob of shards."""
    spec = str(spec)
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec))
        if not files:
            raise UserError(f"no files match {spec}")
        kind = kind or detect_kind(files[0])
        root = files[0].parent
    else:
        root = Path(spec).expanduser()
        kind = kind or detect_kind(root)
        if root.is_file():
            files, root = [root], root.parent
        elif kind == "webdataset":
            files = sorted(root.glob("*.tar"))
        elif kind == "parquet":
            files = sorted(root.glob("*.parquet"))
        else:
            files = []
    if kind == "webdataset":
        shards = [Shard(f.stem, kind, f) for f in files]
    elif kind == "parquet":
        shards = _parquet_shards(files)
    elif kind == "folder":
        images = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTS)
        shards = [Shard(f"chunk-{i // chunk_size:06d}", kind, root, tuple(images[i:i + chunk_size]))
                  for i in range(0, len(images), chunk_size)]
    else:
        raise UserError(f"unknown dataset kind {kind!r} (webdataset, folder or parquet)")
    if not shards:
        raise UserError(f"{spec}: no {kind} samples found")
    return Dataset(kind, root, shards)


def _parquet_shards(files: list[Path]) -> list[Shard]:
    import pyarrow.parquet as pq

    shards = []
    for f in files:
        try:
            groups = pq.ParquetFile(f).num_row_groups
        except Exception:  # unreadable file: one shard that will report itself as bad
            groups = 1
        shards += [Shard(f"{f.stem}-rg{g:04d}", "parquet", f, (g,)) for g in range(groups)]
    return shards


# ----------------------------------------------------------------------------------------------
# per-kind readers

def caption_from(txt: bytes | str | None, record: dict) -> str | None:
    if txt is not None:
        text = txt.decode("utf-8", "replace") if isinstance(txt, bytes) else txt
        return text.strip()
    for key in ("caption", "text"):
        if isinstance(record.get(key), str):
            return record[key].strip()
    return None


def parse_syn(raw: bytes | str | dict | None) -> dict | None:
    """A synthetic-caption record, or None when absent or malformed (malformed records are ignored)."""
    if raw is None:
        return None
    try:
        rec = raw if isinstance(raw, dict) else json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    caps = rec.get("captions") if isinstance(rec, dict) else None
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps) or not caps:
        return None
    return rec


def _json_record(raw: bytes | None) -> dict:
    if raw is None:
        return {}
    try:
        rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return rec if isinstance(rec, dict) else {}


def _sample_from_members(key: str, members: dict[str, bytes]) -> Sample:
    ext = next((e for e in IMAGE_EXTS if e in members), "")
    record = _json_record(members.get("json"))
    syn = parse_syn(members.get(SYN_EXT)) or parse_syn(record.get(SYN_COLUMN))
    extra = {k: v for k, v in members.items() if k not in (ext, "txt", "json", SYN_EXT)}
    return Sample(key, members.get(ext) if ext else None, ext, caption_from(members.get("txt"), record),
                  record, syn, extra)


def tar_members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """(member, key, extension) of every regular file in a tar, named the webdataset way
    (`dir/key.ext.more` -> key `dir/key`, extension `ext.more`); other entries are skipped."""
    from webdataset.tariterators import base_plus_ext

    for info in tar:
        if not info.isreg():
            continue
        key, ext = base_plus_ext(info.name)
        if key is not None:
            yield info, key, ext


def _tar_samples(shard: Shard, stats: ShardStats) -> Iterator[Sample]:
    current_key, members = None, {}
    try:
        with tarfile.open(shard.source, mode="r|*") as tar:
            for info, key, ext in tar_members(tar):
                data = tar.extractfile(info).read()
                if key != current_key:
                    if current_key is not None:
                        yield _sample_from_members(current_key, members)
                    current_key, members = key, {}
                members[ext.lower()] = data
    except (tarfile.TarError, OSError, EOFError) as exc:
        stats.bad_shard, stats.error = True, f"{type(exc).__name__}: {exc}"
        return  # the sample being assembled when the shard broke is incomplete: drop it
    if current_key is not None:
        yield _sample_from_members(current_key, members)


def _read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _folder_samples(shard: Shard, stats: ShardStats) -> Iterator[Sample]:
    for img in shard.members:
        stem = img.with_suffix("")
        record = _json_record(_read_optional(stem.with_suffix(".json")))
        syn = parse_syn(_read_optional(Path(f"{stem}.{SYN_EXT}"))) or parse_syn(record.get(SYN_COLUMN))
        try:
            data = img.read_bytes()
        except OSError:
            data = None
        key = str(img.relative_to(shard.source).with_suffix("")).replace(os.sep, "/")
        yield Sample(key, data, img.suffix.lower().lstrip("."),
                     caption_from(_read_optional(stem.with_suffix(".txt")), record), record, syn)


def _parquet_samples(shard: Shard, stats: ShardStats) -> Iterator[Sample]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(shard.source).read_row_group(shard.members[0])
    except Exception as exc:  # pyarrow raises several types for damaged files
        stats.bad_shard, stats.error = True, f"{type(exc).__name__}: {exc}"
        return
    rows = table.to_pylist()
    names = table.column_names
    if "image" not in names:
        stats.bad_shard, stats.error = True, "no 'image' column"
        return
    for i, row in enumerate(rows):
        image = row.pop("image")
        path = ""
        if isinstance(image, dict):  # HF datasets Image feature
            path = image.get("path") or ""
            image = image.get("bytes")
        key = str(row.get("key") or row.get("__key__") or f"{shard.name}-{i:06d}")
        syn = parse_syn(row.pop(SYN_COLUMN, None))
        ext = Path(path).suffix.lower().lstrip(".") if path else ""
        yield Sample(key, image if isinstance(image, (bytes, bytearray)) else None, ext,
                     caption_from(None, row), row, syn)


# ----------------------------------------------------------------------------------------------
# decoding

def decode_image(data: bytes | None):
    """A fully decoded RGB PIL image, or None when the bytes are missing or not a readable image."""
    if not data:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decode everything now: truncated files fail here, not later
            fmt = im.format
            rgb = im.convert("RGB")
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        return None
    rgb.info["source_format"] = fmt
    return rgb


def image_ext(image, fallback: str) -> str:
    fmt = image.info.get("source_format") if image is not None else None
    return PIL_FORMAT_EXT.get(fmt or "", fallback or "jpg")


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())
