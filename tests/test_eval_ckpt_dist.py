"""`accelerate launch -m t2ibench eval --ckpt`: two CPU processes (gloo) give the images and scores of one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tiny_t2i import tiny_model, write_question_file  # noqa: E402


def test_two_processes_match_one(tmp_path):
    ckpt = tiny_model(vae=True).save(tmp_path / "ckpt")
    questions = write_question_file(tmp_path / "q.json", {f"c{i}": f"a green triangle number {i}" for i in range(7)})
    args = ["-m", "t2ibench", "eval", "--ckpt", str(ckpt), "--metrics", "tifa", "--tifa-vqa", "shapes-measure",
            "--tifa-questions", str(questions), "--steps", "3", "--resolution", "16", "--gen-batch-size", "2",
            "--device", "cpu", "--format", "json"]
    # one intra-op thread in both runs (torchrun's default for several processes), see generate.py
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one"), "--db", str(tmp_path / "1.sqlite")],
                         env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    # accelerate's `--cpu` flag starts a single process; `--multi_gpu` on a CPU-only machine starts N
    # processes through torchrun and they join a gloo group.
    # a port of its own: another test file may run a 2-process job at the same time (pytest -n 2)
    two = subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--main_process_port", "29565",
                          "--mixed_precision", "no", "--dynamo_backend", "no", *args, "--out", str(tmp_path / "two"),
                          "--db", str(tmp_path / "2.sqlite")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert (r1["generation"]["processes"], r2["generation"]["processes"]) == (1, 2)
    images1 = sorted((tmp_path / "one" / "images").rglob("*.png"))
    images2 = sorted((tmp_path / "two" / "images").rglob("*.png"))
    assert len(images1) == 7 and [p.name for p in images1] == [p.name for p in images2]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(images1, images2))
    assert r1["metrics"]["tifa"]["value"] == r2["metrics"]["tifa"]["value"]
    assert r1["per_item"] == r2["per_item"] and r1["manifest_hash"] == r2["manifest_hash"]
    assert json.loads(two.stdout)["metrics"]["tifa"]["value"] == r2["metrics"]["tifa"]["value"]  # one report
