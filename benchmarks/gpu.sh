#!/usr/bin/env bash
# One GPU, one JSON: bf16 training samples/s and MFU of sdxl, sdxl_td4_4 and pixart_h1152_d28 at 256 px,
# sdxl generation (DDIM 50, CFG 7.5) against diffusers' pipeline loop, and the sdxl_td4_4/sdxl forward
# time ratio. Fields: see benchmarks/bench_gpu.py. `--dry-run` checks it on the CPU with tiny sizes.
#   benchmarks/gpu.sh [--out gpu.json] [--dry-run] [--only train,generate,forward]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
exec "${PYTHON:-python3}" benchmarks/bench_gpu.py "$@"
