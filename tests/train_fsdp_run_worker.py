"""Run under torchrun (2 CPU processes, gloo) by test_train_fsdp.py: the trainer itself with
train.distributed=fsdp and with DDP on the same data, and an FSDP run interrupted at step 10 and
resumed from the sharded step-10 checkpoint. Each rank writes what it saw to <out>/rank<R>.json."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from t2ibench.train.loop import train  # noqa: E402
from train_helpers import make_config  # noqa: E402


def main(data: str, out: str) -> None:
    torch.set_num_threads(1)
    out = Path(out)
    # 16 px and micro-batch 1 (gradient accumulation 2 on 2 ranks): small enough for 2 shared cores
    common = {"train.steps": 20, "train.micro_batch": 1, "checkpoint.every": 10, "train.ema": False, "resolution": 16}
    fsdp = train(make_config(Path(data), out / "fsdp", **common, **{"train.distributed": "fsdp"}))
    ddp = train(make_config(Path(data), out / "ddp", **common))
    import torch.distributed as dist

    if dist.get_rank() == 0:  # the uninterrupted run's step-10 checkpoint, as a run stopped there left it
        import shutil

        shutil.copytree(out / "fsdp" / "checkpoints" / "step-00000010", out / "resumed" / "checkpoints" / "step-00000010")
    dist.barrier()
    resumed = train(make_config(Path(data), out / "resumed", **common, **{"train.distributed": "fsdp"}), resume=True)

    record = {"rank": dist.get_rank(), "world": dist.get_world_size(), "local": fsdp.local_params,
              "total": fsdp.total_params, "fsdp_losses": fsdp.losses, "ddp_losses": ddp.losses,
              "resumed_local": resumed.local_params, "resumed_losses": resumed.losses, "ddp_local": ddp.local_params,
              "fsdp_ckpt": str(fsdp.checkpoint), "resumed_ckpt": str(resumed.checkpoint), "ddp_ckpt": str(ddp.checkpoint)}
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
