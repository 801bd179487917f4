"""MFU accounting: the trainer's FLOP count against torch's own counter on a real training step, the
peak it is measured against, and the GPU benchmark's dry run."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from t2ibench.hardware import Peak, datasheet_peak, dtype_name, measure_gemm_peak, peak_for
from t2ibench.train.components import build_model
from t2ibench.train.config import RunConfig, apply_overrides
from t2ibench.train.flops import account_for
from t2ibench.variants import VariantSpec
from train_helpers import make_config, tiny_overrides, write_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("space", ["pixels", "latents"])
def test_training_flops_match_torchs_counter_on_a_real_step(space, tmp_path):
    """3 x forward FLOPs per sample (what MFU divides by) against FlopCounterMode around the trainer's
    own forward and backward. The math SDPA backend, because the counter has no formula for the CPU
    flash kernel and would miss the attention products."""
    extra = {} if space == "pixels" else {"model.vae": "tiny", "resolution": 64, "model.channels": 16}
    config = apply_overrides(RunConfig(variant="sdxl"), tiny_overrides(tmp_path, tmp_path / "run", **extra))
    model = build_model(config)
    account = account_for(VariantSpec.from_dict(model.info.variant))
    cfg, batch = model.backbone.config, 2
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    context = model.encode_text(["a red square", "a blue circle"])
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.predict_noise(x, torch.tensor([10, 700]), context).pow(2).mean().backward()
    counted = counter.get_total_flops() / batch
    # backward skips only the first convolution's input gradient: within 2% of 3 x forward
    assert account.flops_per_sample == pytest.approx(counted, rel=0.02)
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as forward:
        model.predict_noise(x, torch.tensor([10, 700]), context)
    assert account.gmacs * 2e9 == pytest.approx(forward.get_total_flops() / batch, rel=1e-6)


def test_a_renamed_count_field_fails_loudly(monkeypatch):
    from types import SimpleNamespace

    import t2ibench.variants as variants

    renamed = SimpleNamespace(params=10, gmacs=1.0, paper_gmacs=1.0, train_flops_per_sample=6e9)  # not gmacs_paper
    monkeypatch.setattr(variants, "compute_stats", lambda spec: renamed)
    with pytest.raises(AttributeError, match="gmacs_paper"):
        account_for(variants.get_variant("sdxl"))


def test_peaks():
    measured = measure_gemm_peak("cpu", torch.float32, n=128, reps=2)
    assert measured.tflops > 0 and math.isfinite(measured.tflops) and "measured" in measured.source
    assert peak_for("cpu", torch.float32, configured=2.5) == Peak(2.5, "set by the user")
    assert datasheet_peak("cpu", "bf16") is None  # only GPUs have datasheet entries
    assert peak_for("cpu", "fp32").source.startswith("measured")
    with pytest.raises(ValueError):
        dtype_name("fp8")


def test_measured_peak_is_measured_once_per_process_dtype_and_thread_count(monkeypatch):
    import t2ibench.hardware as hardware

    calls = []

    def counted(device, dtype):
        calls.append((str(device), dtype_name(dtype), torch.get_num_threads()))
        return Peak(1.0 + len(calls), "measured: test")

    monkeypatch.setattr(hardware, "measure_gemm_peak", counted)
    monkeypatch.setattr(hardware, "_MEASURED", {})
    threads = torch.get_num_threads()
    first = peak_for("cpu", torch.float32)
    assert peak_for("cpu", "fp32") is first and len(calls) == 1
    assert peak_for("cpu", "bf16") is not first and len(calls) == 2
    try:
        torch.set_num_threads(threads + 1)
        assert peak_for("cpu", "fp32") is not first and len(calls) == 3
    finally:
        torch.set_num_threads(threads)
    assert peak_for("cpu", "fp32") is first and len(calls) == 3


def test_trainer_logs_mfu_against_the_peak_it_names(tmp_path, capsys):
    from t2ibench.train.loop import train

    data = write_folder(tmp_path / "data", 4)
    result = train(make_config(data, tmp_path / "run", **{"train.steps": 2, "log.peak_tflops": 0.5}))
    out = capsys.readouterr().out
    assert "MFU is measured against 0.5 TFLOP/s per device (set by the user)" in out
    account = account_for(VariantSpec.from_dict(json.loads((result.model_dir / "t2ibench_model.json").read_text())["variant"]))
    assert result.mfu == pytest.approx(result.samples_per_s * account.flops_per_sample / 0.5e12, rel=1e-6)
    assert "latent/text-embedding cache: on (auto: 4 items" in out


def test_cache_is_off_past_its_size_limit_and_says_why(tmp_path, capsys):
    from t2ibench.train.loop import train

    data = write_folder(tmp_path / "data", 4)
    train(make_config(data, tmp_path / "run", **{"train.steps": 1, "data.cache_max_items": 3}))
    assert "cache: off: 4 items is more than data.cache_max_items=3" in capsys.readouterr().out
    assert not (tmp_path / "run" / "cache").exists()


def test_gpu_benchmark_dry_run_writes_every_documented_field(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["peak"]["tflops"] > 0
    assert set(report["train"]) == {"sdxl", "sdxl_td4_4", "pixart_h1152_d28"}
    for r in report["train"].values():
        assert r["samples_per_s"] > 0 and 0 < r["mfu"] and r["batch"] >= 1
        assert r["tflops_per_s"] == pytest.approx(r["samples_per_s"] * r["flops_per_sample"] / 1e12)
    g = report["generate"]
    assert g["identical"] is True  # bf16 autocast on the CPU: the two loops give the same uint8 images
    assert g["kv_reuse_identical"] is True and g["kv_reuse_speedup"] > 0
    assert g["t2ibench_images_per_s"] > 0 and g["diffusers_images_per_s"] > 0
    f = report["forward"]
    assert f["gmacs_ratio_paper"] == pytest.approx(143 / 198, abs=0.01)  # the registry's count vs the paper
    assert f["time_ratio"] > 0
