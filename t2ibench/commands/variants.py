"""`t2ibench variants [NAME] [--format table|json|csv]`: the registry with params and compute."""

from __future__ import annotations

import argparse

CONVENTION = (
    "One forward pass, batch 1, 256x256 (latent 1x4x32x32), 77 text tokens (the paper's Tables 1-2). "
    "1 MAC = 2 FLOPs. GMACs = full count, incl. the attention-score and attention-value products inside "
    "scaled_dot_product_attention; GMACs paper = the paper's convention, without those two products; "
    "attn GMACs = all MACs inside the transformer/attention blocks (full count); "
    "train TFLOPs/sample = 3 x forward FLOPs (full count)."
)

FIELDS = (
    "name", "family", "params", "gmacs", "gmacs_paper", "gmacs_sdpa", "gmacs_attention",
    "gmacs_attention_paper", "attention_share", "train_flops_per_sample",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "variants",
        help="list the backbone variants with params and GMACs",
        description="Every registered backbone variant (the paper's Tables 1 and 2) with its exact parameter "
        "count, forward GMACs in two conventions, attention GMACs and training FLOPs per sample. " + CONVENTION,
    )
    parser.add_argument("name", nargs="?", help="show one variant with its full config")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    parser.set_defaults(handler=run)


def _row(spec) -> dict:
    from t2ibench.variants import protocol_stats

    stats = protocol_stats(spec).to_dict()
    row = {key: stats[key] for key in FIELDS}
    row["description"] = spec.description
    return row


def run(args: argparse.Namespace) -> int:
    from t2ibench.variants import VARIANTS, get_variant

    if args.name:
        return _show_one(get_variant(args.name), args.format)
    _warn_if_counting(list(VARIANTS.values()))
    rows = [_row(spec) for spec in VARIANTS.values()]
    if args.format == "json":
        import json

        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        _print_csv(rows)
    else:
        _print_table(rows)
    return 0


def _warn_if_counting(specs) -> None:
    import sys

    from t2ibench.variants.compute import PROTOCOL_CONTEXT_TOKENS, _cache_path, is_cached

    todo = [s for s in specs if not is_cached(s, PROTOCOL_CONTEXT_TOKENS)]
    if todo:
        print(f"counting {len(todo)} variant(s) on the meta device (about 1-2 s each, once; cached in "
              f"{_cache_path()})", file=sys.stderr)


def _print_csv(rows: list[dict]) -> None:
    import csv
    import sys

    writer = csv.DictWriter(sys.stdout, fieldnames=[*FIELDS, "description"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _print_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="t2ibench variants", caption=CONVENTION, caption_justify="left")
    headers = ("name", "family", "params", "GMACs\n(full)", "GMACs\n(paper)", "attn\nGMACs", "attn\n%",
               "train TFLOPs\n/sample")
    for header in headers:
        table.add_column(header, justify="left" if header in ("name", "family") else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["name"], row["family"], f"{row['params'] / 1e9:.3f}B", f"{row['gmacs']:.1f}",
            f"{row['gmacs_paper']:.1f}", f"{row['gmacs_attention']:.1f}", f"{100 * row['attention_share']:.0f}",
            f"{row['train_flops_per_sample'] / 1e12:.2f}",
        )
    _console().print(table)


def _console():
    import sys

    from rich.console import Console

    # piped output has no terminal width to respect; rich would otherwise squeeze it to 80 columns
    return Console() if sys.stdout.isatty() else Console(width=120)


def _show_one(spec, fmt: str) -> int:
    _warn_if_counting([spec])
    row = _row(spec)
    detail = {**row, "spec": spec.to_dict(), "diffusers_class": spec.model_class().__name__,
              "diffusers_config": spec.diffusers_config()}
    if fmt == "json":
        import json

        print(json.dumps(detail, indent=2, default=list))
        return 0
    if fmt == "csv":
        _print_csv([row])
        return 0
    from rich.table import Table

    table = Table(title=f"{spec.name} ({spec.family}): {spec.description}", caption=CONVENTION,
                  caption_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("params", f"{row['params']:,}")
    for key in FIELDS[3:]:
        value = row[key]
        table.add_row(key, f"{value:.4g}" if key == "train_flops_per_sample" else f"{value:.2f}")
    for key, value in spec.to_dict().items():
        if key not in ("name", "family", "description"):
            table.add_row(f"spec.{key}", str(value))
    table.add_row("diffusers class", detail["diffusers_class"])
    for key, value in detail["diffusers_config"].items():
        table.add_row(f"config.{key}", str(value))
    _console().print(table)
    return 0
