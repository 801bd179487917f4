"""The streaming tar path: metadata-only start-up, shard-and-offset reads, the same guarantees as the
small-data paths (order and randomness by position, exact resume after kill -9, corrupt samples
skipped and counted) and the one-line stops on missing or wrong metadata."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from t2ibench.errors import UserError
from t2ibench.train.data import SampleRules, StepBatches, TrainingData, collate, epoch_order, index_dataset
from train_helpers import (
    backbone_weights,
    kill_after_checkpoint,
    make_config,
    write_folder,
    write_shards,
)

REPO = Path(__file__).resolve().parents[1]
RULES = SampleRules(resolution=32, min_side=32, alt_text_prob=0.5, top_k=5, caption_dropout=0.2,
                    noise_shape=(3, 32, 32), seed=7)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("wds") / "shards", 8, 3)  # 3 + 3 + 2 samples


def test_tar_samples_equal_the_folder_samples(shards, tmp_path):
    folder = write_folder(tmp_path / "folder", 8)
    by_caption = {}
    for index in (index_dataset(folder), index_dataset(shards)):
        for item in range(len(index)):
            sample = index.read(item)
            by_caption.setdefault(sample.caption, set()).add(sample.image)
    assert len(by_caption) == 8 and all(len(images) == 1 for images in by_caption.values())
    index = index_dataset(shards)
    assert index.block_sizes.tolist() == [3, 3, 2] and index.describe(4).endswith("shard-00001.tar#1")


def test_blocked_order_is_a_lazy_permutation():
    sizes = np.array([3, 0, 5, 1, 4])
    for epoch in range(3):
        order = epoch_order(13, sizes, seed=1, epoch=epoch).tolist()
        assert sorted(order) == list(range(13))
        first = np.concatenate([[0], np.cumsum(sizes)])
        block_of = [int(np.searchsorted(first, i, side="right")) - 1 for i in order]
        # each block is visited as one run
        runs = [b for k, b in enumerate(block_of) if k == 0 or b != block_of[k - 1]]
        assert len(runs) == len(set(runs)) == 4
    # 250M samples in 250K shards: the order object holds O(shards) numbers and answers at once
    big = epoch_order(250_000_000, np.full(250_000, 1000), seed=0, epoch=0)
    assert big.ends.nbytes < 4_000_000 and 0 <= big[123_456_789] < 250_000_000


def test_two_processes_see_the_same_global_batches(shards):
    data = TrainingData(index_dataset(shards), RULES)

    def step_content(world: int, step: int) -> dict:
        out = {}
        for rank in range(world):
            batches = StepBatches(step, 4, 1, world, rank)
            for a in range(batches.accumulation):
                batch = collate([data[p] for p in batches.positions(step, a)])
                for j, p in enumerate(batch["positions"].tolist()):
                    out[p] = (batch["captions"][j], int(batch["timesteps"][j]), batch["noise"][j], batch["pixels"][j])
        return out

    for step in (0, 3):  # step 3 crosses into the second epoch
        one, two = step_content(1, step), step_content(2, step)
        assert one.keys() == two.keys() == set(range(4 * step, 4 * step + 4))
        for p in one:
            assert one[p][:2] == two[p][:2] and torch.equal(one[p][2], two[p][2]) and torch.equal(one[p][3], two[p][3])


def test_corrupt_shard_is_skipped_and_counted(tmp_path):
    root = write_shards(tmp_path / "shards", 6, 3)
    shard = root / "shard-00001.tar"
    raw = bytearray(shard.read_bytes())
    raw[600:1500] = bytes(900)  # same size, damaged headers and image bytes: metadata still matches the size
    shard.write_bytes(bytes(raw))
    data = TrainingData(index_dataset(root), RULES)
    skipped = collate([data[p] for p in range(6)])["skipped"]
    assert skipped["corrupt"] >= 1 and collate([data[p] for p in range(6)])["size"] == 6 - skipped["corrupt"]


def test_missing_or_wrong_metadata_is_one_line(tmp_path):
    bare = write_shards(tmp_path / "bare", 4, 2, index=False)
    with pytest.raises(UserError, match=r"without t2ibench metadata .*`t2ibench data index .*bare`"):
        index_dataset(bare)
    grown = write_shards(tmp_path / "grown", 4, 2)
    with open(grown / "shard-00001.tar", "ab") as f:
        f.write(bytes(1024))
    with pytest.raises(UserError, match=r"shard-00001.tar: metadata says \d+ bytes but the file has \d+"):
        index_dataset(grown)
    shifted = write_shards(tmp_path / "shifted", 4, 2)
    idx = shifted / "_index" / "shard-00000.idx"
    offsets = np.fromfile(idx, dtype="<u8")
    offsets[1] += 512  # sample boundaries that are not this shard's
    offsets.tofile(idx)
    with pytest.raises(UserError, match="metadata disagrees with its content"):
        index_dataset(shifted)
    # the command line: exit 2, one line, before any model is built
    done = subprocess.run([sys.executable, "-m", "t2ibench", "train", "sdxl", f"--data={bare}", f"--out={tmp_path / 'run'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "t2ibench data index" in done.stderr and not (tmp_path / "run").exists()


def test_index_command_and_filter_write_the_metadata(tmp_path):
    from t2ibench.data.filter import FilterConfig, run_filter

    bare = write_shards(tmp_path / "bare", 5, 2, index=False)
    done = subprocess.run([sys.executable, "-m", "t2ibench", "data", "index", str(bare)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "indexed 3 shards, 5 samples (3 read, 0 unchanged)" in done.stdout, done.stderr
    assert len(index_dataset(bare)) == 5
    run_filter(FilterConfig(str(bare), tmp_path / "filtered", progress=False))
    filtered = index_dataset(tmp_path / "filtered")
    assert len(filtered) == 5 and sorted(filtered.read(i).caption for i in range(5)) == sorted(
        index_dataset(bare).read(i).caption for i in range(5))


def test_resume_after_kill_9_on_shards_is_bitwise(shards, tmp_path):
    straight = make_config(shards, tmp_path / "straight")
    from t2ibench.train.loop import train

    reference = train(straight)
    out = tmp_path / "run"
    kill_after_checkpoint(shards, out)
    resumed = train(make_config(shards, out, **{"checkpoint.every": 1}), resume=True)
    assert resumed.step == 4 and [loss for s, loss in resumed.losses] == [loss for s, loss in reference.losses if s > resumed.losses[0][0] - 1]
    a, b = backbone_weights(resumed.checkpoint), backbone_weights(reference.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
