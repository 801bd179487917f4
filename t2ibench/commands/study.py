"""`t2ibench study`: re-test the paper's scaling claims on micro variants of the shapes world, each with an
effect, a 95% interval, a p-value and a verdict (t2ibench/demo/study.py, t2ibench/demo/claims.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from t2ibench.cli_args import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    from t2ibench.demo.study import PRESETS

    presets = "\n".join(f"  {p.name:8s} {p.description}" for p in PRESETS.values())
    p = subparsers.add_parser(
        "study", help="re-test the paper's scaling claims at micro scale, with intervals and verdicts",
        description="Train a grid of micro variants (width, depth, caption mix) over several seeds with the\n"
                    "reference trainer, score every run with TIFA at 25/50/75/100% of training, and test the\n"
                    "paper's claims C1-C7, each with an effect, its 95% interval, a p-value and a verdict.\n"
                    "Resumable: rerun the same command after an interruption.\n\npresets:\n" + presets,
        epilog="examples:\n"
               "  t2ibench study                      # the default preset\n"
               "  t2ibench study --quick              # the machinery in about 3 minutes\n"
               "  t2ibench study --seeds 3            # a third seed on top of an existing default study\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=tuple(PRESETS), default="default", help="the grid's size (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="shorthand for --preset quick (and --out study-quick)")
    p.add_argument("--seeds", type=positive_int, default=None,
                   help="training seeds per arm (default: the preset's); may grow between invocations")
    p.add_argument("--out", default=None, help="study directory (default study/, or study-quick/ with --quick)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train and sample")
    p.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="runs trained at once, one process and one torch thread each (default %(default)s: the "
                        "CPU cores, at most 2); the scores do not depend on it")
    p.add_argument("--fresh", action="store_true", help="delete this study directory's earlier results first")
    p.add_argument("--format", choices=("table", "json"), default="table", help="summary format")
    p.set_defaults(handler=_study)


def _study(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from t2ibench.demo.study import StudySettings, run_study
    from t2ibench.leaderboard.study_page import claims_rows

    preset = "quick" if args.quick else args.preset
    out = args.out or ("study-quick" if preset == "quick" else "study")
    settings = StudySettings(preset=preset, seeds=args.seeds, out=out, device=args.device, jobs=args.jobs)
    console = Console(stderr=args.format == "json")
    if args.format == "json":  # stdout carries only the JSON: progress output (the trainer's too) goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            report = run_study(settings, fresh=args.fresh, console=console, stdout_to_stderr=True)
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    report = run_study(settings, fresh=args.fresh, console=console)
    table = Table(title=f"The paper's claims at micro scale (preset {preset}, seeds "
                        f"{', '.join(map(str, report.seeds))})")
    for col in ("claim", "effect", "95% interval", "p", "verdict"):
        table.add_column(col, justify="right" if col in ("effect", "p") else "left")
    for row in claims_rows({"claims": report.claims}):
        table.add_row(*row)
    console.print(table)
    console.print(f"wall time {report.wall_s:.0f}s · report {report.markdown} · page {report.page}")
    return 0
