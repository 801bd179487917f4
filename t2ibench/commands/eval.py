"""`t2ibench eval`: score images with the selected metrics and write a results JSON.

`--images DIR` scores a folder of existing images against `--prompts` (a prompt-set name or a
.txt/.csv/.tsv/.jsonl/.json file). Images are named `<prompt id>.png` or `<index>.png` (00000.png is
the first prompt); see t2ibench/images.py. `--ckpt PATH` generates the images under the protocol
first (cached, resumable), then scores them and adds one row per metric to the results store; PATH
is a checkpoint directory, a training run directory (its newest checkpoint) or a hub id.
Both go through the one driver, t2ibench/evaluate.py; this module only parses and prints.

Weights and options per metric: `--weights METRIC.KEY=PATH` (e.g. `imagereward.imagereward=/w/ImageReward.pt`,
or a directory holding the file) and `--option METRIC.KEY=VALUE` (e.g. `fid.real_images=/data/coco_val_256`,
`fid.resize=pil-bicubic-299`, `clip.arch=ViT-H-14 clip.pretrained=laion2b_s32b_b79k`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from t2ibench.cli_args import nonnegative_float, nonnegative_int, positive_int
from t2ibench.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score a folder of images (or a checkpoint) with the selected metrics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR", help="folder of images named by prompt id or index")
    source.add_argument("--ckpt", metavar="PATH",
                        help="generate under the protocol, then score: t2ibench checkpoint, diffusers pipeline dir or hub id")
    p.add_argument("--prompts", metavar="FILE_OR_NAME", help="prompt-set name or prompt file")
    p.add_argument("--metrics", required=True, help="comma-separated, e.g. clip,fid,imagereward,hpsv2")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where results.json goes (default results/eval/<images or checkpoint dir name>)")
    p.add_argument("--limit", type=positive_int, help="use only the first N prompts")
    p.add_argument("--batch-size", type=positive_int, help="images per scorer forward pass (default: each metric's own)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--weights", action="append", default=[], metavar="METRIC.KEY=PATH",
                   help="a scorer's weights file or folder (repeatable; default: $T2IBENCH_WEIGHTS, then the HF cache)")
    p.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="a scorer option (repeatable); unknown keys are refused; see `t2ibench metrics`")
    p.add_argument("--format", choices=("table", "json"), default="table")
    add_ckpt_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Parse the arguments into the driver's inputs, call `t2ibench.evaluate`, print its summary."""
    from t2ibench.commands import load_plugins
    from t2ibench.evaluate import RESULTS_FILE, MetricSelection, evaluate, evaluate_images
    from t2ibench.generate import resolve_device

    load_plugins()  # VQA backends named by --tifa-vqa may come from the demo
    if not args.ckpt:
        refuse_ckpt_only_flags(args)
    selection = MetricSelection.parse(args.metrics, weights=args.weights, options=_option_items(args))
    if args.ckpt:
        from t2ibench.commands.generate import protocol_from_args
        from t2ibench.generate import check_checkpoint

        check_checkpoint(args.ckpt, args.ema)  # a wrong path: the wrong-path message, whatever the other flags say
        protocol = protocol_from_args(args, args.ckpt)
        common = dict(limit=args.limit, device=resolve_device(args.device), score_batch_size=args.batch_size,
                      progress=args.format != "json")
        out_dir = args.out or Path("results") / "eval" / _default_out_name(args.ckpt)
        record = evaluate(args.ckpt, selection, prompts=args.prompts, prompts_dir=args.prompts_dir,
                          protocol=protocol, out_dir=out_dir, db=args.db, run=args.run,
                          variant=args.variant, step=args.step, train_flops=args.train_flops,
                          batch_size=args.gen_batch_size, ema=args.ema, image_dir=args.image_cache,
                          store=not args.no_store, offload=args.offload, **common)
        if int(os.environ.get("RANK", "0")) != 0:  # under accelerate launch: the main process reports
            return 0
    else:
        common = dict(limit=args.limit, device=resolve_device(args.device), score_batch_size=args.batch_size,
                      progress=args.format != "json")
        out_dir = args.out or Path("results") / "eval" / Path(args.images).resolve().name
        record = evaluate_images(args.images, selection, prompts=args.prompts, out_dir=out_dir,
                                 images_per_prompt=getattr(args, "images_per_prompt", None), **common)
    _print_summary(record, selection.names, Path(out_dir) / RESULTS_FILE, args.format)
    return 0


