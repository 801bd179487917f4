"""Run under `accelerate launch --multi_gpu --num_processes N`: each process generates its share of a
prompt file for every pipeline directory given, through `load_sampleable` and `generate` (the code
under `t2ibench generate --ckpt`), into OUT/<directory name>/.

    python pipelines_dist_worker.py PROMPTS OUT STEPS BATCH DIR:RESOLUTION [DIR:RESOLUTION ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from t2ibench.generate import Protocol, generate, load_sampleable, processes
from t2ibench.prompts import load_prompt_set


def main() -> None:
    prompts, out, steps, batch, *targets = sys.argv[1:]
    dist, device = processes(None, "cpu")
    pset = load_prompt_set(prompts)
    for target in targets:
        directory, resolution = target.rsplit(":", 1)
        model = load_sampleable(directory, device=device)
        generate(model, pset, Protocol(steps=int(steps), resolution=int(resolution)), Path(out) / Path(directory).name,
                 batch_size=int(batch), rank=dist.rank, world=dist.world, progress=False)
    dist.barrier()


if __name__ == "__main__":
    main()
