"""`t2ibench eval`: score images with the selected metrics and write a results JSON.

`--images DIR` scores a folder of existing images against `--prompts` (a prompt-set name or a
.txt/.csv/.tsv/.jsonl/.json file). Images are named `<prompt id>.png` or `<index>.png` (00000.png is
the first prompt). `--ckpt PATH` generates the images under the protocol
first (cached, resumable), then scores them and adds one row per metric to the results store; PATH
is a checkpoint directory, a training run directory (its newest checkpoint) or a hub id.

Weights and options per metric: `--weights METRIC.KEY=PATH` (e.g. `imagereward.imagereward=/w/ImageReward.pt`,
or a directory holding the file) and `--option METRIC.KEY=VALUE` (e.g. `fid.real_images=/data/coco_val_256`,
`fid.resize=pil-bicubic-299`, `clip.arch=ViT-H-14 clip.pretrained=laion2b_s32b_b79k`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from t2ibench.cli_args import nonnegative_float, nonnegative_int, positive_int
from t2ibench.errors import UserError

RESULTS_FILE = "results.json"


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
    if getattr(args, "ckpt", None):
        return eval_ckpt(args)
    refuse_ckpt_only_flags(args)
    return eval_images(args)


def refuse_ckpt_only_flags(args: argparse.Namespace) -> None:
    """Flags that only mean something with --ckpt: refused with --images rather than ignored (a result
    the user expects in the store must not silently be missing)."""
    from t2ibench.commands.generate import DEFAULTS

    given = [f"--{name.replace('_', '-')}" for name in ("run", "variant", "step", "train_flops", "db", "image_cache",
                                                        "prompts_dir") if getattr(args, name, None) is not None]
    given += [f"--{name.replace('_', '-')}" for name in ("no_store", "ema") if getattr(args, name, False)]
    given += [f"--{name}" for name, default in DEFAULTS.items()
              if name != "resolution" and getattr(args, name, default) not in (default, None)]  # None: unset
    if str(getattr(args, "resolution", DEFAULTS["resolution"])) != str(DEFAULTS["resolution"]):
        given.append("--resolution")
    if getattr(args, "gen_batch_size", 8) != 8:
        given.append("--gen-batch-size")
    if given:
        raise UserError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --ckpt only: --images scores "
                        "existing files and writes results.json, with no store row or generation; drop "
                        f"{'it' if len(given) == 1 else 'them'} or evaluate a checkpoint with --ckpt")


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


def scorer_options_from_args(args: argparse.Namespace, metrics: list[str]) -> dict[str, dict]:
    """`--option metric.key=value` plus the TIFA shorthands, for both the --ckpt and --images paths."""
    options = {m: {k: _option_value(v) for k, v in kv.items()}
               for m, kv in parse_assignments(args.option, "option", metrics).items()}
    for flag, key in (("tifa_questions", "questions"), ("tifa_vqa", "vqa")):
        if getattr(args, flag, None):
            if "tifa" not in metrics:
                raise UserError(f"--{flag.replace('_', '-')} needs tifa among --metrics")
            options.setdefault("tifa", {})[key] = getattr(args, flag)
    return options


def eval_ckpt(args: argparse.Namespace) -> int:
    """Generate images for a checkpoint under the protocol (cached, resumable), then score them."""
    from t2ibench.commands.generate import protocol_from_args
    from t2ibench.evaluate import evaluate
    from t2ibench.metrics import parse_metrics

    from t2ibench.checkpoints import precheck
    from t2ibench.metrics.option_keys import check_scorer_keys

    metrics = parse_metrics(args.metrics)
    weights = parse_assignments(args.weights, "weights", metrics)
    options = scorer_options_from_args(args, metrics)
    check_scorer_keys(metrics, weights, options)
    precheck(args.ckpt, args.ema)  # a wrong path: the wrong-path message, whatever the other flags say
    protocol = protocol_from_args(args, args.ckpt)
    device = resolve_device(args.device)
    out_dir = args.out or Path("results") / "eval" / _default_out_name(args.ckpt)
    result = evaluate(args.ckpt, metrics, prompts=args.prompts, prompts_dir=args.prompts_dir, protocol=protocol,
                      out_dir=out_dir, limit=args.limit, db=args.db, run=args.run, variant=args.variant,
                      step=args.step, train_flops=args.train_flops, scorer_options=options,
                      device=device, batch_size=args.gen_batch_size, ema=args.ema,
                      weights=weights, image_dir=args.image_cache, score_batch_size=args.batch_size,
                      store=not args.no_store, progress=args.format != "json", offload=args.offload)
    summary = {m: {"value": r["value"], "version": r["version"], "n_items": r["n_items"], "n_skipped": r["n_skipped"]}
               for m, r in result["metrics"].items() if m in metrics}
    path = Path(out_dir) / RESULTS_FILE
    if int(os.environ.get("RANK", "0")) != 0:  # under accelerate launch: the main process reports
        return 0
    if args.format == "json":
        print(json.dumps({"results": str(path), "manifest_hash": result["manifest_hash"], "metrics": summary}, indent=1))
    else:
        for m, s in summary.items():
            ci = f" [{s['ci95'][0]:.6g}, {s['ci95'][1]:.6g}]" if s.get("ci95") else ""
            print(f"{m:12} {s['value']:.6g}{ci}  n={s['n_items']} skipped={s['n_skipped']}  {s['version']}")
        print(f"wrote {path}")
    return 0


def _default_out_name(ckpt: str) -> str:
    """`runs/td4_8` or `runs/td4_8/latest` -> 'td4_8-step-00004000' (not 'latest' or 'model')."""
    from t2ibench.checkpoints import resolve_ckpt_path

    resolved = resolve_ckpt_path(ckpt)
    if resolved.name == "model" and resolved.parent.parent.name == "checkpoints":
        return f"{resolved.parents[2].name}-{resolved.parent.name}"
    return Path(ckpt.rstrip("/")).name


# -- helpers shared by both paths -------------------------------------------------------------------

def parse_assignments(items: list[str], what: str, metrics: list[str]) -> dict[str, dict[str, str]]:
    """['fid.resize=torch-fidelity'] -> {'fid': {'resize': 'torch-fidelity'}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        metric, dot, key = head.rpartition(".")
        if not (sep and dot and metric and key and value):
            raise UserError(f"--{what} {item!r}: expected METRIC.KEY=VALUE")
        if metric not in metrics:
            raise UserError(f"--{what} {item!r}: {metric} is not among --metrics {','.join(metrics)}")
        out.setdefault(metric, {})[key] = value
    return out


def _option_value(value: str) -> Any:
    return {"true": True, "false": False}.get(value.lower(), value)


def resolve_device(device: str) -> str:
    from t2ibench.devices import resolve_device as checked

    return checked(device)


def check_weights(metrics: list[str], weights: dict[str, dict[str, str]], options: dict[str, dict[str, Any]]) -> None:
    """Every weight file of every metric, found before any model is built (MissingWeightsError otherwise)."""
    from t2ibench.metrics import scorer_class
    from t2ibench.prerequisites import MissingInputs
    from t2ibench.weights import resolve

    missing = MissingInputs()  # every missing file in one message, not one per attempt
    for name in metrics:
        cls = scorer_class(name)
        files = cls.weight_files(**options.get(name, {}))
        known = {wf.key for wf in files}
        for key in weights.get(name, {}):
            if key not in known:
                raise UserError(f"--weights {name}.{key}: {name} has no weights {key!r}; known: {', '.join(sorted(known))}")
        for wf in files:
            explicit = weights.get(name, {}).get(wf.key)
            missing.check(lambda wf=wf, explicit=explicit: resolve(wf, Path(explicit) if explicit else None, metric=name))
    missing.raise_if_any()


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("t2ibench", "torch", "open_clip_torch", "transformers", "torch-fidelity", "image-reward", "hpsv2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def score_metrics(metrics: list[str], paths: list[Path], prompts: list, device: str, batch_size: int | None,
                  weights: dict[str, dict[str, str]], options: dict[str, dict[str, Any]]) -> tuple[dict, list[str]]:
    """Build each scorer, stream the images through it, and collect its result (and the unreadable images)."""
    from t2ibench.evaluate import uncertainty
    from t2ibench.images import load_image
    from t2ibench.metrics import scorer_class

    results: dict[str, Any] = {}
    unreadable: set[str] = set()

    def images():  # decoded per metric, so memory stays one batch deep
        for p in paths:
            image = load_image(p)
            if image is None:
                unreadable.add(p.name)
            yield image

    for name in metrics:
        t0 = time.time()
        scorer = scorer_class(name)(device=device, weights=weights.get(name), **options.get(name, {}))
        result = scorer.score(images(), prompts, batch_size=batch_size)
        d = result.to_dict()
        d.update(uncertainty(result))  # ci95, how it was made, categories' intervals
        d["weights"] = {k: {"path": str(p), "bytes": p.stat().st_size if p.is_file() else None}
                        for k, p in scorer.paths.items()}
        d["seconds"] = round(time.time() - t0, 3)
        results[name] = d  # reported once, by the caller's summary
        del scorer
    return results, sorted(unreadable)


def eval_images(args: argparse.Namespace) -> int:
    """Score the images of `args.images` against `args.prompts`; write results.json under `args.out`."""
    from t2ibench.images import load_prompts, match_images
    from t2ibench.metrics import parse_metrics

    from t2ibench.cli_args import writable_dir
    from t2ibench.metrics.option_keys import check_scorer_keys

    metrics = parse_metrics(args.metrics)
    weights = parse_assignments(args.weights, "weights", metrics)
    options = scorer_options_from_args(args, metrics)
    check_scorer_keys(metrics, weights, options)
    from t2ibench.prerequisites import MissingInputs

    if not args.prompts and not getattr(args, "tifa_questions", None):
        raise UserError("--images needs --prompts FILE_OR_NAME (the prompts the images were generated from)")
    missing = MissingInputs()  # the prompts and every scorer's weights, reported together
    if args.prompts:
        prompts = missing.check(lambda: load_prompts(args.prompts, limit=args.limit))
    else:  # a TIFA question file brings its own prompts
        from t2ibench.prompts import prompts_from_tifa_questions

        prompts = missing.check(lambda: prompts_from_tifa_questions(args.tifa_questions, limit=args.limit))
    match = missing.check(lambda: match_images(args.images, list(prompts))) if prompts is not None else None
    missing.check(lambda: check_weights(metrics, weights, options))  # stop before any model is loaded
    missing.raise_if_any()
    from t2ibench.metrics import check_prompts

    for m in metrics:  # the metric's questions present, K images per prompt (--images-per-prompt, else 1)
        check_prompts(m, match.prompts, getattr(args, "images_per_prompt", None), **options.get(m, {}))
    out_dir = writable_dir(args.out or Path("results") / "eval" / Path(args.images).resolve().name, "--out")
    device = resolve_device(args.device)

    results, unreadable = score_metrics(metrics, match.paths, match.prompts, device, args.batch_size, weights, options)
    record = {
        "source": {"images": str(Path(args.images).resolve()), "prompts": args.prompts, "matched_by": match.by},
        "prompt_set": prompts.describe() if hasattr(prompts, "describe") else None,
        "n_prompts": len(prompts), "n_images": len(match.paths), "prompts_without_image": match.prompts_without_image,
        "n_skipped": len(unreadable), "skipped_images": unreadable,
        "metrics": results,
        "manifest": {"device": device, "batch_size": args.batch_size, "packages": package_versions(),
                     "scorers": {m: r["version"] for m, r in results.items()}, "options": options},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = Path(out_dir) / RESULTS_FILE
    from t2ibench.atomic import write_json_atomic

    write_json_atomic(path, record)
    summary = {m: {"value": r["value"], "ci95": r.get("ci95"), "version": r["version"], "n_items": r["n_items"],
                   "n_skipped": r["n_skipped"]} for m, r in results.items()}
    if args.format == "json":
        print(json.dumps({"results": str(path), "metrics": summary}, indent=1))
    else:
        for m, s in summary.items():
            print(f"{m:12} {s['value']:.6g}  n={s['n_items']} skipped={s['n_skipped']}  {s['version']}")
        print(f"wrote {path}")
    return 0