def refuse_ckpt_only_flags(args: argparse.Namespace) -> None:
    """Flags that only mean something with --ckpt: refused with --images rather than ignored (a result
    the user expects in the store must not silently be missing)."""
    from t2ibench.protocol import GENERATION_BATCH_SIZE, PROTOCOL_DEFAULTS

    defaults = {"sampler": PROTOCOL_DEFAULTS.sampler, "steps": PROTOCOL_DEFAULTS.steps, "cfg": PROTOCOL_DEFAULTS.cfg,
                "seed": PROTOCOL_DEFAULTS.base_seed, "eta": PROTOCOL_DEFAULTS.eta}
    given = [f"--{name.replace('_', '-')}" for name in ("run", "variant", "step", "train_flops", "db", "image_cache",
                                                        "prompts_dir") if getattr(args, name, None) is not None]
    given += [f"--{name.replace('_', '-')}" for name in ("no_store", "ema") if getattr(args, name, False)]
    given += [f"--{name}" for name, default in defaults.items()
              if getattr(args, name, default) not in (default, None)]  # None: unset
    if str(getattr(args, "resolution", PROTOCOL_DEFAULTS.resolution)) != str(PROTOCOL_DEFAULTS.resolution):
        given.append("--resolution")
    if getattr(args, "gen_batch_size", GENERATION_BATCH_SIZE) != GENERATION_BATCH_SIZE:
        given.append("--gen-batch-size")
    if given:
        raise UserError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --ckpt only: --images scores "
                        "existing files and writes results.json, with no store row or generation; drop "
                        f"{'it' if len(given) == 1 else 'them'} or evaluate a checkpoint with --ckpt")


def _default_out_name(ckpt: str) -> str:
    """`runs/td4_8` or `runs/td4_8/latest` -> 'td4_8-step-00004000' (not 'latest' or 'model')."""
    from t2ibench.checkpoints import resolve_ckpt_path

    resolved = resolve_ckpt_path(ckpt)
    if resolved.name == "model" and resolved.parent.parent.name == "checkpoints":
        return f"{resolved.parents[2].name}-{resolved.parent.name}"
    return Path(ckpt.rstrip("/")).name


def add_ckpt_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the --ckpt path: the protocol (shared with `t2ibench generate`), tags and the store."""
    from t2ibench.commands.generate import add_generation_arguments

    add_generation_arguments(p, ckpt_required=False)
    t = p.add_argument_group("--ckpt: result tags (read from a t2ibench trainer checkpoint when not given)")
    t.add_argument("--run", help="run name (default: the trainer's run tag, else the checkpoint dir name)")
    t.add_argument("--variant", help="variant name (default: the checkpoint's)")
    t.add_argument("--step", type=nonnegative_int, help="training step")
    t.add_argument("--train-flops", type=nonnegative_float, help="cumulative training FLOPs")
    t.add_argument("--db", metavar="PATH|URL", help="results store: a SQLite path or postgresql://user@host:port/dbname "
                                                  "(default $T2IBENCH_DB, else results/t2ibench.sqlite)")
    t.add_argument("--no-store", action="store_true", help="write results.json only, no row in the store")
    q = p.add_argument_group("TIFA (both --ckpt and --images)")
    q.add_argument("--tifa-questions", metavar="FILE", help="TIFA-format question file (brings its own prompts)")
    q.add_argument("--tifa-vqa", metavar="NAME", help="TIFA VQA backend (e.g. blip-vqa-capfilt-large, shapes-measure)")


def _option_items(args: argparse.Namespace) -> list[str]:
    """`--option metric.key=value` plus the TIFA shorthands, as METRIC.KEY=VALUE items."""
    items = list(args.option)
    for flag, key in (("tifa_questions", "questions"), ("tifa_vqa", "vqa")):
        value = getattr(args, flag, None)
        if value:
            if "tifa" not in [m.strip() for m in args.metrics.split(",")]:
                raise UserError(f"--{flag.replace('_', '-')} needs tifa among --metrics")
            items.append(f"tifa.{key}={value}")
    return items


def _print_summary(record: dict, names: list[str], path: Path, fmt: str) -> None:
    summary = {m: {k: r.get(k) for k in ("value", "ci95", "version", "n_items", "n_skipped")}
               for m, r in record["metrics"].items() if m in names}
    if fmt == "json":
        out = {"results": str(path), "metrics": summary}
        if "manifest_hash" in record:
            out = {"results": str(path), "manifest_hash": record["manifest_hash"], "metrics": summary}
        print(json.dumps(out, indent=1))
    else:
        for m, s in summary.items():
            ci = f" [{s['ci95'][0]:.6g}, {s['ci95'][1]:.6g}]" if s.get("ci95") else ""
            print(f"{m:12} {s['value']:.6g}{ci}  n={s['n_items']} skipped={s['n_skipped']}  {s['version']}")
        print(f"wrote {path}")
