"""Prompt sets of the alignment metrics (pins and counts) and their bad-input lines, before any model loads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from t2ibench.errors import UserError
from t2ibench.metrics import check_prompts
from t2ibench.prompts import formats, load_prompt_set, read_manifest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompts"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/prompts not present")


def git_tree_sha1(folder: Path) -> str:
    """git's tree id of a flat folder of regular files (mode 100644), as `git rev-parse HEAD:<folder>`."""
    entries = b""
    for p in sorted(folder.iterdir(), key=lambda p: p.name.encode()):
        raw = p.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).digest()
        entries += b"100644 " + p.name.encode() + b"\0" + blob
    return hashlib.sha1(b"tree %d\0" % len(entries) + entries).hexdigest()


@needs_shared
def test_geneval_553_and_dpg_prompt_folder_pinned_1065():
    assert len(load_prompt_set("geneval", local_dir=SHARED)) == 553 == read_manifest("geneval")["count"]
    pinned = read_manifest("dpg-bench")["prompt_files"]
    folder = SHARED / "dpg_bench" / "prompts"
    assert len(list(folder.iterdir())) == 1065 == pinned["count"] == read_manifest("dpg-bench")["count"]
    assert git_tree_sha1(folder) == pinned["git_tree_sha1"]  # byte-identical to ELLA@3c228f1d's prompts


def test_manifests_pin_upstream():
    dpg = read_manifest("dpg-bench")["files"]["graphs"]
    assert dpg["commit"] in dpg["url"] and len(dpg["git_blob_sha1"]) == 40
    genai = read_manifest("genai-bench")
    assert genai["count"] == 1600 and genai["files"]["prompts"]["hf_dataset"] == "BaiqiL/GenAI-Bench-1600"


def test_genai_bench_count_is_checked_by_the_loader(tmp_path):
    # sha256 not pinned yet (BaiqiL/GenAI-Bench-1600 unreachable here): the count still guards the set
    (tmp_path / "genai_bench").mkdir()
    (tmp_path / "genai_bench/genai_image.json").write_text(json.dumps({"00000": {"prompt": "a cat"}}))
    (tmp_path / "genai_bench/genai_skills.json").write_text(json.dumps({"basic": [0]}))
    with pytest.raises(UserError, match="read 1 prompts, the manifest says 1600") as err:
        load_prompt_set("genai-bench", local_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_dpg_csv_with_other_bytes_is_rejected_by_its_git_blob_pin(tmp_path):
    from test_dpg_scoring import csv_text

    (tmp_path / "dpg_bench").mkdir()
    (tmp_path / "dpg_bench/dpg_bench.csv").write_text(csv_text())
    with pytest.raises(UserError) as err:
        load_prompt_set("dpg-bench", local_dir=tmp_path)
    line = str(err.value)
    assert "dpg_bench.csv" in line and "sha256 " in line and "expected 98457fc99019" in line
    assert "`t2ibench prompts fetch dpg-bench`" in line and "\n" not in line


def test_genai_bench_format_reads_skills(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"00000": {"prompt": "a cat"}, "00001": {"prompt": "no dogs"},
                                                 "00002": {"prompt": "x"}}))
    (tmp_path / "s.json").write_text(json.dumps({"basic": [0], "attribute": [0], "advanced": [1], "negation": [1]}))
    recs = formats.genai_bench_json({"prompts": tmp_path / "p.json", "skills": tmp_path / "s.json"}, {})
    assert [(r.id, r.category, r.meta["skills"]) for r in recs] == [
        ("00000", "basic", ["basic", "attribute"]), ("00001", "advanced", ["advanced", "negation"]), ("00002", None, [])]


def test_dpg_format_carries_graphs(tmp_path):
    from test_dpg_scoring import csv_text

    (tmp_path / "g.csv").write_text(csv_text())
    recs = formats.dpg_bench_csv({"graphs": tmp_path / "g.csv"}, {})
    assert [r.id for r in recs] == ["first", "b", "c", "d"]
    assert [q["qid"] for q in recs[1].meta["dpg_questions"]] == [1, 2, 3, 4]
    check_prompts("dpg", recs * 4, k="official")  # four images per prompt: accepted


@needs_shared
def test_bad_input_lines():
    geneval = load_prompt_set("geneval", local_dir=SHARED, limit=3).records
    with pytest.raises(UserError, match="official protocol scores 4"):
        check_prompts("geneval", geneval)                      # K = 1
    check_prompts("geneval", geneval, 4)                       # K = 4 declared by the protocol
    check_prompts("geneval", geneval, k="any")                 # K = 1 accepted, recorded as k=1
    with pytest.raises(UserError, match="no DPG-Bench question graph"):
        check_prompts("dpg", geneval, 4)
    with pytest.raises(UserError, match="no GenEval metadata"):
        check_prompts("geneval", load_prompt_set("drawbench", local_dir=SHARED, limit=2).records, 4)
