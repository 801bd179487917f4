"""Shard metadata for webdataset tar shards, written once, so a trainer starts in O(shards).

    <shard dir>/t2ibench_index.json        {"format", "version", "shards": [{"name", "bytes", "samples"}]}
    <shard dir>/_index/<shard stem>.idx    little-endian uint64, samples + 1 byte offsets: where each
                                           sample's first tar header starts, then where the last ends

A sample is the run of consecutive members sharing a webdataset key (readers.tar_members), so sample
i of a shard is the byte range [idx[i], idx[i+1]) and can be read with one seek. The trainer reads only
the JSON manifest at start-up (shard names, sizes, sample counts) and checks each shard's size with
one stat; a worker loads a shard's offsets when it first reads from that shard.

Written by `t2ibench data filter` for the shards it writes, or by `t2ibench data index DIR` for shards
made elsewhere (it reads every member header once; a shard that is already indexed and has not changed
size is not read again).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t2ibench.atomic import write_bytes_atomic
from t2ibench.data import readers
from t2ibench.errors import UserError

MANIFEST = "t2ibench_index.json"
OFFSETS_DIR = "_index"
FORMAT = "t2ibench-shard-index"
VERSION = 1
INDEX_COMMAND = "t2ibench data index"


@dataclass
class ShardScan:
    offsets: np.ndarray  # uint64, samples + 1
    damaged: str = ""  # error text when the tar broke part-way (samples before the damage are kept)

    @property
    def samples(self) -> int:
        return len(self.offsets) - 1


def scan_tar(path: Path) -> ShardScan:
    """Sample boundaries of one tar shard, from its member headers only."""
    starts: list[int] = []
    end, key_now, damaged = 0, None, ""
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info, key, _ in readers.tar_members(tar):
                if key != key_now:
                    starts.append(info.offset)
                    key_now = key
                end = info.offset_data + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    except (tarfile.TarError, OSError, EOFError) as exc:
        damaged = f"{type(exc).__name__}: {exc}"
        if starts:  # the sample being read when the tar broke is incomplete: drop it
            end = starts.pop()
    return ShardScan(np.asarray(starts + [end] if starts else [0], dtype="<u8"), damaged)


def offsets_path(root: Path, shard_name: str) -> Path:
    return root / OFFSETS_DIR / f"{Path(shard_name).stem}.idx"


def write_offsets(root: Path, shard_name: str, scan: ShardScan) -> None:
    write_bytes_atomic(offsets_path(root, shard_name), scan.offsets.astype("<u8").tobytes())


def write_manifest(root: Path, shard_names: list[str]) -> dict:
    """The manifest of `root` from the offsets already written for `shard_names` (O(shards))."""
    entries = []
    for name in sorted(shard_names):
        samples = offsets_path(root, name).stat().st_size // 8 - 1
        entries.append({"name": name, "bytes": (root / name).stat().st_size, "samples": int(samples)})
    manifest = {"format": FORMAT, "version": VERSION, "shards": entries}
    write_bytes_atomic(root / MANIFEST, json.dumps(manifest, indent=0).encode())
    return manifest


def index_shards(spec: str | Path, force: bool = False) -> dict:
    """`t2ibench data index`: write (or refresh) the metadata of every tar shard of `spec`."""
    ds = readers.open_dataset(spec, "webdataset")
    by_dir: dict[Path, list[Path]] = {}
    for shard in ds.shards:
        by_dir.setdefault(shard.source.parent, []).append(shard.source)
    scanned = reused = samples = 0
    damaged = []
    for root, files in by_dir.items():
        known = {e["name"]: e for e in _read_manifest(root).get("shards", [])} if not force else {}
        names = [f.name for f in files] + [n for n in known if n not in {f.name for f in files} and (root / n).is_file()]
        for name in names:
            entry, path = known.get(name), root / name
            if entry and entry["bytes"] == path.stat().st_size and offsets_path(root, name).is_file():
                reused += 1
                samples += entry["samples"]
                continue
            scan = scan_tar(path)
            write_offsets(root, name, scan)
            scanned, samples = scanned + 1, samples + scan.samples
            if scan.damaged:
                damaged.append({"shard": name, "error": scan.damaged})
        write_manifest(root, names)
    return {"shards": scanned + reused, "scanned": scanned, "reused": reused, "samples": samples,
            "damaged": damaged, "manifests": [str(r / MANIFEST) for r in by_dir]}


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path} is not valid JSON; rewrite it with `{INDEX_COMMAND} {root} --force`") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UserError(f"{path} is not a t2ibench shard index of version {VERSION}; "
                        f"rewrite it with `{INDEX_COMMAND} {root} --force`")
    return manifest


class ShardSet:
    """The indexed shards of a dataset: sample counts at start-up, byte ranges on demand."""

    def __init__(self, paths: list[Path], counts: list[int]):
        self.paths = paths
        self.counts = np.asarray(counts, dtype=np.int64)
        self.first = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)  # item number of each shard's start
        self._offsets: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.first[-1])

    @classmethod
    def open(cls, ds: readers.Dataset) -> "ShardSet":
        """The metadata of `ds`'s shards, checked against the files (one stat each) and one sample."""
        manifests: dict[Path, dict] = {}
        paths, counts = [], []
        for shard in ds.shards:
            root = shard.source.parent
            if root not in manifests:
                manifest = _read_manifest(root)
                if not manifest:
                    raise UserError(f"{root}: tar shards without t2ibench metadata ({MANIFEST}); write it once "
                                    f"with `{INDEX_COMMAND} {root}` (`t2ibench data filter` writes it with its shards)")
                manifests[root] = {e["name"]: e for e in manifest["shards"]}
            entry = manifests[root].get(shard.source.name)
            if entry is None:
                raise UserError(f"{shard.source}: not in {root / MANIFEST}; update it with `{INDEX_COMMAND} {root}`")
            size = shard.source.stat().st_size
            if size != entry["bytes"]:
                raise UserError(f"{shard.source}: metadata says {entry['bytes']} bytes but the file has {size}; "
                                f"the shard changed after indexing: rerun `{INDEX_COMMAND} {root}`")
            paths.append(shard.source)
            counts.append(int(entry["samples"]))
        shards = cls(paths, counts)
        shards._spot_check()
        return shards

    def _spot_check(self) -> None:
        """The first non-empty shard's offsets agree with its manifest entry and its first and last sample
        parse as exactly one webdataset sample each."""
        nonempty = np.flatnonzero(self.counts)
        if not len(nonempty):
            return
        s = int(nonempty[0])
        root, name = self.paths[s].parent, self.paths[s].name
        try:
            offsets = self.offsets(s)
        except (OSError, ValueError):
            raise UserError(f"{offsets_path(root, name)}: missing or unreadable; rerun `{INDEX_COMMAND} {root}`") from None
        bad = len(offsets) != self.counts[s] + 1 or int(offsets[-1]) > self.paths[s].stat().st_size
        for i in {0, int(self.counts[s]) - 1}:
            if not bad and self.read(s, i) is None:
                bad = True
        if bad:
            raise UserError(f"{self.paths[s]}: its metadata disagrees with its content (sample boundaries do not "
                            f"match the tar members); rerun `{INDEX_COMMAND} {root} --force`")

    def offsets(self, shard: int) -> np.ndarray:
        got = self._offsets.get(shard)
        if got is None:
            got = np.fromfile(offsets_path(self.paths[shard].parent, self.paths[shard].name), dtype="<u8")
            if len(got) != self.counts[shard] + 1:
                raise ValueError(f"{self.paths[shard]}: {len(got) - 1} offsets for {self.counts[shard]} samples")
            if len(self._offsets) >= 8:  # a worker reads a few shards at a time (blocked shuffle)
                self._offsets.pop(next(iter(self._offsets)))
            self._offsets[shard] = got
        return got

    def locate(self, item: int) -> tuple[int, int]:
        shard = int(np.searchsorted(self.first, item, side="right")) - 1
        return shard, item - int(self.first[shard])

    def read_item(self, item: int) -> readers.Sample | None:
        return self.read(*self.locate(item))

    def read(self, shard: int, local: int) -> readers.Sample | None:
        """Sample `local` of shard `shard`, or None when its bytes are not one whole webdataset sample."""
        offsets = self.offsets(shard)
        start, end = int(offsets[local]), int(offsets[local + 1])
        with open(self.paths[shard], "rb") as f:
            f.seek(start)
            chunk = f.read(end - start)
        if len(chunk) != end - start:
            return None
        members, key = {}, None
        try:
            with tarfile.open(fileobj=io.BytesIO(chunk), mode="r:") as tar:
                for info, k, ext in readers.tar_members(tar):
                    if key is not None and k != key:
                        return None  # two samples in one range: the offsets are not this shard's
                    key = k
                    members[ext.lower()] = tar.extractfile(info).read()
        except (tarfile.TarError, OSError, EOFError, ValueError):
            return None
        return readers._sample_from_members(key, members) if key is not None else None

    def describe(self, item: int) -> str:
        shard, local = self.locate(item)
        return f"{self.paths[shard]}#{local}"

