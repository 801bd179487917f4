"""Trainer data start-up on webdataset tar shards: time to the first batch and peak RSS at 10K, 100K and
1M samples, the streaming path (shard metadata, O(shards)) against the indexer the trainer used before
it (every member header of every shard read into a Python list, then a full permutation), in one run.

Each measurement runs in a fresh process (`--measure`), after its imports, so peak RSS is that of the
start-up alone plus the same imports; the imports-only RSS is reported beside it. Shards hold 1,000 tiny
samples each (a 40x36 PNG and a caption); they are written with their metadata as `t2ibench data
filter` writes it. Page cache is warm (the shards were just written): on network storage the indexer's
cost grows further, the streaming path reads one JSON file and stats each shard.

Run: python benchmarks/bench_data_startup.py [--sizes 10000,100000,1000000] [--baseline-max 100000]
The baseline is skipped above --baseline-max (it reads ~4K samples/s per core here: 1M takes minutes).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PER_SHARD = 1000


def _tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 36), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def write_shards(root: Path, n: int) -> float:
    """n samples in shards of PER_SHARD, plus their metadata (offsets known while writing). Shard 0 is
    built member by member; the others are byte copies of it (keys repeat across shards, which
    webdataset allows), so 1M samples (2 GB) are written in seconds rather than minutes."""
    import shutil

    import numpy as np

    from t2ibench.data import shard_index

    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    png = _tiny_png()
    out, offsets, pos = bytearray(), [], 0
    for i in range(min(n, PER_SHARD)):
        offsets.append(pos)
        for member, data in ((f"{i:08d}.png", png), (f"{i:08d}.txt", b"a red square")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            header = info.tobuf(tarfile.USTAR_FORMAT)
            padded = data + bytes(-len(data) % tarfile.BLOCKSIZE)
            out += header + padded
            pos += len(header) + len(padded)
    offsets.append(pos)
    out += bytes(2 * tarfile.BLOCKSIZE)  # end-of-archive
    first = root / "shard-000000.tar"
    first.write_bytes(out)
    scan = shard_index.ShardScan(np.asarray(offsets, dtype="<u8"))
    names = []
    for s in range(0, n, PER_SHARD):
        name = f"shard-{s // PER_SHARD:06d}.tar"
        if s:
            shutil.copyfile(first, root / name)
        shard_index.write_offsets(root, name, scan)
        names.append(name)
    shard_index.write_manifest(root, names)
    return time.perf_counter() - t0


# -- the trainer's indexer before the streaming path (t2ibench/train/data.py at d6ee528), for the baseline

def _legacy_first_batch(root: Path, rules, batch: int):
    from collections import OrderedDict

    import numpy as np

    from t2ibench.data import readers
    from t2ibench.train.data import choose_caption, preprocess

    ds = readers.open_dataset(root, "webdataset")
    locators, blocks = [], []
    for shard in ds.shards:
        start = len(locators)
        grouped: OrderedDict[str, dict] = OrderedDict()
        with tarfile.open(shard.source, mode="r:") as tar:
            for info, key, ext in readers.tar_members(tar):
                grouped.setdefault(key, {})[ext.lower()] = (info.offset_data, info.size)
        locators += [(shard.source, key, members) for key, members in grouped.items()]
        blocks.append(range(start, len(locators)))
    rng = np.random.default_rng([rules.seed, 0, 0x0DA7A])
    order = np.concatenate([np.asarray(blocks[b])[rng.permutation(len(blocks[b]))] for b in rng.permutation(len(blocks))])
    out = []
    for p in range(batch):
        path, key, members = locators[int(order[p])]
        data = {}
        with open(path, "rb") as f:
            for ext, (offset, size) in members.items():
                f.seek(offset)
                data[ext] = f.read(size)
        sample = readers._sample_from_members(key, data)
        caption, _ = choose_caption(sample.caption, None, np.random.default_rng([rules.seed, p]))
        out.append((preprocess(readers.decode_image(sample.image), rules.resolution), caption))
    return out


def measure(kind: str, root: Path, batch: int) -> dict:
    """Runs in a fresh process: imports, then start-up to the first batch."""
    import torch  # noqa: F401

    from t2ibench.train.data import SampleRules, StepBatches, TrainingData, index_dataset, make_loader

    rules = SampleRules(resolution=32, min_side=32, alt_text_prob=0.5, top_k=5, caption_dropout=0.1,
                        noise_shape=(3, 32, 32))
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if kind == "streaming":
        data = TrainingData(index_dataset(root), rules)
        first = next(iter(make_loader(data, StepBatches(0, batch, batch, 1, 0), 0)))
        got = first["size"]
    else:
        got = len(_legacy_first_batch(root, rules, batch))
    ttfb = time.perf_counter() - t0
    return {"ttfb_s": ttfb, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "imports_rss_mb": rss_imports, "batch": got}


def _run(kind: str, root: Path, batch: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--measure", kind, str(root), "--batch", str(batch)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--baseline-max", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "ROOT"))
    parser.add_argument("--dir", help="where to write the shards (default: a temporary folder)")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), args.batch)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(n % PER_SHARD for n in sizes):
        parser.error(f"--sizes must be multiples of {PER_SHARD} (whole shards)")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = []
        for n in sizes:
            root = Path(tmp) / f"n{n}"
            wrote = write_shards(root, n)
            disk = sum(f.stat().st_size for f in root.glob("*.tar")) / 2**20
            stream = _run("streaming", root, args.batch)
            base = _run("indexer", root, args.batch) if n <= args.baseline_max else None
            rows.append((n, wrote, disk, stream, base))
            print(f"{n:>9,} samples ({n // PER_SHARD} shards, {disk:,.0f} MiB, written in {wrote:.1f} s): "
                  f"streaming {stream['ttfb_s']:.2f} s / {stream['peak_rss_mb']:.0f} MB; indexer "
                  + (f"{base['ttfb_s']:.2f} s / {base['peak_rss_mb']:.0f} MB" if base else "skipped"), flush=True)
            import shutil

            shutil.rmtree(root)
    print(f"\ntime to first batch (batch {args.batch}) and peak RSS, fresh process each; imports alone: "
          f"{rows[0][3]['imports_rss_mb']:.0f} MB")
    print(f"{'samples':>10s} {'streaming s':>12s} {'streaming MB':>13s} {'indexer s':>10s} {'indexer MB':>11s} {'time ratio':>11s}")
    for n, _, _, s, b in rows:
        bs = f"{b['ttfb_s']:10.2f} {b['peak_rss_mb']:11.0f} {b['ttfb_s'] / s['ttfb_s']:10.1f}x" if b else f"{'-':>10s} {'-':>11s} {'-':>11s}"
        print(f"{n:>10,} {s['ttfb_s']:12.2f} {s['peak_rss_mb']:13.0f} {bs}")


if __name__ == "__main__":
    main()
