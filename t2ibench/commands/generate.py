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

from t2ibench.cli_args import nonnegative_float, nonnegative_int, positive_int

DEFAULTS = {"sampler": "ddim", "steps": 50, "cfg": 7.5, "resolution": 256, "seed": 0, "eta": 0.0}


def add_generation_arguments(p: argparse.ArgumentParser, ckpt_required: bool = True) -> None:
    """Checkpoint and protocol flags, shared by `generate` and `eval --ckpt`."""
    if ckpt_required:
        p.add_argument("--ckpt", required=True, metavar="PATH",
                       help="t2ibench checkpoint dir, diffusers pipeline dir, or hub id (org/name)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a t2ibench checkpoint (default: non-EMA, as in the paper)")
    p.add_argument("--prompts-dir", metavar="DIR",
                   help="local copies of the prompt sets (layout of shared/data/prompts); default $T2IBENCH_PROMPTS_DIR, else fetch")
    g = p.add_argument_group("protocol (recorded in every result)")
    g.add_argument("--sampler", default=DEFAULTS["sampler"], choices=("ddim",))
    g.add_argument("--steps", type=positive_int, default=DEFAULTS["steps"], help="sampling steps (default 50)")
    g.add_argument("--cfg", type=nonnegative_float, default=None,
                   help="classifier-free guidance scale (default 7.5; an error for a guidance-distilled model)")
    g.add_argument("--resolution", default=str(DEFAULTS["resolution"]),
                   help="image side in pixels (default 256); 'native' = the checkpoint's training resolution "
                        "or the pipeline's own default size")
    g.add_argument("--seed", type=nonnegative_int, default=DEFAULTS["seed"], help="base seed: image i gets seed+i (default 0)")
    g.add_argument("--eta", type=nonnegative_float, default=DEFAULTS["eta"], help="DDIM eta (default 0: deterministic)")
    g.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="precision (default auto: bf16 on a CUDA GPU that supports it, else fp32)")
    g.add_argument("--compile", action="store_true", help="torch.compile the denoiser (recorded: it may round differently)")
    g.add_argument("--images-per-prompt", type=positive_int, default=1, metavar="K",
                   help="images per prompt (default 1); image j of prompt i gets seed+i+1000000*j; "
                        "scores are averaged per prompt before the interval over prompts")
    p.add_argument("--offload", choices=("model", "sequential"),
                   help="diffusers CPU offload of a pipeline's components (CUDA; changes no numbers)")
    p.add_argument("--gen-batch-size", type=positive_int, default=8, metavar="N", help="images per generation batch (default 8)")
    p.add_argument("--image-cache", type=Path, metavar="DIR",
                   help="where generated images are cached (default: `generate` --out, `eval` --out/images)")


def protocol_from_args(args: argparse.Namespace, ckpt: str | None = None):
    from t2ibench.errors import UserError
    from t2ibench.generate import Protocol, resolve_dtype
    from t2ibench.pipelines import check_dtype_for_device, pipeline_dir_info

    pipeline = pipeline_dir_info(ckpt) if ckpt else None  # a bad pipeline directory: one line, nothing loaded
    if args.cfg is not None and pipeline is not None and pipeline.guidance == "distilled":
        raise UserError(f"{ckpt}: {pipeline.spec.pipeline} is guidance-distilled (a guidance embedding, no CFG); "
                        "drop --cfg")
    if args.eta and pipeline is not None and not pipeline.spec.accepts_eta:
        raise UserError(f"{ckpt}: --eta applies to DDIM; {pipeline.spec.pipeline} samples with flow-matching Euler")
    res = str(args.resolution)
    if res == "native":
        resolution = pipeline.native_resolution if pipeline is not None else native_resolution(ckpt)
    else:
        try:
            resolution = int(res)
        except ValueError:
            resolution = 0
        if resolution < 1:
            raise UserError(f"--resolution must be a number of pixels >= 1 or 'native', got {res!r}")
    device = resolve_device(getattr(args, "device", "auto"))
    dtype = resolve_dtype(args.dtype, device)
    check_dtype_for_device(dtype, device)
    return Protocol(sampler=args.sampler, steps=args.steps, cfg=DEFAULTS["cfg"] if args.cfg is None else args.cfg,
                    resolution=resolution, base_seed=args.seed, eta=args.eta, dtype=dtype, compile=args.compile,
                    images_per_prompt=args.images_per_prompt)


def native_resolution(ckpt: str | None) -> int:
    from t2ibench.checkpoints import resolve_ckpt_path
    from t2ibench.errors import UserError
    from t2ibench.model import read_model_file

    kind = precheck_ckpt(ckpt)  # a wrong path gets the wrong-path message, not a --resolution one
    if kind != "t2ibench":
        raise UserError("--resolution native needs a local t2ibench checkpoint or pipeline directory; give a number of pixels")
    return int(read_model_file(resolve_ckpt_path(ckpt)).get("resolution", 256))


def precheck_ckpt(ckpt: str | None) -> str:
    from t2ibench.checkpoints import precheck

    return precheck(ckpt or "")


def resolve_device(device: str) -> str:
    from t2ibench.devices import resolve_device as checked

    return checked(device)


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate images for a prompt set under the evaluation protocol",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generation_arguments(p)
    p.add_argument("--prompts", required=True, metavar="NAME_OR_FILE", help="prompt-set name or prompt file")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="where generation.json goes; also the image cache unless --image-cache is given")
    p.add_argument("--limit", type=positive_int, help="only the first N prompts")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import time

    from t2ibench.atomic import write_json_atomic
    from t2ibench.evaluate import _distributed
    from t2ibench.generate import as_sampleable, generate, settings_key
    from t2ibench.prompts import load_prompt_set

    from t2ibench.cli_args import writable_dir

    precheck_ckpt(args.ckpt)
    protocol = protocol_from_args(args, args.ckpt)
    pset = load_prompt_set(args.prompts, args.prompts_dir, args.limit)  # bad set: error before loading a model
    device = resolve_device(args.device)
    writable_dir(args.out, "--out")  # before the model is loaded, not after the images are made
    if args.image_cache:
        writable_dir(args.image_cache, "--image-cache")
    dist, device = _distributed(None, device)
    model = as_sampleable(args.ckpt, ema=args.ema, device=device, dtype=protocol.dtype, offload=args.offload)
    cache_root = args.image_cache or args.out
    t0 = time.time()
    paths = generate(model, pset, protocol, cache_root, batch_size=args.gen_batch_size, rank=dist.rank,
                     world=dist.world, progress=dist.rank == 0)
    dist.barrier()
    if dist.rank != 0:
        return 0
    index = {
        "checkpoint": model.describe(),
        "protocol": {**protocol.to_dict(), "ema": args.ema, "sampling": model.sampling(protocol)},
        "settings_key": settings_key(protocol, model), "prompt_set": pset.describe(),
        "images": [{"id": r.id, "prompt": r.text, "seed": protocol.base_seed + i,
                    "path": os.path.relpath(p, args.out)} for i, (r, p) in enumerate(zip(pset.records, paths))],
        "processes": dist.world, "seconds": round(time.time() - t0, 3),
    }
    write_json_atomic(Path(args.out) / "generation.json", index)
    if args.format == "json":
        print(json.dumps({"images": len(paths), "index": str(Path(args.out) / "generation.json"),
                          "image_dir": str(paths[0].parent) if paths else None}))
    else:
        print(f"{len(paths)} images in {paths[0].parent if paths else args.out}; index {Path(args.out) / 'generation.json'}")
    return 0
