"""`t2ibench generate`: images for a prompt set from a checkpoint, under the evaluation protocol.

    t2ibench generate --ckpt runs/a/checkpoint-1000 --prompts tifa-v1 --out images/a-1000 --limit 100
    accelerate launch -m t2ibench generate --ckpt ... --prompts coco-10k --out ...   # shards across processes

Images land in `<out>/<ckpt hash>/<settings>/<set>-<sha>/<prompt id>.s<seed>.png` (the image cache
that `t2ibench eval --ckpt` uses too), plus `<out>/generation.json` listing every image with its
prompt and seed, and the protocol. A rerun (e.g. after a kill) makes only what is missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from t2ibench.protocol import GENERATION_BATCH_SIZE, PROTOCOL_DEFAULTS, SAMPLERS

D = PROTOCOL_DEFAULTS  # the flag defaults are the protocol's own (t2ibench/protocol.py)


def add_generation_arguments(p: argparse.ArgumentParser, ckpt_required: bool = True) -> None:
    """Checkpoint and protocol flags, shared by `generate` and `eval --ckpt`."""
    if ckpt_required:
        p.add_argument("--ckpt", required=True, metavar="PATH",
                       help="t2ibench checkpoint dir, diffusers pipeline dir, or hub id (org/name)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a t2ibench checkpoint (default: non-EMA, as in the paper)")
    p.add_argument("--prompts-dir", metavar="DIR",
                   help="local copies of the prompt sets (layout of shared/data/prompts); default $T2IBENCH_PROMPTS_DIR, else fetch")
    g = p.add_argument_group("protocol (recorded in every result)")
    g.add_argument("--sampler", default=D.sampler, choices=SAMPLERS)
    g.add_argument("--steps", type=int, default=D.steps, help=f"sampling steps (default {D.steps})")
    g.add_argument("--cfg", type=float, default=D.cfg, help=f"classifier-free guidance scale (default {D.cfg})")
    g.add_argument("--resolution", default=str(D.resolution),
                   help=f"image side in pixels (default {D.resolution}); 'native' = the checkpoint's training resolution")
    g.add_argument("--seed", type=int, default=D.base_seed, help=f"base seed: image i gets seed+i (default {D.base_seed})")
    g.add_argument("--eta", type=float, default=D.eta, help=f"DDIM eta (default {D.eta:g}: deterministic)")
    p.add_argument("--gen-batch-size", type=int, default=GENERATION_BATCH_SIZE, metavar="N",
                   help=f"images per generation batch (default {GENERATION_BATCH_SIZE})")
    p.add_argument("--image-cache", type=Path, metavar="DIR", help="where generated images are cached")


def protocol_from_args(args: argparse.Namespace, ckpt: str | None = None):
    from t2ibench.errors import UserError
    from t2ibench.protocol import Protocol

    res = str(args.resolution)
    if res == "native":
        resolution = native_resolution(ckpt)
    else:
        try:
            resolution = int(res)
        except ValueError:
            raise UserError(f"--resolution must be a number of pixels or 'native', got {res!r}") from None
    return Protocol(sampler=args.sampler, steps=args.steps, cfg=args.cfg, resolution=resolution,
                    base_seed=args.seed, eta=args.eta)


def native_resolution(ckpt: str | None) -> int:
    import json

    from t2ibench.errors import UserError
    from t2ibench.model import MODEL_FILE

    path = Path(ckpt or "") / MODEL_FILE
    if not path.is_file():
        raise UserError("--resolution native needs a t2ibench checkpoint; give a number of pixels")
    return int(json.loads(path.read_text()).get("resolution", 256))


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate images for a prompt set under the evaluation protocol",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_arguments(p)
    p.add_argument("--prompts", required=True, metavar="NAME_OR_FILE", help="prompt-set name or prompt file")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from t2ibench.generate import GENERATION_INDEX, generate_to_folder
    from t2ibench.prompts import load_prompt_set

    protocol = protocol_from_args(args, args.ckpt)
    pset = load_prompt_set(args.prompts, args.prompts_dir, args.limit)  # bad set: error before loading a model
    index = generate_to_folder(args.ckpt, pset, protocol, args.out, ema=args.ema, device=args.device,
                               batch_size=args.gen_batch_size, image_dir=args.image_cache)
    if index is None:  # not the main process
        return 0
    paths, where = index["paths"], Path(args.out) / GENERATION_INDEX
    if args.format == "json":
        print(json.dumps({"images": len(paths), "index": str(where), "image_dir": str(paths[0].parent) if paths else None}))
    else:
        print(f"{len(paths)} images in {paths[0].parent if paths else args.out}; index {where}")
    return 0
