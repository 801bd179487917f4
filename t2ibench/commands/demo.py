"""`t2ibench demo`: train micro variants on a rendered shapes world and score them with TIFA, offline.

The study end to end (data, `t2ibench train`'s trainer, `t2ibench eval`'s TIFA path with the measuring
VQA backend, results store, leaderboard) in about 10 minutes on 2 CPU cores; see t2ibench/demo/runner.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from t2ibench.cli_args import nonnegative_float, nonnegative_int, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    from t2ibench.demo.runner import DEFAULT_VARIANTS, DemoSettings

    d = DemoSettings()
    p = subparsers.add_parser(
        "demo", help="the offline end-to-end study: train micro variants on a shapes world, score with TIFA",
        description="Make a shapes-world data set, train micro variants with the reference trainer, score every\n"
                    "checkpoint (and the untrained weights) with TIFA through the measuring VQA backend, store the\n"
                    "results and build the leaderboard. Resumable: rerun the same command after an interruption.",
        epilog="examples:\n"
               "  t2ibench demo                                   # defaults: ~10 min on 2 CPU cores\n"
               "  t2ibench demo --steps 2400                      # continue the same demo for longer\n"
               "  t2ibench demo --out demo-gpu --device cuda --variants sdxl-c32-td1,sdxl-c32-td2 --steps 5000\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out, help=f"demo directory (default {d.out}/)")
    p.add_argument("--steps", type=positive_int, default=d.steps, help=f"training steps per variant (default {d.steps})")
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every,
                   help=f"evaluate (and checkpoint) every K steps; step 0 is always evaluated (default {d.eval_every})")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated micro variants (see --list-variants; default %(default)s)")
    p.add_argument("--prompts", type=positive_int, default=d.prompts, help=f"held-out evaluation prompts (default {d.prompts})")
    p.add_argument("--device", choices=("cpu", "cuda"), default=d.device, help="where to train and sample")
    p.add_argument("--fresh", action="store_true", help="delete this demo directory's earlier results first")
    study = p.add_argument_group("study settings (recorded; changing them needs --fresh or another --out)")
    study.add_argument("--resolution", type=positive_int, default=d.resolution,
                       help=f"image side in pixels; the world is a 2x2 grid (default {d.resolution})")
    study.add_argument("--prediction", choices=("v_prediction", "epsilon"), default=d.prediction,
                       help="training target: v_prediction on a zero-terminal-SNR schedule (default), or the "
                            "recipe's epsilon on SD's schedule")
    study.add_argument("--batch", type=positive_int, default=d.batch, help=f"global batch (default {d.batch})")
    study.add_argument("--lr", type=positive_float, default=d.lr, help=f"AdamW learning rate (default {d.lr})")
    study.add_argument("--warmup", type=nonnegative_int, default=d.warmup, help=f"LR warmup steps (default {d.warmup})")
    study.add_argument("--train-images", type=positive_int, default=d.train_images,
                       help=f"rendered training images (default {d.train_images})")
    study.add_argument("--sample-steps", type=positive_int, default=d.sample_steps, help=f"DDIM steps (default {d.sample_steps})")
    study.add_argument("--cfg", type=nonnegative_float, default=d.cfg, help=f"classifier-free guidance scale (default {d.cfg})")
    study.add_argument("--max-objects", type=positive_int, default=d.max_objects,
                       help=f"objects per scene, 1..4 (default {d.max_objects})")
    study.add_argument("--seed", type=nonnegative_int, default=d.seed, help="data and initialisation seed")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--list-variants", action="store_true", help="print the micro variants and exit")
    p.add_argument("--format", choices=("table", "json"), default="table", help="summary format")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from t2ibench.demo.runner import MICRO_VARIANTS, DemoSettings, run_demo, summary_table

    console = Console(stderr=args.format == "json")
    if args.list_variants:
        for v in MICRO_VARIANTS.values():
            sizes = " ".join(f"model.{k}={','.join(map(str, val)) if isinstance(val, tuple) else val}"
                             for k, val in v.sizes.items())
            print(f"{v.name:14s} {v.base}  {sizes:62s} {v.description}")
        return 0
    settings = DemoSettings(
        out=args.out, variants=tuple(x.strip() for x in args.variants.split(",") if x.strip()), steps=args.steps,
        eval_every=args.eval_every, prompts=args.prompts, train_images=args.train_images, batch=args.batch,
        lr=args.lr, warmup=args.warmup, sample_steps=args.sample_steps, cfg=args.cfg, seed=args.seed,
        max_objects=args.max_objects, resolution=args.resolution, prediction=args.prediction, device=args.device,
        threads=args.threads)
    if args.format == "json":  # stdout carries only the JSON: progress output (the trainer's too) goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            report = run_demo(settings, fresh=args.fresh, console=console)
    else:
        report = run_demo(settings, fresh=args.fresh, console=console)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    console.print(summary_table(report))
    if report.ground_truth_tifa is not None:
        console.print(f"ground-truth renders of the same prompts: TIFA {report.ground_truth_tifa:.3f} (the ceiling)")
    console.print(f"wall time {report.wall_s:.0f}s · results store {report.db} · leaderboard {report.site}")
    return 0
