"""Training data: image-text pairs from an image folder, webdataset tar shards or parquet files.

Formats and the synthetic-caption sidecar are those of t2ibench/data/readers.py (shared with
`t2ibench data`); this module adds random access, the training transform and the sampling rules.

Start-up is O(shards) for tar shards: sample counts come from the shard metadata written once by
`t2ibench data filter` or `t2ibench data index` (t2ibench/data/shard_index.py), and sample i of shard s
is read with one seek into a known byte range (shard-and-offset addressing). Parquet row counts come
from the files' footers; an image folder lists its files (small data).

Order and randomness are a pure function of (seed, global sample position), never of process count,
worker count or RNG state:
- epoch e visits every sample once in a "blocked" permutation: the blocks (tar shards, parquet row
  groups; single images for a folder) are shuffled, then the items inside each block (EpochOrder,
  computed lazily, O(blocks) memory);
- step s consumes global positions [s*B, (s+1)*B) for global batch B; micro-batch a of rank r takes the
  slice starting at s*B + (a*W + r)*m (m = micro-batch, W = processes);
- the caption choice, caption dropout, diffusion timestep and noise of position p come from an RNG
  seeded with (seed, p).
So the data position of a checkpoint is just its step, resuming is exact, and 2 processes see the same
global batch as 1 (the loss is normalised by the global batch, see loop.py). Resuming with a different
process count (elastic) visits the same samples in the same global batches; only which rank computes
which micro-batch changes, so the weights then agree to float rounding, not bitwise.

A sample that cannot be read or decoded, is smaller than `min_side`, or has no caption at all is
skipped and counted by reason; it contributes nothing to its step.
"""

from __future__ import annotations

import itertools
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from t2ibench.data import readers
from t2ibench.data.shard_index import ShardSet
from t2ibench.errors import UserError

SKIP_REASONS = ("corrupt", "undersized", "no_caption")


# ----------------------------------------------------------------------------------------------
# random access to the three formats

@dataclass
class SampleIndex:
    """Every sample of a dataset, addressable by an integer; items are numbered block by block (tar shard,
    parquet row group), so a block is a run of consecutive items. Holds O(blocks) numbers, not O(samples),
    for shards and parquet (an image folder lists its files)."""

    kind: str
    root: Path
    size: int
    block_sizes: np.ndarray | None  # items per block; None: every item is its own block (full shuffle)
    read: Callable[[int], readers.Sample | None]  # item -> raw sample (None: unreadable)
    describe: Callable[[int], str]  # item -> where it lives (cache fingerprints, messages)
    bad_shards: int = 0

    def __len__(self) -> int:
        return self.size


def index_dataset(spec: str | Path, kind: str = "auto") -> SampleIndex:
    """The samples under `spec` (a folder, *.tar shards, *.parquet files, or a glob). Tar shards need
    their metadata (t2ibench/data/shard_index.py): start-up reads it, never the samples."""
    ds = readers.open_dataset(spec, None if kind == "auto" else kind)
    if ds.kind == "folder":
        images = [img for shard in ds.shards for img in shard.members]
        return SampleIndex("folder", ds.root, len(images), None, _FolderReader(ds.root, images), _Named(images))
    if ds.kind == "webdataset":
        shards = ShardSet.open(ds)
        return SampleIndex("webdataset", ds.root, len(shards), shards.counts, shards.read_item, shards.describe)
    return _index_parquet(ds)


class _Named:
    def __init__(self, names: list):
        self.names = names

    def __call__(self, item: int) -> str:
        return str(self.names[item])


class _FolderReader:
    def __init__(self, root: Path, images: list[Path]):
        self.root, self.images = root, images

    def __call__(self, item: int) -> readers.Sample | None:
        shard = readers.Shard("one", "folder", self.root, (self.images[item],))
        return next(shard.samples(readers.ShardStats()), None)


def _index_parquet(ds: readers.Dataset) -> SampleIndex:
    import pyarrow.parquet as pq

    counts, bad = [], 0
    for shard in ds.shards:
        try:
            counts.append(pq.ParquetFile(shard.source).metadata.row_group(shard.members[0]).num_rows)
        except Exception:  # damaged file: no rows from it
            bad, _ = bad + 1, counts.append(0)
    reader = _ParquetReader(ds.shards, counts)
    return SampleIndex("parquet", ds.root, int(sum(counts)), np.asarray(counts, dtype=np.int64), reader,
                       reader.describe, bad)


