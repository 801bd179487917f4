"""`t2ibench data caption` with a tiny randomly initialised BLIP-2 (ViT + Q-Former + OPT) saved with
save_pretrained and a BPE tokenizer built offline, in all three dataset kinds."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from builders import curation_models as tiny
from t2ibench.cli import main
from t2ibench.data.caption import CaptionConfig, run_caption
from t2ibench.data.readers import ShardStats, decode_image, open_dataset
from t2ibench.errors import UserError

KINDS = ("webdataset", "folder", "parquet")
GEN = dict(max_new_tokens=6, progress=False, chunk_size=4)


@pytest.fixture(scope="module")
def blip2(tmp_path_factory):
    return tiny.make_blip2_dir(tmp_path_factory.mktemp("models") / "blip2")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    shards, _ = tiny.demo_samples()
    root = tmp_path_factory.mktemp("demo")
    return {kind: tiny.write_dataset(root / kind, kind, shards) for kind in KINDS}, shards


def _records(path, kind=None):
    ds = open_dataset(path, kind, chunk_size=4)
    return {s.key: s for shard in ds.shards for s in shard.samples(ShardStats())}


def test_records_are_the_models_own_ranked_beams(blip2, demo, tmp_path):
    import torch
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    paths, shards = demo
    folder = shutil.copytree(paths["folder"], tmp_path / "folder")
    report = run_caption(CaptionConfig(str(folder), weights=str(blip2), **GEN))
    assert report["counts"] == {"in": 11, "unreadable": 2, "already_captioned": 1, "captioned": 8}
    samples = _records(folder)
    assert samples["s21"].syn["model"] == "hand-written"  # an existing record is kept
    assert samples["s02"].syn is None and samples["s13"].syn is None  # unreadable images: no record

    model = Blip2ForConditionalGeneration.from_pretrained(blip2).eval()
    processor = Blip2Processor.from_pretrained(blip2)
    image = decode_image(samples["s10"].image)
    with torch.no_grad():
        out = model.generate(**processor(images=[image], return_tensors="pt"), num_beams=5, num_return_sequences=5,
                             max_new_tokens=6, output_scores=True, return_dict_in_generate=True)
    texts = processor.tokenizer.batch_decode(out.sequences[:, -len(out.scores):], skip_special_tokens=True)
    expected = [(" ".join(t.split()), s) for s, t in sorted(zip(out.sequences_scores.tolist(), texts), reverse=True)]
    expected = [(t, s) for i, (t, s) in enumerate(expected) if t and t not in [e[0] for e in expected[:i]]]
    rec = samples["s10"].syn
    assert rec["captions"] == [t for t, _ in expected]
    assert rec["scores"] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert rec["version"] == 1 and rec["method"] == "beam" and rec["model"] == str(blip2)
    for key in ("s00", "s01", "s10", "s12", "s20", "s22"):
        scores = samples[key].syn["scores"]
        assert 1 <= len(scores) <= 5 and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("kind", ["webdataset", "parquet"])
def test_shards_and_parquet_get_a_complete_copy_and_resume(blip2, demo, kind, tmp_path):
    paths, _ = demo
    out = tmp_path / "out"
    cfg = dict(weights=str(blip2), **GEN)
    report = run_caption(CaptionConfig(str(paths[kind]), out, **cfg))
    assert report["counts"]["captioned"] == 8 and report["counts"]["unreadable"] == 2
    original, captioned = _records(paths[kind]), _records(out)
    assert sorted(captioned) == sorted(original)
    for key, s in captioned.items():
        assert s.image == original[key].image and s.caption == original[key].caption
        assert (s.syn is not None) == (key not in ("s02", "s13"))
    files = sorted(out.glob(f"*.{'tar' if kind == 'webdataset' else 'parquet'}"))
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    # lose the last unit as a killed run would, then rerun: only that unit is redone
    files[-1].unlink()
    if kind == "webdataset":
        (out / "_done" / f"{files[-1].stem}.json").unlink()
    again = run_caption(CaptionConfig(str(paths[kind]), out, **cfg))
    assert again["units"]["resumed"] == len(files) - 1
    assert {f.name: f.stat().st_mtime_ns for f in files[:-1]} == {k: v for k, v in stamps.items() if k != files[-1].name}
    assert _records(out) .keys() == captioned.keys()


def test_sampling_scores_are_mean_token_logprobs(blip2, demo, tmp_path):
    paths, _ = demo
    out = tmp_path / "out"
    run_caption(CaptionConfig(str(paths["webdataset"]), out, weights=str(blip2), method="sample", seed=1, **GEN))
    rec = _records(out)["s00"].syn
    assert rec["method"] == "sample" and rec["scores"] == sorted(rec["scores"], reverse=True)
    assert all(-math.inf < s <= 0 for s in rec["scores"])


def test_missing_or_broken_captioner_is_one_line(blip2, demo, tmp_path, capsys, monkeypatch):
    paths, _ = demo
    monkeypatch.delenv("T2IBENCH_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    rc = main(["data", "caption", str(paths["webdataset"]), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Salesforce/blip2-opt-2.7b" in err

    broken = shutil.copytree(blip2, tmp_path / "broken")
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (broken / f).unlink(missing_ok=True)
    with pytest.raises(UserError, match="tokenizer"):
        run_caption(CaptionConfig(str(paths["webdataset"]), tmp_path / "o2", weights=str(broken), **GEN))

    rc = main(["data", "caption", str(paths["parquet"]), "--no-progress"])
    assert rc == 2 and "--out" in capsys.readouterr().err


def test_cli_caption_json(blip2, demo, tmp_path, capsys):
    paths, _ = demo
    rc = main(["data", "caption", str(paths["parquet"]), "--out", str(tmp_path / "o"), "--captioner-weights",
               str(blip2), "--max-new-tokens", "4", "--num-captions", "3", "--no-progress", "--format", "json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_captions"] == 3 and report["counts"]["captioned"] == 8
    assert all(len(s.syn["captions"]) <= 3 for k, s in _records(tmp_path / "o").items() if s.syn and k != "s21")
