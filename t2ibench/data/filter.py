"""`t2ibench data filter`: stream a dataset through optional filters and write a filtered copy.

Output: webdataset shards whatever the input kind, one output shard per input shard
(``OUT/<shard>.tar``, members ``<key>.<jpg|png|webp>`` with the original image bytes, ``<key>.txt``,
``<key>.json`` record with the scores, ``<key>.syn.json`` copied when present) and
``OUT/filter_report.json``, and the shard metadata the trainer starts from (``OUT/t2ibench_index.json``,
``OUT/_index/``; see shard_index.py). Filters run in this order, cheapest first; a sample is counted under the
first filter that removes it: unreadable image, ``too_small`` (shorter side), ``bad_aspect``
(long/short side ratio), ``duplicate`` (perceptual hash), ``nsfw``, ``low_aesthetic``.

Resume: a shard is finished when ``OUT/_done/<shard>.json`` exists (written after its tar is moved into
place); a rerun skips finished shards and rebuilds the duplicate index from their recorded hashes, so
the result equals an uninterrupted run. A rerun with different settings into the same OUT is refused.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from t2ibench.data import shard_index
from t2ibench.data.dedup import METHODS, DuplicateIndex, image_hash
from t2ibench.data.progress import shard_progress
from t2ibench.data.readers import (
    SYN_EXT,
    Sample,
    Shard,
    ShardStats,
    atomic_write_json,
    decode_image,
    image_ext,
    open_dataset,
)
from t2ibench.errors import UserError

REMOVAL_REASONS = ("unreadable", "too_small", "bad_aspect", "duplicate", "nsfw", "low_aesthetic")
REPORT_NAME = "filter_report.json"
# Settings that change which samples survive: a resumed run must use the same ones.
_RESULT_FIELDS = ("data", "kind", "chunk_size", "min_size", "max_aspect", "dedup", "dedup_distance",
                  "aesthetic_threshold", "aesthetic_head", "nsfw_threshold")


@dataclass
class FilterConfig:
    data: str
    out: Path
    kind: str | None = None
    chunk_size: int = 1000  # samples per shard for image folders
    min_size: int = 0  # minimum shorter side in pixels; 0 = off
    max_aspect: float = 0.0  # maximum long/short side ratio; 0 = off
    dedup: str = "none"  # phash | dhash | none
    dedup_distance: int = 4  # Hamming bits of 64
    aesthetic_threshold: float | None = None  # keep score >= threshold; None = off
    aesthetic_head: str = "mlp"
    aesthetic_weights: str | None = None
    clip_weights: str | None = None
    nsfw_threshold: float | None = None  # remove P(nsfw) >= threshold; None = off
    nsfw_weights: str | None = None
    batch_size: int = 16
    device: str = "cpu"
    progress: bool = True

    def check(self) -> None:
        if self.dedup not in (*METHODS, "none"):
            raise UserError(f"--dedup must be one of {', '.join(METHODS)}, none (got {self.dedup!r})")
        if self.min_size < 0 or self.max_aspect < 0 or self.batch_size < 1 or self.chunk_size < 1:
            raise UserError("--min-size/--max-aspect must be >= 0 and --batch-size/--chunk-size >= 1")
        if self.max_aspect and self.max_aspect < 1:
            raise UserError("--max-aspect is long side / short side, so it must be >= 1 (or 0 for off)")
        if not 0 <= self.dedup_distance < 64:
            raise UserError("--dedup-distance must be in 0..63 bits")
        if self.nsfw_threshold is not None and not 0 <= self.nsfw_threshold <= 1:
            raise UserError("--nsfw-threshold is a probability in [0, 1]")

    def fingerprint(self) -> dict:
        return {k: asdict(self)[k] for k in _RESULT_FIELDS}


def _safe_key(key: str) -> str:
    # webdataset splits a member name at the first dot of its basename: keep keys dot-free.
    head, _, base = key.rpartition("/")
    return (head + "/" if head else "") + base.replace(".", "_")


class _Models:
    """Classifiers loaded on first use, so a fully resumed run loads nothing."""

    def __init__(self, cfg: FilterConfig):
        self.cfg, self._aesthetic, self._nsfw = cfg, None, None

    @property
    def aesthetic(self):
        if self._aesthetic is None:
            from t2ibench.data.aesthetic import AestheticScorer

            self._aesthetic = AestheticScorer.load(self.cfg.clip_weights, self.cfg.aesthetic_weights,
                                                   self.cfg.aesthetic_head, self.cfg.device)
        return self._aesthetic

    @property
    def nsfw(self):
        if self._nsfw is None:
            from t2ibench.data.nsfw import NsfwClassifier

            self._nsfw = NsfwClassifier.load(self.cfg.nsfw_weights, self.cfg.device)
        return self._nsfw


def _write_sample(writer, sample: Sample, image, meta: dict) -> None:
    record = {**sample.record, **meta}
    if sample.caption is not None:
        record.setdefault("caption", sample.caption)
    obj = {"__key__": _safe_key(sample.key), image_ext(image, sample.ext): sample.image,
           "json": json.dumps(record, sort_keys=True).encode()}
    if sample.caption is not None:
        obj["txt"] = sample.caption.encode()
    if sample.syn is not None:
        obj[SYN_EXT] = json.dumps(sample.syn).encode()
    for ext, data in sample.extra.items():
        obj.setdefault(ext, data)
    writer.write(obj)


def _filter_batch(batch: list, cfg: FilterConfig, models: _Models, counts: Counter) -> list:
    """Model filters on a batch of (sample, image, meta); returns the survivors in order."""
    if cfg.nsfw_threshold is not None and batch:
        probs = models.nsfw.unsafe_prob([im for _, im, _ in batch])
        kept = []
        for item, p in zip(batch, probs):
            item[2]["nsfw_prob"] = round(p, 6)
            if p >= cfg.nsfw_threshold:
                counts["nsfw"] += 1
            else:
                kept.append(item)
        batch = kept
    if cfg.aesthetic_threshold is not None and batch:
        scores = models.aesthetic.score([im for _, im, _ in batch])
        kept = []
        for item, s in zip(batch, scores):
            item[2]["aesthetic"] = round(s, 6)
            if s < cfg.aesthetic_threshold:
                counts["low_aesthetic"] += 1
            else:
                kept.append(item)
        batch = kept
    return batch


def _process_shard(shard: Shard, cfg: FilterConfig, index: DuplicateIndex | None, models: _Models,
                   bar) -> dict:
    counts, stats, hashes = Counter(), ShardStats(), []
    out_tar = cfg.out / f"{shard.name}.tar"
    tmp = out_tar.with_name(out_tar.name + ".tmp")

    try:
        _write_shard(shard, cfg, index, models, bar, tmp, counts, stats, hashes)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    tmp.replace(out_tar)
    shard_index.write_offsets(cfg.out, out_tar.name, shard_index.scan_tar(out_tar))  # the trainer's metadata
    return {"shard": shard.name, "counts": dict(counts), "bad_shard": stats.bad_shard, "error": stats.error,
            "hashes": [f"{h:016x}" for h in hashes]}


def _write_shard(shard, cfg, index, models, bar, tmp, counts, stats, hashes) -> None:
    import webdataset as wds

    pending: list = []
    with wds.TarWriter(str(tmp), encoder=False) as writer:
        def flush():
            for sample, image, meta in _filter_batch(pending, cfg, models, counts):
                _write_sample(writer, sample, image, meta)
                counts["kept"] += 1
            pending.clear()

        for sample in shard.samples(stats):
            counts["in"] += 1
            bar.add_samples()
            image = decode_image(sample.image)
            if image is None:
                counts["unreadable"] += 1
                continue
            w, h = image.size
            meta = {"width": w, "height": h}
            if cfg.min_size and min(w, h) < cfg.min_size:
                counts["too_small"] += 1
                continue
            if cfg.max_aspect and max(w, h) / min(w, h) > cfg.max_aspect:
                counts["bad_aspect"] += 1
                continue
            if index is not None:
                hv = image_hash(image, cfg.dedup)
                if index.check_and_add(hv):
                    counts["duplicate"] += 1
                    continue
                hashes.append(hv)
                meta[cfg.dedup] = f"{hv:016x}"
            pending.append((sample, image, meta))
            if len(pending) >= cfg.batch_size:
                flush()
        flush()


def _check_settings(cfg: FilterConfig) -> None:
    path = cfg.out / "_done" / "settings.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != cfg.fingerprint():
            changed = sorted(k for k in cfg.fingerprint() if previous.get(k) != cfg.fingerprint()[k])
            raise UserError(f"{cfg.out} holds a run with other settings ({', '.join(changed)}): "
                            f"use a new --out or the same settings to resume")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cfg.fingerprint())


def run_filter(cfg: FilterConfig, on_shard_done: Callable[[str], None] | None = None) -> dict:
    """Filter `cfg.data` into `cfg.out`; returns (and writes) the report."""
    cfg.check()
    cfg.data = os.path.abspath(os.path.expanduser(str(cfg.data)))
    dataset = open_dataset(cfg.data, cfg.kind, cfg.chunk_size)
    cfg.kind = dataset.kind
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UserError(f"--out {cfg.out} exists and is not a directory")
    cfg.out.mkdir(parents=True, exist_ok=True)
    _check_settings(cfg)
    index = DuplicateIndex(cfg.dedup_distance) if cfg.dedup != "none" else None
    models = _Models(cfg)
    totals, per_shard, bad, resumed = Counter(), {}, [], 0
    if not all((cfg.out / "_done" / f"{s.name}.json").exists() for s in dataset.shards):
        # load the models before any work, so a missing one stops the run at once
        if cfg.nsfw_threshold is not None:
            models.nsfw
        if cfg.aesthetic_threshold is not None:
            models.aesthetic
    with shard_progress("filter", len(dataset.shards), cfg.progress) as bar:
        for shard in dataset.shards:
            marker = cfg.out / "_done" / f"{shard.name}.json"
            if marker.exists():
                result = json.loads(marker.read_text())
                resumed += 1
                bar.add_samples(result["counts"].get("in", 0))
                if index is not None:
                    for h in result["hashes"]:
                        index.add(int(h, 16))
            else:
                result = _process_shard(shard, cfg, index, models, bar)
                atomic_write_json(marker, result)
            bar.shard_done()
            totals.update(result["counts"])
            per_shard[shard.name] = result["counts"]
            if result["bad_shard"]:
                bad.append({"shard": shard.name, "error": result["error"]})
            if on_shard_done is not None:
                on_shard_done(shard.name)
    names = [f"{s.name}.tar" for s in dataset.shards]
    for name in names:  # output of a run from before shard metadata existed
        if not shard_index.offsets_path(cfg.out, name).is_file():
            shard_index.write_offsets(cfg.out, name, shard_index.scan_tar(cfg.out / name))
    shard_index.write_manifest(cfg.out, names)
    report = {
        "input": str(cfg.data), "input_kind": dataset.kind, "output": str(cfg.out), "output_format": "webdataset",
        "settings": cfg.fingerprint(),
        "methods": _methods(cfg),
        "samples_in": totals.get("in", 0), "samples_out": totals.get("kept", 0),
        "removed": {r: totals.get(r, 0) for r in REMOVAL_REASONS},
        "bad_shards": bad,
        "shards": {"total": len(dataset.shards), "resumed": resumed, "processed": len(dataset.shards) - resumed},
        "per_shard": per_shard,
    }
    atomic_write_json(cfg.out / REPORT_NAME, report)
    return report


def _methods(cfg: FilterConfig) -> dict:
    from t2ibench.data.curation_weights import AESTHETIC_LINEAR, AESTHETIC_MLP, CLIP_VIT_L14, NSFW_VIT

    out = {}
    if cfg.dedup != "none":
        out["dedup"] = f"imagehash.{cfg.dedup} 64-bit, Hamming <= {cfg.dedup_distance}"
    if cfg.aesthetic_threshold is not None:
        head = AESTHETIC_MLP if cfg.aesthetic_head == "mlp" else AESTHETIC_LINEAR
        out["aesthetic"] = (f"{cfg.aesthetic_head} head {cfg.aesthetic_weights or head.repo_id + '/' + head.filename}"
                            f" on CLIP {cfg.clip_weights or CLIP_VIT_L14.repo_id}")
    if cfg.nsfw_threshold is not None:
        out["nsfw"] = f"ViT classifier {cfg.nsfw_weights or NSFW_VIT.repo_id}"
    return out