class _ParquetReader:
    """Reads a whole row group once and keeps the last two (items of a block are read together)."""

    def __init__(self, shards: list[readers.Shard], counts: list[int]):
        self.shards = shards
        self.first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.cache: OrderedDict[str, list] = OrderedDict()

    def locate(self, item: int) -> tuple[readers.Shard, int]:
        s = int(np.searchsorted(self.first, item, side="right")) - 1
        return self.shards[s], item - int(self.first[s])

    def describe(self, item: int) -> str:
        shard, row = self.locate(item)
        return f"{shard.source}#{shard.members[0]}/{row}"

    def __call__(self, item: int) -> readers.Sample | None:
        shard, row = self.locate(item)
        if shard.name not in self.cache:
            self.cache[shard.name] = list(shard.samples(readers.ShardStats()))
            while len(self.cache) > 2:
                self.cache.popitem(last=False)
        rows = self.cache[shard.name]
        return rows[row] if row < len(rows) else None


# ----------------------------------------------------------------------------------------------
# sampling rules

def choose_caption(alt_text: str | None, synthetic: list[str] | None, rng: np.random.Generator,
                   alt_text_prob: float = 0.5, top_k: int = 5) -> tuple[str | None, int]:
    """The paper's mixing: alt-text with probability `alt_text_prob`, else one of the top-k ranked
    synthetic captions uniformly. Returns (caption, which): which = -1 for the alt-text, i for
    synthetic caption i. Without synthetic captions it is the alt-text; without alt-text, synthetic."""
    synthetic = [c for c in (synthetic or [])[:top_k] if c]
    use_alt = rng.random() < alt_text_prob
    pick = int(rng.integers(len(synthetic))) if synthetic else 0
    if synthetic and (not use_alt or not alt_text):
        return synthetic[pick], pick
    return (alt_text or None), -1


def preprocess(image, resolution: int) -> torch.Tensor:
    """Resize the shorter side to `resolution` (bicubic), centre-crop, scale to [-1, 1], CHW float."""
    from PIL import Image

    w, h = image.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    if size != (w, h):
        image = image.resize(size, Image.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float().div(127.5).sub(1.0)


class EpochOrder:
    """The visiting order of one epoch, item = order[j], computed lazily in O(blocks) memory: the blocks
    are shuffled (RNG seeded with (seed, epoch)), then the items inside block b (seeded with (seed,
    epoch, b)) when the epoch first reaches it. Without blocks, one permutation of every item."""

    def __init__(self, size: int, block_sizes: np.ndarray | None, seed: int, epoch: int):
        self.size, self.key = size, [seed, epoch, 0x0DA7A]
        rng = np.random.default_rng(self.key)
        self.full = rng.permutation(size) if block_sizes is None else None
        if block_sizes is not None:
            self.sizes = np.asarray(block_sizes, dtype=np.int64)
            self.perm = rng.permutation(len(self.sizes))
            self.ends = np.cumsum(self.sizes[self.perm])  # end position of the k-th visited block
            self.block_first = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
            self._inner: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, j: int) -> int:
        if self.full is not None:
            return int(self.full[j])
        k = int(np.searchsorted(self.ends, j, side="right"))
        block = int(self.perm[k])
        inner = self._inner.get(block)
        if inner is None:
            inner = np.random.default_rng([*self.key, block]).permutation(int(self.sizes[block]))
            self._inner[block] = inner
            while len(self._inner) > 4:
                self._inner.popitem(last=False)
        return int(self.block_first[block] + inner[j - (int(self.ends[k]) - int(self.sizes[block]))])

    def tolist(self) -> list[int]:
        return [self[j] for j in range(self.size)]


def epoch_order(index_len: int, block_sizes: np.ndarray | None, seed: int, epoch: int) -> EpochOrder:
    return EpochOrder(index_len, block_sizes, seed, epoch)


@dataclass
class SampleRules:
    resolution: int
    min_side: int
    alt_text_prob: float
    top_k: int
    caption_dropout: float
    noise_shape: tuple[int, int, int]  # (C, h, w) of what the backbone denoises
    num_timesteps: int = 1000
    vae_noise: bool = False  # also draw the VAE posterior's noise (latent space)
    seed: int = 0


