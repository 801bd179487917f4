"""Forward-pass time of `sdxl_td4_4` against the paper's `sdxl` UNet at 256x256, in one run.

The paper claims TD4_4 needs 28% less inference compute than SDXL (143 vs 198 GMACs). This times one
forward pass of each (latent 1x4x32x32, 77 OpenCLIP-H tokens of 1024, batch 1, random fp32 weights on
the CPU, warm-up then several timed repetitions) and prints the measured time ratio next to the
counted GMACs ratios. Needs about 10 GB of free memory (one model at a time).

    python benchmarks/bench_variants.py [--reps 5] [--batch 1] [--threads N] [--baseline sdxl --candidate sdxl_td4_4]

At batch 1 the x4 level has only 64 tokens, so its linear layers are bound by reading the weights
rather than by MACs, so the time ratio can fall below the GMACs ratio. On a shared machine wall time is
noisy: the script reports the minimum wall time and the median process CPU time (use --threads 1
for the steadiest CPU-time measure).

It also prints each forward pass's achieved FLOP/s (the registry's full count / min wall time) as a
fraction of this machine's fp32 peak, a 2048^3 GEMM measured in the same run with the same threads, for
torch's default kernels and for oneDNN-prepacked weights (t2ibench.cpu_prepack), in alternating rounds.
The time ratio between variants uses torch's default kernels. What holds the UNet below the GEMM peak
on a CPU (a profile of the sdxl forward): 95% of the time is matrix products, the linear layers of the
transformer blocks on 64 (x4 level) or 256 (x2 level) tokens, skinny products that MKL's sgemm runs at
about 40% of the 2048^3 peak; attention itself is 2%, GroupNorm, SiLU and the adds together under 2%.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time

import torch

from t2ibench.cpu_prepack import onednn_prepacked
from t2ibench.hardware import measure_gemm_peak
from t2ibench.variants import compute_stats, get_variant


def time_forward(name: str, reps: int, warmup: int, batch: int = 1, rounds: int = 2) -> dict[str, dict]:
    """Wall-clock and process-CPU seconds of each timed forward pass, torch's default kernels ("dense")
    and oneDNN-prepacked weights ("onednn"), in alternating rounds on the same model and inputs."""
    spec = get_variant(name)
    model = spec.build(device="cpu", seed=0).eval()
    sample, timesteps, context = spec.dummy_inputs(batch=batch)
    times = {side: {"wall": [], "cpu": []} for side in ("dense", "onednn")}
    outputs = {}
    with torch.inference_mode():
        for _ in range(rounds):
            for side in ("dense", "onednn"):
                with onednn_prepacked(model) if side == "onednn" else contextlib.nullcontext():
                    for i in range(warmup + reps):
                        start_wall, start_cpu = time.perf_counter(), time.process_time()
                        outputs[side] = spec.denoise(model, sample, timesteps, context)
                        if i >= warmup:
                            times[side]["wall"].append(time.perf_counter() - start_wall)
                            times[side]["cpu"].append(time.process_time() - start_cpu)
    dense = outputs["dense"]
    times["onednn"]["max_rel_diff"] = float((outputs["onednn"] - dense).abs().max() / dense.abs().max())
    del model, outputs, dense
    gc.collect()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="sdxl")
    parser.add_argument("--candidate", default="sdxl_td4_4")
    parser.add_argument("--reps", type=int, default=3, help="timed passes per side and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of torch default / oneDNN")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1, help="batch size (the paper's count is per sample)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, batch {args.batch}, latent 4x32x32 per sample, "
          f"77x1024 context; {args.warmup} warm-up + {args.reps} timed forward passes each")

    peak = measure_gemm_peak("cpu", torch.float32)
    print(f"peak: {peak.tflops * 1e3:.0f} GFLOP/s ({peak.source})")
    results = {}
    for name in (args.baseline, args.candidate):
        stats = compute_stats(get_variant(name))
        times = time_forward(name, args.reps, args.warmup, args.batch, args.rounds)
        print(f"{name:12s} params {stats.params / 1e9:.3f}B  GMACs full {stats.gmacs:6.1f}  paper {stats.gmacs_paper:6.1f}")
        for side, label in (("dense", "torch default (MKL addmm)"), ("onednn", "oneDNN-prepacked weights")):
            wall, cpu = times[side]["wall"], times[side]["cpu"]
            achieved = 2 * stats.gmacs * 1e9 * args.batch / min(wall) / 1e12
            print(f"  {label:28s} wall ms min {min(wall) * 1e3:7.0f} median {statistics.median(wall) * 1e3:7.0f}"
                  f"  CPU ms median {statistics.median(cpu) * 1e3:7.0f}  {achieved * 1e3:5.0f} GFLOP/s"
                  f" = {100 * peak.fraction(achieved):4.1f}% of the measured fp32 GEMM peak")
        dense_wall, packed_wall = min(times["dense"]["wall"]), min(times["onednn"]["wall"])
        print(f"  oneDNN / default: {dense_wall / packed_wall:.3f}x the speed; output max |diff| / max |out| "
              f"{times['onednn']['max_rel_diff']:.1e}")
        results[name] = (dense_wall, statistics.median(times["dense"]["cpu"]), stats)

    (wall_base, cpu_base, s_base), (wall_cand, cpu_cand, s_cand) = results[args.baseline], results[args.candidate]
    print(f"\n{args.candidate} / {args.baseline}:")
    print(f"  forward time ratio, min wall    {wall_cand / wall_base:.3f}  ({100 * (1 - wall_cand / wall_base):.1f}% less time)")
    print(f"  forward time ratio, median CPU  {cpu_cand / cpu_base:.3f}  ({100 * (1 - cpu_cand / cpu_base):.1f}% less CPU time)")
    print(f"  GMACs ratio, full count         {s_cand.gmacs / s_base.gmacs:.3f}  ({100 * (1 - s_cand.gmacs / s_base.gmacs):.1f}% less)")
    print(f"  GMACs ratio, paper convention   {s_cand.gmacs_paper / s_base.gmacs_paper:.3f}  "
          f"({100 * (1 - s_cand.gmacs_paper / s_base.gmacs_paper):.1f}% less; paper claims 28% less)")
    print(f"  params ratio                    {s_cand.params / s_base.params:.3f}  "
          f"({100 * (1 - s_cand.params / s_base.params):.1f}% fewer; paper claims 45% fewer)")


if __name__ == "__main__":
    main()
