"""The machine's limit, for MFU: a dense GEMM's measured FLOP/s, or a known GPU's datasheet peak.

MFU = achieved model FLOP/s / peak FLOP/s. The peak is, in order of preference:
1. what the user sets (`log.peak_tflops=...` in the trainer, `--peak-tflops` in the benchmarks);
2. the datasheet's dense (no sparsity) peak of a known GPU for the dtype (`KNOWN_PEAK_TFLOPS`);
3. measured here: the best of a few square GEMMs of that dtype on that device (`measure_gemm_peak`),
   once per process, device, dtype and thread count (a process that trains several runs, as the study's
   workers and the tests do, measures once; about 2 s each time on one CPU thread).
The benchmarks always measure (3) in the same run, so their fractions are of what this machine reached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

# Dense tensor-core peaks (TFLOP/s) from the vendors' datasheets; fp32 means TF32 tensor cores where the
# GPU has them (what torch uses for fp32 matmuls with `allow_tf32`). Matched as substrings of
# torch.cuda.get_device_name(), first match wins, so the more specific names come first.
KNOWN_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 378.0},
    "H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7},  # SXM ("H100 80GB HBM3")
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0},
    "L40S": {"bf16": 362.1, "fp16": 362.1, "fp32": 183.0},
    "L4": {"bf16": 121.0, "fp16": 121.0, "fp32": 60.0},
    "RTX 4090": {"bf16": 165.2, "fp16": 165.2, "fp32": 82.6},
    "V100": {"fp16": 125.0, "fp32": 15.7},
}

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Peak:
    tflops: float
    source: str  # "set by the user", "datasheet: NVIDIA H100 80GB HBM3 bf16", "measured: 2048^3 fp32 GEMM"

    def fraction(self, achieved_tflops: float) -> float:
        return achieved_tflops / self.tflops if self.tflops > 0 else float("nan")


def dtype_name(dtype: torch.dtype | str) -> str:
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; one of {', '.join(_DTYPES)}")
        return dtype
    for name, value in _DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"no GEMM peak for dtype {dtype}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_gemm_peak(device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32,
                      n: int | None = None, reps: int = 5) -> Peak:
    """Best FLOP/s of `reps` n x n x n matmuls (after one warm-up): what dense math reaches here."""
    device = torch.device(device)
    name = dtype_name(dtype)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=_DTYPES[name])
    b = torch.randn(n, n, device=device, dtype=_DTYPES[name])
    best = float("inf")
    for i in range(reps + 1):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:  # the first product warms up caches, clocks and the BLAS's dispatch
            best = min(best, time.perf_counter() - start)
    return Peak(2 * n**3 / best / 1e12, f"measured: {n}^3 {name} GEMM on {device.type}, best of {reps}")


def datasheet_peak(device: str | torch.device, dtype: torch.dtype | str) -> Peak | None:
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    gpu = torch.cuda.get_device_name(device)
    name = dtype_name(dtype)
    for key, peaks in KNOWN_PEAK_TFLOPS.items():
        if key in gpu and name in peaks:
            return Peak(peaks[name], f"datasheet: {gpu} {name} dense")
    return None


_MEASURED: dict[tuple[str, str, int], Peak] = {}


def peak_for(device: str | torch.device, dtype: torch.dtype | str, configured: float = 0.0) -> Peak:
    """The peak MFU is measured against: the user's number, else a known GPU's datasheet, else measured
    (once per process for a device, dtype and CPU thread count)."""
    if configured and configured > 0:
        return Peak(float(configured), "set by the user")
    known = datasheet_peak(device, dtype)
    if known is not None:
        return known
    device = torch.device(device)
    key = (str(device), dtype_name(dtype), torch.get_num_threads())
    if key not in _MEASURED:
        _MEASURED[key] = measure_gemm_peak(device, dtype)
    return _MEASURED[key]