class TrainingData(torch.utils.data.Dataset):
    """Global position -> one training example (or a skip record). See the module doc for the rules."""

    def __init__(self, index: SampleIndex, rules: SampleRules, cache=None):
        if len(index) == 0:
            raise UserError(f"{index.root}: no {index.kind} samples found")
        self.index, self.rules, self.cache = index, rules, cache
        self._epoch, self._order = -1, None

    def __len__(self) -> int:  # positions are unbounded; this is the epoch length
        return len(self.index)

    def item_at(self, position: int) -> int:
        epoch, j = divmod(position, len(self.index))
        if epoch != self._epoch:
            self._order = epoch_order(len(self.index), self.index.block_sizes, self.rules.seed, epoch)
            self._epoch = epoch
        return self._order[j]

    def draws(self, position: int) -> dict[str, Any]:
        """Everything random about position p, from an RNG seeded with (seed, p)."""
        rng = np.random.default_rng([self.rules.seed, position, 0x5EED])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        out = {"rng": rng, "timestep": int(rng.integers(self.rules.num_timesteps)),
               "drop": bool(rng.random() < self.rules.caption_dropout),
               "noise": torch.randn(self.rules.noise_shape, generator=gen)}
        if self.rules.vae_noise:
            out["vae_noise"] = torch.randn(self.rules.noise_shape, generator=gen)
        return out

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = self.item_at(position)
        d = self.draws(position)
        example = {"position": position, "item": item, "timestep": d["timestep"], "noise": d["noise"]}
        if "vae_noise" in d:
            example["vae_noise"] = d["vae_noise"]
        if self.cache is not None:
            return self.cache.example(item, example, d, self.rules)
        loaded = load_item(self.index, item, self.rules)
        if isinstance(loaded, str):
            return {"position": position, "skip": loaded}
        pixels, alt, synthetic = loaded
        caption, which = choose_caption(alt, synthetic, d["rng"], self.rules.alt_text_prob, self.rules.top_k)
        if caption is None:
            return {"position": position, "skip": "no_caption"}
        example.update(pixels=pixels, caption="" if d["drop"] else caption, caption_source=which, dropped=d["drop"])
        return example


def load_item(index: SampleIndex, item: int, rules: SampleRules):
    """(pixels, alt-text, synthetic captions) of item `item`, or the reason it is skipped."""
    try:
        sample = index.read(item)
    except (OSError, ValueError):  # unreadable file, or shard offsets that do not fit the shard
        sample = None
    if sample is None:
        return "corrupt"
    image = readers.decode_image(sample.image)
    if image is None:
        return "corrupt"
    if min(image.size) < rules.min_side:
        return "undersized"
    synthetic = list((sample.syn or {}).get("captions") or [])
    if not sample.caption and not synthetic:
        return "no_caption"
    return preprocess(image, rules.resolution), sample.caption, synthetic


def check_usable(index: SampleIndex, rules: SampleRules, probe: int = 64) -> None:
    """Stop early (one line) when the first `probe` samples are all unusable."""
    reasons = Counter()
    for item in range(min(probe, len(index))):
        loaded = load_item(index, item, rules)
        if not isinstance(loaded, str):
            return
        reasons[loaded] += 1
    detail = ", ".join(f"{n} {r}" for r, n in reasons.items())
    raise UserError(f"{index.root}: no usable samples (checked {sum(reasons.values())} of {len(index)}: {detail})")


def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the usable examples of a micro-batch; count the skipped ones by reason."""
    good = [e for e in examples if "skip" not in e]
    batch: dict[str, Any] = {"skipped": Counter(e["skip"] for e in examples if "skip" in e), "size": len(good)}
    if not good:
        return batch
    batch["positions"] = torch.tensor([e["position"] for e in good])
    batch["timesteps"] = torch.tensor([e["timestep"] for e in good], dtype=torch.long)
    for key in ("noise", "vae_noise", "pixels", "latent_mean", "latent_std", "context"):
        if key in good[0]:
            batch[key] = torch.stack([e[key] for e in good])
    if "caption" in good[0]:
        batch["captions"] = [e["caption"] for e in good]
    return batch


class StepBatches(torch.utils.data.Sampler):
    """This rank's micro-batches of global positions, step after step, from `start_step` on."""

    def __init__(self, start_step: int, global_batch: int, micro_batch: int, world: int, rank: int):
        if global_batch % (micro_batch * world):
            raise UserError(f"train.global_batch={global_batch} is not a multiple of train.micro_batch "
                            f"({micro_batch}) x processes ({world})")
        self.start_step, self.global_batch, self.micro, self.world, self.rank = (
            start_step, global_batch, micro_batch, world, rank)
        self.accumulation = global_batch // (micro_batch * world)

    def positions(self, step: int, micro_step: int) -> list[int]:
        base = step * self.global_batch + (micro_step * self.world + self.rank) * self.micro
        return list(range(base, base + self.micro))

    def __iter__(self):
        for step in itertools.count(self.start_step):
            for a in range(self.accumulation):
                yield self.positions(step, a)


def make_loader(data: TrainingData, batches: StepBatches, num_workers: int):
    return torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=num_workers, collate_fn=collate,
                                       persistent_workers=False, prefetch_factor=4 if num_workers else None)


@dataclass
class SkipCounter:
    counts: Counter = field(default_factory=Counter)

    def add(self, skipped: Counter) -> None:
        self.counts.update(skipped)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
