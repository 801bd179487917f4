"""The `t2ibench` command. Each subcommand lives in `t2ibench/commands/<name>.py` and exposes
`register(subparsers)`, which adds its parser and sets `handler` (a function of the parsed args that
returns an exit code). Command modules import only argparse-level things at import time; heavy
libraries (torch, diffusers, ...) are imported inside handlers so `t2ibench variants` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from t2ibench import __version__
from t2ibench.errors import UserError

COMMANDS = (
    "variants", "metrics", "weights", "features", "prompts", "generate", "eval",
    "train", "leaderboard", "compare", "data", "demo", "study",
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints usage plus the error (two lines or more); the CLI contract is one line.
    Subcommand parsers inherit this class (add_subparsers uses the parent's class)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="t2ibench",
        description="Train, evaluate and compare text-to-image diffusion backbones under one protocol.",
    )
    parser.add_argument("--version", action="version", version=f"t2ibench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"t2ibench.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"t2ibench.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The study's tools run offline far more often than not; a hub that cannot be reached costs
    # 30-50 s of retries per file, so offline is the default unless the user says otherwise.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    logging.basicConfig(level=os.environ.get("T2IBENCH_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"t2ibench {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"t2ibench {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `t2ibench variants | head`: the reader left, which is not an error
        sys.stderr.close()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
