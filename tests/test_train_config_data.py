"""Run config, data pipeline and CLI bad-input checks of the reference trainer (fast: no training)."""

from __future__ import annotations

import io
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch

from t2ibench.errors import UserError
from t2ibench.train.config import RunConfig, apply_overrides
from t2ibench.train.data import (
    SampleRules,
    StepBatches,
    TrainingData,
    check_usable,
    choose_caption,
    collate,
    epoch_order,
    index_dataset,
)
from train_helpers import png_bytes, shape_image, write_folder

# -- config ------------------------------------------------------------------------------------------

def test_defaults_are_the_paper_recipe():
    c = RunConfig(variant="sdxl_td4_8")
    assert (c.resolution, c.optim.lr, c.optim.warmup_steps, c.train.global_batch) == (256, 8e-5, 10_000, 2048)
    assert (c.train.mixed_precision, c.model.vae, c.model.text_encoder) == ("bf16", "sdxl-vae", "openclip-h")
    assert (c.data.alt_text_prob, c.data.synthetic_top_k) == (0.5, 5)


def test_overrides_are_typed_and_checked():
    c = apply_overrides(RunConfig(), ["model.channels=32", "model.transformer_depth=0,1,1", "optim.lr=1e-4",
                                      "train.steps=1e3", "data.min_side=none", "train.ema=true"])
    assert c.model.channels == 32 and c.model.transformer_depth == (0, 1, 1)
    assert c.optim.lr == 1e-4 and c.train.steps == 1000 and c.data.min_side is None and c.train.ema is True
    for bad, words in [("model.chanels=3", "did you mean model.channels"), ("optim.lr=fast", "expects a number"),
                       ("train.steps=1.5", "expects an integer"), ("train.ema=maybe", "true or false"),
                       ("nonsense", "not key=value"), ("model=3", "unknown config key")]:
        with pytest.raises(UserError, match=words):
            apply_overrides(RunConfig(), [bad])
    assert RunConfig.from_dict(c.to_dict()) == c


def test_recipe_hash_ignores_run_only_fields():
    base = RunConfig(variant="sdxl")
    same = apply_overrides(base, ["out=/elsewhere", "train.micro_batch=8", "train.steps=10", "log.every=1"])
    assert same.recipe_hash() == base.recipe_hash()
    for change in ("optim.lr=1e-4", "model.channels=64", "train.caption_dropout=0.2", "seed=1"):
        assert apply_overrides(base, [change]).recipe_hash() != base.recipe_hash(), change


def test_cli_bad_inputs_are_one_line(capsys, tmp_path):
    from t2ibench.cli import main

    data = write_folder(tmp_path / "d", 2)
    cases = [(["train", "no_such_variant"], "unknown variant"),
             (["train", "sdxl", "optim.lr=abc"], "optim.lr expects a number"),
             (["train", "sdxl", "model.nope=1"], "unknown config key"),
             (["train", "sdxl", f"--out={tmp_path}"], "no training data"),
             (["train", "sdxl", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)], "not found"),
             # the study's frozen text encoder is not downloadable here: one line naming the file
             (["train", "sdxl", "--data", str(data), "--out", str(tmp_path / "o")], "no usable samples (checked 2 of 2: 2 undersized)"),
             (["train", "sdxl", "--data", str(data), "--out", str(tmp_path / "o"), "resolution=32"], "open_clip_model.safetensors")]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and "Traceback" not in err, err


# -- caption mixing ---------------------------------------------------------------------------------

def test_caption_mixing_frequencies():
    rng = np.random.default_rng(0)
    synthetic = [f"s{i}" for i in range(5)]
    n = 20_000
    counts = Counter(choose_caption("alt", synthetic, rng)[1] for _ in range(n))
    # alt-text with p=0.5, each of the top-5 with p=0.1; 5-sigma binomial bounds
    assert abs(counts[-1] / n - 0.5) < 5 * (0.25 / n) ** 0.5
    for i in range(5):
        assert abs(counts[i] / n - 0.1) < 5 * (0.09 / n) ** 0.5
    top1 = Counter(choose_caption("alt", synthetic, rng, top_k=1)[0] for _ in range(2000))
    assert set(top1) == {"alt", "s0"}
    assert Counter(choose_caption("alt", None, rng)[0] for _ in range(100)) == {"alt": 100}
    assert Counter(choose_caption(None, ["only"], rng)[0] for _ in range(100)) == {"only": 100}
    mostly_alt = Counter(choose_caption("alt", synthetic, rng, alt_text_prob=0.9)[1] == -1 for _ in range(n))
    assert abs(mostly_alt[True] / n - 0.9) < 5 * (0.09 / n) ** 0.5


