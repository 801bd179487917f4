"""`t2ibench metrics`, `t2ibench weights check` and `t2ibench eval --images` on tiny models, plus bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from t2ibench.cli import main
from t2ibench.images import load_image, load_prompts, match_images
from t2ibench.metrics import SCORERS, PromptRecord, scorer_class
from tiny_scorers import build_tiny_clip, make_images

PROMPTS = ["a photo of a cat", "a red car", "two dogs", "a bowl of fruit"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cliclip")
    return build_tiny_clip(folder)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_metrics_json_lists_every_scorer_with_version_kind_and_files(capsys, offline_empty):
    code, out, _ = run_cli(capsys, "metrics", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == set(SCORERS)
    assert rows["fid"]["kind"] == "distribution" and rows["clip"]["kind"] == "per-image"
    assert rows["hpsv2"]["version"] != rows["hpsv2.1"]["version"]
    assert rows["imagereward"]["weights"] == "missing"
    assert {f["filename"] for f in rows["imagereward"]["files"]} == {"ImageReward.pt", "med_config.json", "vocab.txt"}


def test_weights_check_finds_files_under_t2ibench_weights(capsys, offline_empty, tiny_clip):
    code, out, _ = run_cli(capsys, "weights", "check", "--metrics", "clip")
    assert code == 1 and "MISSING" in out and "t2ibench weights fetch --metrics clip" in out
    (wf,) = scorer_class("clip").weight_files()
    target = offline_empty / "weights" / wf.repo_id / wf.filename
    target.parent.mkdir(parents=True)
    shutil.copyfile(tiny_clip[1], target)
    code, out, _ = run_cli(capsys, "weights", "check", "--metrics", "clip")
    assert code == 0 and str(target) in out


def test_weights_fetch_offline_is_one_line(capsys, offline_empty):
    code, _, err = run_cli(capsys, "weights", "fetch", "--metrics", "hpsv2")
    assert code == 2 and err.count("\n") == 1 and "HPS_v2_compressed.pt" in err


def test_eval_images_writes_per_item_aggregate_versions_and_skips(capsys, tmp_path, tiny_clip):
    arch, path = tiny_clip
    images = tmp_path / "imgs"
    make_images(images, 3, size=(64, 48))
    (images / "00003.png").write_bytes(b"not a png")  # unreadable: skipped and counted
    (images / "notes.txt").write_text("ignored")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "eval", "--images", str(images), "--prompts", str(prompts),
                                "--metrics", "clip,clip-x100", "--out", str(out), "--batch-size", "2",
                                "--weights", f"clip.clip={path}", "--weights", f"clip-x100.clip={path}",
                                "--option", f"clip.arch={arch}", "--option", "clip.pretrained=tiny",
                                "--option", f"clip-x100.arch={arch}", "--option", "clip-x100.pretrained=tiny")
    assert code == 0, err
    record = json.loads((out / "results.json").read_text())
    assert record["n_skipped"] == 1 and record["skipped_images"] == ["00003.png"]
    clip = record["metrics"]["clip"]
    assert clip["n_items"] == 3 and clip["n_skipped"] == 1
    assert record["manifest"]["scorers"]["clip"] == clip["version"] == f"clip/open_clip:{arch}/tiny/cosine"
    # Per-item numbers are the scorer's own on the same images and prompts.
    direct = scorer_class("clip")(weights={"clip": path}, arch=arch, pretrained="tiny").score(
        [load_image(images / f"{i:05d}.png") for i in range(3)], [PromptRecord(f"{i:05d}", t) for i, t in
                                                                   enumerate(PROMPTS[:3])])
    assert [it["id"] for it in clip["per_item"]] == ["00000", "00001", "00002"]
    for item, ref in zip(clip["per_item"], direct.per_item):
        assert item["value"] == pytest.approx(ref.value, rel=1e-5)
    assert clip["value"] == pytest.approx(direct.value, rel=1e-5)
    x100 = record["metrics"]["clip-x100"]
    assert x100["value"] == pytest.approx(sum(100 * max(it.value, 0) for it in direct.per_item) / 3, rel=1e-5)
    assert not list(out.glob(".*tmp"))  # no temporary file left behind


def test_images_match_by_prompt_id_or_index(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps({"id": f"coco_{i}", "prompt": t, "image_id": 100 + i})
                               for i, t in enumerate(PROMPTS)))
    records = list(load_prompts(str(jsonl)))
    assert records[1].id == "coco_1" and records[1].meta["coco_image_id"] == 101
    make_images(tmp_path / "by_id", 2, names=["coco_2", "coco_0"])
    m = match_images(tmp_path / "by_id", records)
    assert m.by == "id" and [p.id for p in m.prompts] == ["coco_0", "coco_2"] and m.prompts_without_image == 2
    make_images(tmp_path / "by_index", 2, names=["00003", "1"])
    m = match_images(tmp_path / "by_index", records)
    assert m.by == "index" and [p.id for p in m.prompts] == ["coco_1", "coco_3"]


@pytest.mark.parametrize("case, needle", [
    ("unknown-metric", "unknown metric(s) clipp"),
    ("empty-folder", "no images"),
    ("mismatch", "match no prompt id"),
    ("index-beyond", "beyond the 4 prompts"),
    ("missing-weights", "t2ibench weights fetch --metrics imagereward"),
    ("no-prompts", "--prompts"),
])
def test_eval_bad_input_is_one_line_and_writes_nothing(capsys, offline_empty, case, needle):
    tmp = offline_empty
    images = tmp / "imgs"
    images.mkdir()
    if case == "mismatch":
        make_images(images, 1, names=["cat"])
    elif case == "index-beyond":
        make_images(images, 1, names=["00009"])
    elif case != "empty-folder":
        make_images(images, 2)
    prompts = tmp / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    argv = ["eval", "--images", str(images), "--metrics", "clipp" if case == "unknown-metric" else "imagereward",
            "--out", str(tmp / "out")]
    if case != "no-prompts":
        argv += ["--prompts", str(prompts)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp / "out").exists()
