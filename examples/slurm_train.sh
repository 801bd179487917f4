#!/bin/bash
# Multi-node training with t2ibench's single entry point (`-m t2ibench train`), one torchrun per node.
# Submit: sbatch examples/slurm_train.sh ; a requeued job continues from its newest checkpoint (--resume).
# See docs/training-at-scale.md.
#SBATCH --job-name=t2ibench-train
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --output=%x-%j.out
set -euo pipefail

DATA=${DATA:-/data/lensart}          # indexed tar shards (t2ibench data filter / t2ibench data index)
OUT=${OUT:-/checkpoints/sdxl_td4_8}  # on storage every node sees (checkpoints are written by all ranks)
VARIANT=${VARIANT:-sdxl_td4_8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export HF_HUB_OFFLINE=1               # frozen weights from $T2IBENCH_WEIGHTS or the HF cache, never the hub
export OMP_NUM_THREADS=8

# global batch 2048 = micro_batch 16 x 32 processes x accumulation 4
srun --kill-on-bad-exit=1 torchrun \
    --nnodes "$SLURM_NNODES" --nproc_per_node "$GPUS_PER_NODE" \
    --rdzv_backend c10d --rdzv_endpoint "$HEAD:29500" --rdzv_id "$SLURM_JOB_ID" \
    -m t2ibench train "$VARIANT" --data "$DATA" --out "$OUT" --resume \
    train.distributed=fsdp train.micro_batch=16 data.num_workers=8 \
    checkpoint.every=5000 eval.every=10000 eval.metrics=tifa
