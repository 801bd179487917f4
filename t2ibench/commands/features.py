"""`t2ibench features build`: compute and cache image features ahead of scoring.

    t2ibench features build --coco-dir /data/coco/val2014 --prompts coco-10k --metrics fid,cmmd,fd-dinov2
    t2ibench features build --images results/eval/run-a/images/coco-10k --extractors inception

Fills the feature cache that FID, KID, precision/recall, density/coverage, CMMD and FD-DINOv2 read
(`--cache-dir`, default $T2IBENCH_CACHE or ~/.cache/t2ibench), so a cluster computes the real side
once and shares the directory. `--coco-dir` with `--prompts` caches exactly the COCO images those
prompts name, in the order a scorer asks for them (a whole-list hit: nothing is decoded again).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from t2ibench.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("features", help="precompute and cache features for the distribution metrics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="extract and cache features of an image folder or COCO images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = b.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR", help="a folder of images (generated or real)")
    source.add_argument("--coco-dir", type=Path, metavar="DIR", help="COCO val2014 images")
    b.add_argument("--prompts", metavar="NAME", help="with --coco-dir: only the images these prompts name")
    b.add_argument("--limit", type=int, help="with --prompts: the first N prompts")
    which = b.add_mutually_exclusive_group()
    which.add_argument("--extractors", help="comma-separated: inception, clip-vit-l14-336, dinov2-vit-l14 (default all)")
    which.add_argument("--metrics", help="the extractors these metrics read, e.g. fid,cmmd")
    b.add_argument("--resize", help="Inception resize protocol (default center-crop-256), as fid.resize")
    b.add_argument("--weights", action="append", default=[], metavar="EXTRACTOR=PATH")
    b.add_argument("--cache-dir", type=Path, metavar="DIR", help="feature cache root (default $T2IBENCH_CACHE)")
    b.add_argument("--device", default="auto")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--format", choices=("table", "json"), default="table")
    b.set_defaults(handler=run)


def _extractors(args) -> list[str]:
    from t2ibench.metrics import parse_metrics, scorer_class
    from t2ibench.metrics.features import EXTRACTORS, extractor_spec

    if args.metrics:
        names = []
        for m in parse_metrics(args.metrics):
            ex = getattr(scorer_class(m), "extractor", None)
            if ex is None or scorer_class(m).kind != "distribution":
                raise UserError(f"{m} reads no cached features; feature metrics: fid, kid, precision, recall, "
                                "density, coverage, cmmd, fd-dinov2")
            names.append(ex)
        return list(dict.fromkeys(names))
    if args.extractors:
        return [extractor_spec(n.strip()).name for n in args.extractors.split(",") if n.strip()]
    return list(EXTRACTORS)


def _files(args) -> list[Path]:
    from t2ibench.images import list_images
    from t2ibench.metrics.distribution import coco_image_path

    if args.prompts and not args.coco_dir:
        raise UserError("--prompts selects COCO images: use it with --coco-dir")
    folder = args.images or args.coco_dir
    if not args.prompts:
        files = list_images(folder)
    else:
        from t2ibench.prompts import load_prompt_set

        ids = [r.meta.get("coco_image_id") for r in load_prompt_set(args.prompts, limit=args.limit).records]
        if any(i is None for i in ids):
            raise UserError(f"prompt set {args.prompts} has no coco_image_id for every prompt")
        files, missing = [], []
        for i in dict.fromkeys(ids):
            p = coco_image_path(folder, i)
            (files if p else missing).append(p or i)
        if missing:
            raise UserError(f"{len(missing)} COCO images not found in {folder} (e.g. id {missing[0]})")
    if not files:
        raise UserError(f"no images in {folder}")
    return files


def run(args: argparse.Namespace) -> int:
    from t2ibench.generate import resolve_device
    from t2ibench.metrics.features import EXTRACTED, extractor_spec, feature_source
    from t2ibench.weights import resolve

    names = _extractors(args)
    explicit = {}
    for item in args.weights:
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise UserError(f"--weights {item!r}: expected EXTRACTOR=PATH with EXTRACTOR among {','.join(names)}")
        explicit[key] = Path(value)
    files = _files(args)
    if args.batch_size < 1:
        raise UserError("--batch-size must be positive")
    device = resolve_device(args.device)
    # every weight file found and every protocol checked before the first image is decoded
    sources = [feature_source(n, resolve(extractor_spec(n).weights, explicit.get(n), metric=None),
                              resize=args.resize if n == "inception" else None, device=device,
                              cache_dir=args.cache_dir, batch_size=args.batch_size) for n in names]
    report = []
    for src in sources:
        before, t0 = EXTRACTED[src.spec.name], time.perf_counter()
        _, skipped = src.of_files(files)
        seconds = time.perf_counter() - t0
        extracted = EXTRACTED[src.spec.name] - before
        report.append({"extractor": src.spec.name, "resize": src.resize, "images": len(files), "unreadable": skipped,
                       "extracted": extracted, "seconds": round(seconds, 3),
                       "images_per_s": round(extracted / seconds, 2) if extracted else None,
                       "cache": str(src.folder)})
    if args.format == "json":
        print(json.dumps(report, indent=1))
    else:
        for r in report:
            rate = f", {r['images_per_s']} images/s" if r["images_per_s"] else ""
            print(f"{r['extractor']:18} {r['images']} images ({r['extracted']} extracted, "
                  f"{r['images'] - r['extracted'] - r['unreadable']} cached, {r['unreadable']} unreadable{rate})  "
                  f"{r['cache']}")
    return 0
