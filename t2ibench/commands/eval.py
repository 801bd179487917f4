"""`t2ibench eval`: score images with the selected metrics and write a results JSON.

`--images DIR` scores a folder of existing images against `--prompts` (a prompt-set name or a
.txt/.csv/.tsv/.jsonl/.json file). Images are named `<prompt id>.png` or `<index>.png` (00000.png is
the first prompt); see t2ibench/images.py. `--ckpt PATH` generates under the protocol, then scores.
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
    p.add_argument("--out", type=Path, metavar="DIR", help="where results.json goes (default results/eval/<images dir>)")
    p.add_argument("--limit", type=int, help="use only the first N prompts")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: each metric's own)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--weights", action="append", default=[], metavar="METRIC.KEY=PATH")
    p.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE")
    p.add_argument("--format", choices=("table", "json"), default="table")
    add_ckpt_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Parse the arguments into the driver's inputs, call `t2ibench.evaluate`, print its summary."""
    from t2ibench.commands import load_plugins
    from t2ibench.evaluate import RESULTS_FILE, MetricSelection, evaluate, evaluate_images
    from t2ibench.generate import resolve_device

    load_plugins()  # VQA backends named by --tifa-vqa may come from the demo
    selection = MetricSelection.parse(args.metrics, weights=args.weights, options=_option_items(args))
    common = dict(limit=args.limit, device=resolve_device(args.device), score_batch_size=args.batch_size,
                  progress=args.format != "json")
    if args.ckpt:
        from t2ibench.commands.generate import protocol_from_args

        out_dir = args.out or Path("results") / "eval" / Path(args.ckpt.rstrip("/")).name
        record = evaluate(args.ckpt, selection, prompts=args.prompts, prompts_dir=args.prompts_dir,
                          protocol=protocol_from_args(args, args.ckpt), out_dir=out_dir, db=args.db, run=args.run,
                          variant=args.variant, step=args.step, train_flops=args.train_flops,
                          batch_size=args.gen_batch_size, ema=args.ema, image_dir=args.image_cache,
                          store=not args.no_store, **common)
        if int(os.environ.get("RANK", "0")) != 0:  # under accelerate launch: the main process reports
            return 0
    else:
        out_dir = args.out or Path("results") / "eval" / Path(args.images).resolve().name
        record = evaluate_images(args.images, selection, prompts=args.prompts, out_dir=out_dir, **common)
    _print_summary(record, selection.names, Path(out_dir) / RESULTS_FILE, args.format)
    return 0


def add_ckpt_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the --ckpt path: the protocol (shared with `t2ibench generate`), tags and the store."""
    from t2ibench.commands.generate import add_generation_arguments

    add_generation_arguments(p, ckpt_required=False)
    t = p.add_argument_group("--ckpt: result tags (read from a t2ibench trainer checkpoint when not given)")
    t.add_argument("--run", help="run name (default: the trainer's run tag, else the checkpoint dir name)")
    t.add_argument("--variant", help="variant name (default: the checkpoint's)")
    t.add_argument("--step", type=int, help="training step")
    t.add_argument("--train-flops", type=float, help="cumulative training FLOPs")
    t.add_argument("--db", metavar="PATH", help="results store (default $T2IBENCH_DB, else results/t2ibench.sqlite)")
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
    summary = {m: {k: r[k] for k in ("value", "version", "n_items", "n_skipped")}
               for m, r in record["metrics"].items() if m in names}
    if fmt == "json":
        out = {"results": str(path), "metrics": summary}
        if "manifest_hash" in record:
            out = {"results": str(path), "manifest_hash": record["manifest_hash"], "metrics": summary}
        print(json.dumps(out, indent=1))
    else:
        for m, s in summary.items():
            print(f"{m:12} {s['value']:.6g}  n={s['n_items']} skipped={s['n_skipped']}  {s['version']}")
        print(f"wrote {path}")