def test_mixing_and_dropout_through_sidecars(tmp_path):
    """The paper's mixing as the training data applies it, read from real `.syn.json` sidecars."""
    root = write_folder(tmp_path / "d", 2, synthetic=True)
    rules = SampleRules(resolution=32, min_side=32, alt_text_prob=0.5, top_k=5, caption_dropout=0.1,
                        noise_shape=(3, 32, 32))
    data = TrainingData(index_dataset(root), rules)
    n = 3000
    examples = [data[p] for p in range(n)]
    dropped = sum(e["dropped"] for e in examples)
    assert abs(dropped / n - 0.1) < 5 * (0.09 / n) ** 0.5
    kept = [e for e in examples if not e["dropped"]]
    alt = sum(e["caption"] in ("a red square", "a green square") for e in kept)
    assert abs(alt / len(kept) - 0.5) < 5 * (0.25 / len(kept)) ** 0.5
    assert {e["caption"].split()[0] for e in kept} == {"a", "syn0", "syn1", "syn2", "syn3", "syn4"}
    assert all(e["caption"] == "" for e in examples if e["dropped"])


# -- reading, skipping, order ------------------------------------------------------------------------

def test_corrupt_undersized_and_captionless_samples_are_skipped_and_counted(tmp_path):
    root = write_folder(tmp_path / "d", 6)
    (root / "bad1.png").write_bytes(b"not an image at all")
    (root / "bad1.txt").write_text("garbage")
    good = png_bytes(shape_image(0)[0])
    (root / "bad2.png").write_bytes(good[: len(good) // 2])  # truncated
    (root / "bad2.txt").write_text("truncated")
    shape_image(1, size=(20, 20))[0].save(root / "small.png")
    (root / "small.txt").write_text("too small")
    shape_image(2)[0].save(root / "nocap.png")
    rules = SampleRules(resolution=32, min_side=32, alt_text_prob=0.5, top_k=5, caption_dropout=0.0,
                        noise_shape=(3, 32, 32))
    data = TrainingData(index_dataset(root), rules)
    assert len(data) == 10
    batch = collate([data[p] for p in range(10)])  # one epoch
    assert batch["skipped"] == Counter(corrupt=2, undersized=1, no_caption=1)
    assert batch["size"] == 6 and batch["pixels"].shape == (6, 3, 32, 32)
    assert batch["pixels"].min() >= -1 and batch["pixels"].max() <= 1


def test_no_usable_samples_is_one_clear_error(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.png").write_bytes(b"\x89PNG broken")
        (root / f"{i}.txt").write_text("x")
    rules = SampleRules(resolution=32, min_side=32, alt_text_prob=0.5, top_k=5, caption_dropout=0.0,
                        noise_shape=(3, 32, 32))
    with pytest.raises(UserError, match="no usable samples .*3 corrupt"):
        check_usable(index_dataset(root), rules)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no folder samples"):
        index_dataset(empty)


def _write_tar(path, items):
    with tarfile.open(path, "w") as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_webdataset_and_parquet_match_the_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 6
    folder = write_folder(tmp_path / "folder", n, synthetic=True)
    shards = tmp_path / "wds"
    shards.mkdir()
    for s in range(2):
        items = []
        for i in range(s * 3, s * 3 + 3):
            stem = f"{i:04d}"
            items += [(f"{stem}.png", (folder / f"{stem}.png").read_bytes()),
                      (f"{stem}.txt", (folder / f"{stem}.txt").read_bytes()),
                      (f"{stem}.syn.json", (folder / f"{stem}.syn.json").read_bytes())]
        _write_tar(shards / f"shard-{s:05d}.tar", items)
    from t2ibench.data.shard_index import index_shards

    index_shards(shards)
    table = pa.table({"image": [(folder / f"{i:04d}.png").read_bytes() for i in range(n)],
                      "caption": [(folder / f"{i:04d}.txt").read_text() for i in range(n)],
                      "syn_captions": [(folder / f"{i:04d}.syn.json").read_text() for i in range(n)]})
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "part-0.parquet", row_group_size=3)
    rules = SampleRules(resolution=32, min_side=32, alt_text_prob=0.5, top_k=5, caption_dropout=0.0,
                        noise_shape=(3, 32, 32))
    from t2ibench.train.data import load_item

    def content(spec):
        index = index_dataset(spec)
        out = {}
        for item in range(len(index)):
            pixels, alt, syn = load_item(index, item, rules)
            out[alt] = (pixels, syn)
        return index, out

    _, ref = content(folder)
    for spec, blocks in ((shards, 2), (tmp_path / "pq", 2)):
        index, got = content(spec)
        assert len(index) == n and len(index.block_sizes) == blocks
        assert got.keys() == ref.keys()
        for cap in ref:
            assert torch.equal(got[cap][0], ref[cap][0]) and got[cap][1] == ref[cap][1]
        order = epoch_order(len(index), index.block_sizes, seed=0, epoch=0).tolist()
        assert sorted(order) == list(range(n))
        # blocked shuffle: each shard's items are visited together
        assert all({int(i) // 3 for i in order[k:k + 3]} .__len__() == 1 for k in (0, 3))


def test_positions_split_the_global_batch_exactly():
    one = StepBatches(5, 8, 2, world=1, rank=0)
    two = [StepBatches(5, 8, 2, world=2, rank=r) for r in range(2)]
    assert one.accumulation == 4 and two[0].accumulation == 2
    whole = sorted(p for a in range(4) for p in one.positions(5, a))
    split = sorted(p for b in two for a in range(2) for p in b.positions(5, a))
    assert whole == split == list(range(40, 48))
    with pytest.raises(UserError, match="not a multiple"):
        StepBatches(0, 10, 4, world=1, rank=0)


def test_randomness_is_a_function_of_position(tmp_path):
    root = write_folder(tmp_path / "d", 4)
    rules = SampleRules(resolution=32, min_side=32, alt_text_prob=0.5, top_k=5, caption_dropout=0.1,
                        noise_shape=(3, 32, 32), seed=3)
    a, b = TrainingData(index_dataset(root), rules), TrainingData(index_dataset(root), rules)
    for p in (0, 5, 17):
        ea, eb = a[p], b[p]
        assert torch.equal(ea["noise"], eb["noise"]) and ea["timestep"] == eb["timestep"] and ea["item"] == eb["item"]
    assert not torch.equal(a[0]["noise"], a[1]["noise"])
    # every epoch visits every item once
    assert sorted(a.item_at(p) for p in range(4, 8)) == [0, 1, 2, 3]


def test_noise_schedule_is_a_recipe_field_that_reaches_the_model(tmp_path):
    from t2ibench.train.components import new_run_model

    base = RunConfig(variant="sdxl")
    assert (base.model.beta_schedule, base.model.beta_start, base.model.beta_end) == ("scaled_linear", 0.00085, 0.012)
    linear = apply_overrides(base, ["model.beta_schedule=linear", "model.beta_start=1e-4", "model.beta_end=0.02"])
    assert linear.recipe_hash() != base.recipe_hash()
    from train_helpers import make_config

    cfg = apply_overrides(make_config(tmp_path, tmp_path / "run"),
                          ["model.beta_schedule=linear", "model.beta_start=1e-4", "model.beta_end=0.02"])
    model = new_run_model(cfg)
    ddpm = model.schedule.ddpm()
    assert model.info.schedule["beta_schedule"] == "linear"
    assert abs(float(ddpm.betas[0]) - 1e-4) < 1e-9 and abs(float(ddpm.betas[-1]) - 0.02) < 1e-7
    with pytest.raises(UserError, match="beta_schedule"):
        new_run_model(apply_overrides(cfg, ["model.beta_schedule=cosine"]))


def test_v_prediction_with_zero_terminal_snr(tmp_path):
    from t2ibench.model import NoiseSchedule
    from t2ibench.train.components import new_run_model
    from train_helpers import make_config

    schedule = NoiseSchedule(prediction_type="v_prediction", rescale_betas_zero_snr=True)
    ddpm = schedule.ddpm()
    assert float(ddpm.alphas_cumprod[-1]) < 1e-6  # no signal left at t=T
    assert int(schedule.ddim().config.steps_offset) == 0 and schedule.ddim().config.timestep_spacing == "trailing"
    x0, noise, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([10, 999])
    a, s = ddpm.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1), (1 - ddpm.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(schedule.training_target(ddpm, x0, noise, t), a * noise - s * x0, atol=1e-6)
    assert torch.equal(NoiseSchedule().training_target(ddpm, x0, noise, t), noise)
    with pytest.raises(UserError, match="needs model.prediction_type=v_prediction"):
        new_run_model(apply_overrides(make_config(tmp_path, tmp_path / "r"), ["model.zero_terminal_snr=true"]))
