"""Prompt sets: manifests agree with the real upstream copies in shared/data/prompts, loading is
checksum-verified, counts and ids are right, user files of every type load, bad input is one line."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

import pytest

from t2ibench.errors import UserError
from t2ibench.prompts import PAPER_PROMPT_SETS, load_prompt_set, manifest_names, read_manifest, resolve_file
from t2ibench.prompts.sources import git_blob_sha1

OFFLINE_SETS = ["tifa-v1", "coco-10k", "parti", "drawbench", "geneval", "imagereward-100", "t2i-compbench"]


@pytest.fixture(scope="module")
def prompts_dir(shared_data):
    return shared_data / "prompts"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("T2IBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("T2IBENCH_PROMPTS_DIR", raising=False)


def test_every_manifest_is_complete():
    assert set(OFFLINE_SETS) | {"hpsv2"} <= set(manifest_names())
    for name in manifest_names():
        m = read_manifest(name)
        assert m["name"] == name and m["license"] and m["count"] > 0
        for f in m["files"].values():
            if "url" in f:  # GitHub raw URL at a full pinned commit
                assert f["url"] == f"https://raw.githubusercontent.com/{f['repo']}/{f['commit']}/{f['path']}"
                assert len(f["commit"]) == 40
            assert f.get("sha256") or f.get("git_blob_sha1") or f.get("hf_dataset")


@pytest.mark.parametrize("name", OFFLINE_SETS)
def test_sets_load_from_local_copies_with_checksums_and_counts(name, prompts_dir):
    pset = load_prompt_set(name, prompts_dir)
    manifest = read_manifest(name)
    assert len(pset) == manifest["count"]
    ids = [r.id for r in pset.records]
    assert len(set(ids)) == len(ids) and all(r.text.strip() for r in pset.records)
    for key, spec in manifest["files"].items():
        if key == "questions":
            continue
        raw = (prompts_dir / spec["local_path"]).read_bytes()
        assert pset.files[key] == hashlib.sha256(raw.removeprefix(b"\xef\xbb\xbf")).hexdigest() == spec["sha256"]
    assert load_prompt_set(name, prompts_dir).sha256 == pset.sha256  # stable


def test_manifests_match_the_pinned_git_trees(prompts_dir):
    # The git blob ids of these files at the pinned commits (from the upstream trees) equal the local copies'.
    assert git_blob_sha1((prompts_dir / "tifa/tifa_v1.0_text_inputs.json").read_bytes()) == \
        "ac00985c8f552a3e51b3ef84ac7bfd0e59e41500"
    assert git_blob_sha1((prompts_dir / "coco/coco_30k.csv").read_bytes()) == "b0b16d4969c858ceefbdd2a804b718f7288375bb"


def test_tifa_v1_sources_and_coco_ids(prompts_dir):
    pset = load_prompt_set("tifa-v1", prompts_dir)
    counts = {}
    for r in pset.records:
        counts[r.category] = counts.get(r.category, 0) + 1
    assert counts == {"coco": 2000, "partiprompt": 1420, "paintskill": 500, "drawbench": 161}  # shared/data/README
    first = pset.records[0]
    assert first.id == "coco_301091" and first.meta["coco_image_id"] == 380711


def test_coco_10k_is_a_reproducible_draw_of_coco_val(prompts_dir):
    pset = load_prompt_set("coco-10k", prompts_dir)
    with open(prompts_dir / "coco/coco_30k.csv", newline="") as fh:
        rows = {r["image_id"]: r["prompt"] for r in csv.DictReader(fh)}
    assert len({r.meta["coco_image_id"] for r in pset.records}) == 10_000
    assert all(rows[r.id] == r.text and int(r.id) == r.meta["coco_image_id"] for r in pset.records)
    assert pset.sha256 != read_manifest("coco-10k")["files"]["captions"]["sha256"]  # the draw is part of the id
    assert pset.describe()["draw"]["seed"] == read_manifest("coco-10k")["draw"]["seed"]


def test_limit_keeps_first_prompts_and_identity(prompts_dir):
    full = load_prompt_set("parti", prompts_dir)
    head = load_prompt_set("parti", prompts_dir, limit=5)
    assert [r.id for r in head.records] == [r.id for r in full.records[:5]] and head.sha256 == full.sha256
    assert head.describe()["n_used"] == 5 and head.describe()["n_total"] == 1632


def test_drawbench_checksum_ignores_the_upstream_byte_order_mark(prompts_dir, tmp_path):
    (tmp_path / "drawbench").mkdir()
    (tmp_path / "drawbench/drawbench.csv").write_bytes(b"\xef\xbb\xbf" + (prompts_dir / "drawbench/drawbench.csv").read_bytes())
    with_bom = load_prompt_set("drawbench", tmp_path)
    assert with_bom.sha256 == load_prompt_set("drawbench", prompts_dir).sha256
    assert with_bom.records[0].text == "A red colored car." and with_bom.records[0].category == "Colors"


def test_tampered_copy_is_rejected(prompts_dir, tmp_path):
    (tmp_path / "parti").mkdir()
    data = (prompts_dir / "parti/PartiPrompts.tsv").read_bytes()
    (tmp_path / "parti/PartiPrompts.tsv").write_bytes(data.replace(b"bond", b"bend", 1))
    with pytest.raises(UserError, match=r"PartiPrompts.tsv has sha256 .*`t2ibench prompts fetch parti`"):
        load_prompt_set("parti", tmp_path)


def test_missing_files_give_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_prompt_set("hpsv2", tmp_path)
    assert "--prompts-dir" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="unknown prompt set 'nope'"):
        load_prompt_set("nope")
    with pytest.raises(UserError, match="questions"):
        resolve_file("tifa-v1", "answers")


def test_tifa_question_file_is_checked_against_the_pinned_git_blob(tmp_path):
    (tmp_path / "tifa").mkdir()
    (tmp_path / "tifa/tifa_v1.0_question_answers.json").write_text("[]")
    with pytest.raises(UserError, match="not the pinned"):
        resolve_file("tifa-v1", "questions", tmp_path)


def test_user_files_of_every_type(tmp_path):
    (tmp_path / "p.txt").write_text("a red cube\n\n a blue ball \n")
    (tmp_path / "p.csv").write_text("id,caption,category,coco_image_id\nx1,a cat,animal,42\nx2,a dog,animal,7\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "one", "id": "a"}\n{"text": "two"}\n')
    (tmp_path / "p.json").write_text(json.dumps(["first", {"caption": "second", "category": "c"}]))
    txt = load_prompt_set(tmp_path / "p.txt")
    assert [r.text for r in txt.records] == ["a red cube", "a blue ball"] and txt.records[1].id == "00001"
    csv_set = load_prompt_set(str(tmp_path / "p.csv"))
    assert csv_set.records[0].id == "x1" and csv_set.records[0].meta["coco_image_id"] == 42
    assert csv_set.records[1].category == "animal"
    jsonl = load_prompt_set(tmp_path / "p.jsonl")
    assert [(r.id, r.text) for r in jsonl.records] == [("a", "one"), ("00001", "two")]
    js = load_prompt_set(tmp_path / "p.json", limit=1)
    assert [r.text for r in js] == ["first"] and js.total == 2
    assert txt.sha256 == hashlib.sha256((tmp_path / "p.txt").read_bytes()).hexdigest()
    (tmp_path / "dup.jsonl").write_text('{"prompt": "a", "id": "1"}\n{"prompt": "b", "id": "1"}\n')
    with pytest.raises(UserError, match="more than once"):
        load_prompt_set(tmp_path / "dup.jsonl")
    with pytest.raises(UserError, match="does not exist"):
        load_prompt_set(tmp_path / "absent.txt")


def test_paper_defaults():
    assert PAPER_PROMPT_SETS["tifa"] == PAPER_PROMPT_SETS["hpsv2"] == "tifa-v1"
    assert PAPER_PROMPT_SETS["imagereward"] == PAPER_PROMPT_SETS["clip"] == PAPER_PROMPT_SETS["fid"] == "coco-10k"


def test_cli_list_show_fetch(prompts_dir):
    run = lambda *a: subprocess.run([sys.executable, "-m", "t2ibench", "prompts", *a], capture_output=True, text=True)  # noqa: E731
    listed = run("list", "--format", "json")
    assert listed.returncode == 0
    assert {r["name"] for r in json.loads(listed.stdout)} == set(manifest_names())
    shown = run("show", "geneval", "--prompts-dir", str(prompts_dir), "--head", "2", "--format", "json")
    data = json.loads(shown.stdout)
    assert data["n_total"] == 553 and len(data["records"]) == 2
    fetched = run("fetch", "parti", "--prompts-dir", str(prompts_dir))
    assert fetched.returncode == 0 and "checksum ok" in fetched.stdout
    bad = run("show", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown prompt set" in bad.stderr
