"""`t2ibench data filter` on a small dataset with corrupt files, tiny images, exact and near duplicates,
in all three dataset kinds, with tiny randomly initialised models in the real formats."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from builders import curation_models as tiny
from t2ibench.cli import main
from t2ibench.data.dedup import DuplicateIndex, hamming, image_hash
from t2ibench.data.filter import FilterConfig, run_filter
from t2ibench.errors import UserError

KINDS = ("webdataset", "folder", "parquet")
CHEAP = dict(chunk_size=4, min_size=16, max_aspect=4.0, dedup="phash", progress=False)


def _extra_tar(path: Path, keys: list[str], truncate: bool) -> None:
    """A shard of distinct samples; when `truncate`, cut inside the last member's data."""
    tiny.write_dataset(path.parent / "_tmp", "webdataset",
                       [[{"key": k, "image": tiny.encode(tiny.noise_image(100 + i)), "caption": f"extra {k}"}
                         for i, k in enumerate(keys)]])
    data = (path.parent / "_tmp" / "shard-00000.tar").read_bytes()
    if truncate:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            last = tar.getmembers()[-1]
        data = data[:last.offset_data + 3]
    path.write_bytes(data)
    for f in (path.parent / "_tmp").iterdir():
        f.unlink()
    (path.parent / "_tmp").rmdir()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    shards, expected = tiny.demo_samples()
    root = tmp_path_factory.mktemp("demo")
    paths = {kind: tiny.write_dataset(root / kind, kind, shards) for kind in KINDS}
    (paths["webdataset"] / "shard-00003.tar").write_bytes(b"not a tar file " * 64)
    _extra_tar(paths["webdataset"] / "shard-00004.tar", ["t0", "t1", "t2"], truncate=True)
    (paths["parquet"] / "part-00009.parquet").write_bytes(b"PAR1 garbage")
    return paths, shards, expected


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"clip": tiny.make_open_clip_dir(root / "clip"), "head": tiny.make_aesthetic_head(root / "head.pth"),
            "nsfw": tiny.make_nsfw_dir(root / "nsfw")}


def _output(out: Path) -> dict[str, dict]:
    """key -> members of every sample in the output shards."""
    samples: dict[str, dict] = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, _, ext = m.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return samples


def test_demo_dataset_has_the_duplicates_it_claims(demo):
    from t2ibench.data.readers import decode_image

    _, shards, _ = demo
    imgs = {s["key"]: decode_image(s["image"]) for shard in shards for s in shard}
    h = {k: image_hash(im) for k, im in imgs.items() if im is not None and min(im.size) >= 16}
    assert h["s00"] == h["s03"]
    assert hamming(h["s01"], h["s12"]) <= 4
    distinct = ["s00", "s01", "s10", "s20", "s21", "s22"]
    assert min(hamming(h[a], h[b]) for a in distinct for b in distinct if a < b) > 4


@pytest.mark.parametrize("kind", KINDS)
def test_filter_removes_and_counts(demo, kind, tmp_path):
    paths, _, expected = demo
    report = run_filter(FilterConfig(str(paths[kind]), tmp_path / "out", **CHEAP))
    removed = report["removed"]
    for reason in ("unreadable", "too_small", "bad_aspect", "duplicate"):
        assert removed[reason] == expected[reason], reason
    kept = _output(tmp_path / "out")
    extra = {"webdataset": ["t0", "t1"]}.get(kind, [])  # read before the truncation point
    assert sorted(kept) == sorted(expected["kept"] + extra)
    assert report["samples_out"] == len(kept)
    assert report["samples_in"] == expected["in"] + len(extra)
    bad = {b["shard"] for b in report["bad_shards"]}
    assert bad == {"webdataset": {"shard-00003", "shard-00004"}, "parquet": {"part-00009-rg0000"},
                   "folder": set()}[kind]
    s00 = json.loads(kept["s00"]["json"])
    assert (s00["width"], s00["height"]) == (64, 48) and kept["s00"]["txt"] == b"A dog and two cats sitting on a red couch."
    assert json.loads(kept["s21"]["syn.json"])["captions"][0] == "a woman with an umbrella"
    assert kept["s01"]["jpg"][:2] == b"\xff\xd8" and kept["s22"]["webp"][8:12] == b"WEBP"  # original bytes
    on_disk = json.loads((tmp_path / "out" / "filter_report.json").read_text())
    assert on_disk["removed"] == removed


def test_dedup_index_equals_brute_force():
    rng = random.Random(0)
    base = [rng.getrandbits(64) for _ in range(40)]
    hashes = base + [b ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for b in base[:20]]
    rng.shuffle(hashes)
    for d in (0, 1, 3, 6):
        index, kept = DuplicateIndex(d), []
        for h in hashes:
            dup = index.check_and_add(h)
            assert dup == any(hamming(h, k) <= d for k in kept)
            if not dup:
                kept.append(h)


