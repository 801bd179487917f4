"""train.distributed=fsdp really shards (FSDP2 fully_shard on 2 CPU processes over gloo), trains like
DDP, resumes exactly from its sharded checkpoint, and stops with one line where it cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t2ibench.errors import UserError
from train_helpers import backbone_weights, make_config, write_shards

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fsdp_shards_matches_ddp_and_resumes_exactly(tmp_path):
    data = write_shards(tmp_path / "shards", 8, 4)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29571",
           str(Path(__file__).with_name("train_fsdp_run_worker.py")), str(data), str(tmp_path / "runs")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "FSDP2 via torch fully_shard (direct) over 2 process(es): rank 0 holds" in done.stdout
    ranks = [json.loads((tmp_path / "runs" / f"rank{r}.json").read_text()) for r in range(2)]
    # each rank holds about half of the backbone (dim-0 shards, padded), and together all of it
    total = ranks[0]["total"]
    assert total > 0 and all(0.4 * total <= r["local"] <= 0.6 * total for r in ranks)
    assert sum(r["local"] for r in ranks) >= total and ranks[0]["ddp_local"] == 0
    # the loss trajectory equals DDP's over 20 steps (float tolerance: reduction order differs)
    fsdp, ddp = ranks[0]["fsdp_losses"], ranks[0]["ddp_losses"]
    assert [s for s, _ in fsdp] == [s for s, _ in ddp] == list(range(1, 21))
    for (_, a), (_, b) in zip(fsdp, ddp):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    wf, wd = backbone_weights(Path(ranks[0]["fsdp_ckpt"])), backbone_weights(Path(ranks[0]["ddp_ckpt"]))
    # weights to Adam's resolution: a near-zero gradient whose sign flips moves a weight by up to 2 x lr
    assert max((wf[k] - wd[k]).abs().max().item() for k in wf) <= 2 * 1e-3 * 20
    # the sharded checkpoint at step 10 (a copy) resumes exactly: bitwise the uninterrupted run's losses and weights
    ckpt10 = tmp_path / "runs" / "fsdp" / "checkpoints" / "step-00000010" / "training_state"
    assert (ckpt10 / "sharded" / ".metadata").is_file() and not (ckpt10 / "optimizer.pt").exists()
    assert ranks[0]["resumed_losses"] == [row for row in fsdp if row[0] > 10]
    wr = backbone_weights(Path(ranks[0]["resumed_ckpt"]))
    assert all(torch.equal(wr[k], wf[k]) for k in wf)


def test_fsdp_single_process_shards_with_a_group_of_one(tmp_path):
    from t2ibench.train.loop import train

    data = write_shards(tmp_path / "shards", 4, 2)
    result = train(make_config(data, tmp_path / "run", **{"train.distributed": "fsdp", "train.steps": 2}))
    assert result.local_params == result.total_params > 0 and result.step == 2
    assert result.data_wait_s > 0  # logged beside samples/s: time blocked on the loader (decoding, here)


def test_fsdp_where_it_cannot_run_is_one_line(tmp_path, monkeypatch):
    from t2ibench.train.loop import train

    data = tmp_path / "nowhere"  # never read: the check comes first
    with pytest.raises(UserError, match="train.distributed=fsdp supports train.mixed_precision=bf16 or no, not fp16"):
        train(make_config(data, tmp_path / "run", **{"train.distributed": "fsdp", "train.mixed_precision": "fp16"}))
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    with pytest.raises(UserError, match="needs torch.distributed, which this torch build lacks"):
        train(make_config(data, tmp_path / "run", **{"train.distributed": "fsdp"}))
    assert not (tmp_path / "run").exists()


def test_gpu_benchmark_dry_run(tmp_path):
    """benchmarks/bench_fsdp_gpu.py's CPU mode runs the same sharding and step code as on a GPU."""
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_fsdp_gpu.py"), "--dry-run", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sharded"] and result["world"] == 1 and result["step_s"] > 0 and result["gemm_peak_tflops"] > 0
    assert 0 < result["mfu_vs_gemm_peak"] < 1 and result["final_loss"] == result["final_loss"]
