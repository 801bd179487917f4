"""`t2ibench train VARIANT [--data SPEC] [--out DIR] [--resume] [key=value ...]`: the reference trainer.

The run config's defaults are the paper's recipe (t2ibench/train/config.py); any field can be overridden as
`key=value`, e.g. `model.channels=32 model.transformer_depth=0,1,1 train.mixed_precision=no`.
Several processes: `accelerate launch -m t2ibench train ...` (or torchrun).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a registered variant with the paper's recipe",
        description="Train a registered backbone variant with the study's recipe (256 px, SDXL VAE, OpenCLIP-H,\n"
                    "AdamW 8e-5 with 10K warmup, global batch 2048, bf16). Override any config field as key=value.\n"
                    "When stdout is not a terminal, a progress line is printed every log.every steps.",
        epilog="examples:\n"
               "  t2ibench train sdxl_td4_8 --data /data/shards --out runs/td4_8\n"
               "  t2ibench train sdxl --data shapes/ resolution=32 model.vae=none model.text_encoder=tiny \\\n"
               "      model.channels=16 model.transformer_depth=0,1,1 model.norm_groups=8 model.head_dim=16 \\\n"
               "      train.global_batch=16 train.micro_batch=16 train.mixed_precision=no train.steps=200\n"
               "  t2ibench train --list-keys",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # VARIANT and key=value may come before or after the options: the words after the first
    # positional are parsed again (intermixed) by the same option set in _train.
    p.add_argument("variant", nargs=argparse.REMAINDER, metavar="VARIANT [key=value ...]",
                   help="registered variant name (see `t2ibench variants`), then run config overrides")
    _add_options(p)
    p.set_defaults(handler=_train)


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="training data: image folder, webdataset *.tar shards, *.parquet, or a glob")
    p.add_argument("--out", help="output directory (default runs/<variant>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest intact checkpoint in --out (a damaged newer one is set aside)")
    p.add_argument("--list-keys", action="store_true", help="print every config key with its default and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def _parse_rest(args: argparse.Namespace) -> argparse.Namespace:
    """Options that came after VARIANT, intermixed with key=value words."""
    from t2ibench.errors import UserError

    inner = argparse.ArgumentParser(prog="t2ibench train", add_help=False)
    inner.add_argument("words", nargs="*")
    _add_options(inner)
    try:
        rest, unknown = inner.parse_known_intermixed_args(args.variant)
    except SystemExit:
        raise UserError("could not parse the arguments; see `t2ibench train --help`") from None
    if unknown:
        raise UserError(f"unknown option {unknown[0]!r}; see `t2ibench train --help`")
    for key in ("data", "out"):
        if getattr(rest, key) is not None:
            setattr(args, key, getattr(rest, key))
    for key in ("resume", "list_keys", "print_config"):
        setattr(args, key, getattr(args, key) or getattr(rest, key))
    args.variant, args.overrides = (rest.words[0], rest.words[1:]) if rest.words else (None, [])
    return args


def _train(args: argparse.Namespace) -> int:
    from t2ibench.commands import load_plugins
    from t2ibench.errors import UserError
    from t2ibench.train.config import RunConfig, apply_overrides, validate

    args = _parse_rest(args)
    load_plugins()  # eval.options may name a VQA backend registered by the demo

    if args.list_keys:
        _list_keys()
        return 0
    if not args.variant:
        raise UserError("name a variant to train (see `t2ibench variants`)")
    from t2ibench.variants import get_variant

    spec = get_variant(args.variant)  # unknown name: one line listing the known ones, before anything is built
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    if args.out:
        overrides.append(f"out={args.out}")
    config = apply_overrides(RunConfig(variant=args.variant), overrides)
    if args.print_config:
        validate(config)
        print(json.dumps(config.to_dict(), indent=1, default=list))
        return 0
    from t2ibench.train.loop import train

    result = train(config, resume=args.resume, spec=spec)  # validates the config first
    print(f"trained {result.run}: step {result.step}, {result.samples_seen} samples, "
          f"{result.train_flops:.3e} training FLOPs (paper convention {result.train_flops_paper:.3e}); "
          f"checkpoint {result.model_dir}")  # same stream as the progress lines
    if result.skipped:
        print("skipped samples: " + ", ".join(f"{n} {r}" for r, n in result.skipped.items()))
    return 0


def _list_keys() -> None:
    import dataclasses

    from t2ibench.train.config import RunConfig

    def walk(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                recipe = "" if f.metadata.get("recipe", True) else "  (not part of the recipe hash)"
                print(f"{prefix}{f.name}={value if not isinstance(value, tuple) else ','.join(map(str, value))}{recipe}")

    walk(RunConfig())