def test_model_filters_match_the_libraries(demo, models, tmp_path):
    """NSFW removal follows transformers' own pipeline; aesthetic removal follows the upstream MLP
    (five linear layers, no activations) applied by hand to open_clip's normalised embeddings."""
    import numpy as np
    import open_clip
    import torch
    from transformers import pipeline

    from t2ibench.data.readers import decode_image

    paths, shards, _ = demo
    candidates = {s["key"]: decode_image(s["image"]) for shard in shards for s in shard}
    candidates = {k: im for k, im in candidates.items()
                  if im is not None and min(im.size) >= 16 and max(im.size) / min(im.size) <= 4}
    keys = sorted(candidates)
    clf = pipeline("image-classification", model=str(models["nsfw"]))
    p_nsfw = {k: next(r["score"] for r in clf(candidates[k]) if r["label"] == "nsfw") for k in keys}
    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{models['clip']}", force_quick_gelu=True)
    with torch.no_grad():
        emb = clip.eval().encode_image(torch.stack([preprocess(candidates[k]) for k in keys])).numpy()
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    state = torch.load(models["head"], weights_only=True)
    for i in (0, 2, 4, 6, 7):
        x = x @ state[f"layers.{i}.weight"].numpy().T + state[f"layers.{i}.bias"].numpy()
    aesthetic = dict(zip(keys, x[:, 0].tolist()))

    def between(values):  # a threshold halfway between two distinct middle values: no float ties
        v = sorted(set(round(x, 5) for x in values))
        return (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

    nsfw_t = between(p_nsfw.values())
    survivors = [k for k in keys if p_nsfw[k] < nsfw_t]
    aes_t = between(aesthetic[k] for k in survivors)
    report = run_filter(FilterConfig(
        str(paths["folder"]), tmp_path / "out", chunk_size=4, min_size=16, max_aspect=4.0, progress=False,
        nsfw_threshold=nsfw_t, nsfw_weights=str(models["nsfw"]), aesthetic_threshold=aes_t,
        clip_weights=str(models["clip"]), aesthetic_weights=str(models["head"]), batch_size=3))
    expected = [k for k in survivors if aesthetic[k] >= aes_t]
    assert report["removed"]["nsfw"] == len(keys) - len(survivors) > 0
    assert report["removed"]["low_aesthetic"] == len(survivors) - len(expected) > 0
    kept = _output(tmp_path / "out")
    assert sorted(kept) == expected
    for k in expected:
        rec = json.loads(kept[k]["json"])
        assert rec["aesthetic"] == pytest.approx(aesthetic[k], abs=1e-4)
        assert rec["nsfw_prob"] == pytest.approx(p_nsfw[k], abs=1e-4)


def test_interrupted_run_resumes_without_redoing_finished_shards(demo, tmp_path):
    paths, _, _ = demo
    straight = run_filter(FilterConfig(str(paths["webdataset"]), tmp_path / "straight", **CHEAP))

    def stop_after_first(name):
        raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_filter(FilterConfig(str(paths["webdataset"]), out, **CHEAP), on_shard_done=stop_after_first)
    assert (out / "_done" / "shard-00000.json").exists() and not (out / "_done" / "shard-00001.json").exists()
    first = (out / "shard-00000.tar").stat()
    (out / "shard-00001.tar.tmp").write_bytes(b"half-written by a killed run")
    report = run_filter(FilterConfig(str(paths["webdataset"]), out, **CHEAP))
    again = (out / "shard-00000.tar").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert report["shards"] == {"total": 5, "resumed": 1, "processed": 4}
    # the near-duplicate in shard 1 of a sample in shard 0 is still found after the restart
    assert report["removed"] == straight["removed"] and report["samples_out"] == straight["samples_out"]
    assert sorted(_output(out)) == sorted(_output(tmp_path / "straight"))
    assert not (out / "shard-00001.tar.tmp").exists()


def test_other_settings_into_the_same_output_are_refused(demo, tmp_path):
    paths, _, _ = demo
    run_filter(FilterConfig(str(paths["folder"]), tmp_path / "out", **CHEAP))
    with pytest.raises(UserError, match="min_size"):
        run_filter(FilterConfig(str(paths["folder"]), tmp_path / "out", **{**CHEAP, "min_size": 32}))


def test_cli_filter_json_and_missing_model_lines(demo, models, tmp_path, capsys, monkeypatch):
    paths, _, expected = demo
    monkeypatch.delenv("T2IBENCH_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    rc = main(["data", "filter", str(paths["folder"]), "--out", str(tmp_path / "o"), "--min-size", "16",
               "--max-aspect", "4", "--dedup", "phash", "--chunk-size", "4", "--no-progress", "--format", "json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["removed"]["duplicate"] == expected["duplicate"]

    rc = main(["data", "filter", str(paths["folder"]), "--out", str(tmp_path / "o2"), "--no-progress",
               "--aesthetic-threshold", "5", "--clip-weights", str(models["clip"])])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "aesthetic-model.pth" in err and "--aesthetic-weights" in err
    assert not list((tmp_path / "o2").glob("*.tar*"))

    rc = main(["data", "filter", str(paths["folder"]), "--out", str(tmp_path / "o3"), "--no-progress",
               "--nsfw-threshold", "0.5"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Falconsai/nsfw_image_detection" in err

    rc = main(["data", "filter", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o4")])
    assert rc == 2 and "not found" in capsys.readouterr().err
