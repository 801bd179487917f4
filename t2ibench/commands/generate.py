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
    g.add_argument("--steps", type=positive_int, default=D.steps, help=f"sampling steps (default {D.steps})")
    g.add_argument("--cfg", type=nonnegative_float, default=None,
                   help=f"classifier-free guidance scale (default {D.cfg}; an error for a guidance-distilled model)")
    g.add_argument("--resolution", default=str(D.resolution),
                   help=f"image side in pixels (default {D.resolution}); 'native' = the checkpoint's training "
                        "resolution or the pipeline's own default size")
    g.add_argument("--seed", type=nonnegative_int, default=D.base_seed,
                   help=f"base seed: image i gets seed+i (default {D.base_seed})")
    g.add_argument("--eta", type=nonnegative_float, default=D.eta, help=f"DDIM eta (default {D.eta:g}: deterministic)")
    g.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="precision (default auto: bf16 on a CUDA GPU that supports it, else fp32)")
    g.add_argument("--compile", action="store_true", help="torch.compile the denoiser (recorded: it may round differently)")
    g.add_argument("--images-per-prompt", type=positive_int, default=D.images_per_prompt, metavar="K",
                   help=f"images per prompt (default {D.images_per_prompt}); image j of prompt i gets "
                        "seed+i+1000000*j; scores are averaged per prompt before the interval over prompts")
    p.add_argument("--offload", choices=("model", "sequential"),
                   help="diffusers CPU offload of a pipeline's components (CUDA; changes no numbers)")
    p.add_argument("--gen-batch-size", type=positive_int, default=GENERATION_BATCH_SIZE, metavar="N",
                   help=f"images per generation batch (default {GENERATION_BATCH_SIZE})")
    p.add_argument("--image-cache", type=Path, metavar="DIR",
                   help="where generated images are cached (default: `generate` --out, `eval` --out/images)")


def protocol_from_args(args: argparse.Namespace, ckpt: str | None = None):
    from t2ibench.errors import UserError
    from t2ibench.generate import resolve_device
    from t2ibench.pipelines import check_dtype_for_device, pipeline_dir_info
    from t2ibench.protocol import Protocol, resolve_dtype

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
    return Protocol(sampler=args.sampler, steps=args.steps, cfg=D.cfg if args.cfg is None else args.cfg,
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
    from t2ibench.generate import check_checkpoint

    return check_checkpoint(ckpt or "")


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

    from t2ibench.cli_args import writable_dir
    from t2ibench.generate import GENERATION_INDEX, generate_to_folder
    from t2ibench.prompts import load_prompt_set

    precheck_ckpt(args.ckpt)
    protocol = protocol_from_args(args, args.ckpt)
    pset = load_prompt_set(args.prompts, args.prompts_dir, args.limit)  # bad set: error before loading a model
    writable_dir(args.out, "--out")  # before the model is loaded, not after the images are made
    if args.image_cache:
        writable_dir(args.image_cache, "--image-cache")
    index = generate_to_folder(args.ckpt, pset, protocol, args.out, ema=args.ema, device=args.device,
                               batch_size=args.gen_batch_size, image_dir=args.image_cache, offload=args.offload)
    if index is None:  # not the main process
        return 0
    paths, where = index["paths"], Path(args.out) / GENERATION_INDEX
    if args.format == "json":
        print(json.dumps({"images": len(paths), "index": str(where), "image_dir": str(paths[0].parent) if paths else None}))
    else:
        print(f"{len(paths)} images in {paths[0].parent if paths else args.out}; index {where}")
    return 0
