"""`t2ibench prompts list | show NAME | fetch NAME`: the registered prompt sets.

    t2ibench prompts list
    t2ibench prompts show tifa-v1 --prompts-dir ../shared/data/prompts --head 5
    t2ibench prompts fetch coco-10k          # download at the pinned commit into ~/.cache/t2ibench/prompts
    t2ibench prompts show my_prompts.jsonl   # a user file: .txt, .csv, .tsv, .jsonl or .json
"""

from __future__ import annotations

import argparse
import json

from t2ibench.cli_args import nonnegative_int


def register(subparsers) -> None:
    p = subparsers.add_parser("prompts", help="list, show or fetch prompt sets",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every registered prompt set with its source, count and license")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(handler=cmd_list)
    for name, fn, text in (("show", cmd_show, "load a set (checksum-verified) and print its records"),
                           ("fetch", cmd_fetch, "download a set's files at the pinned commit into the cache")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("name", metavar="NAME_OR_FILE")
        sp.add_argument("--prompts-dir", metavar="DIR", help="local copies (layout of shared/data/prompts)")
        sp.add_argument("--format", choices=("table", "json"), default="table")
        if name == "show":
            sp.add_argument("--head", type=nonnegative_int, default=10, help="records to print (default 10; 0 = all)")
        sp.set_defaults(handler=fn)


def cmd_list(args: argparse.Namespace) -> int:
    from t2ibench.prompts import PAPER_PROMPT_SETS, manifest_names, read_manifest

    rows = []
    for name in manifest_names():
        m = read_manifest(name)
        first = next(iter(m["files"].values()))
        rows.append({"name": name, "count": m["count"], "license": m["license"],
                     "source": first.get("url") or f"hf://datasets/{first.get('hf_dataset')}/{first.get('path')}",
                     "default_for": [k for k, v in PAPER_PROMPT_SETS.items() if v == name],
                     "description": m["description"]})
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "count", "license", "paper default for", "description")
    for r in rows:
        table.add_row(r["name"], f"{r['count']:,}", r["license"], ",".join(r["default_for"]), r["description"])
    Console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from t2ibench.prompts import load_prompt_set

    pset = load_prompt_set(args.name, args.prompts_dir)
    head = pset.records if args.head == 0 else pset.records[: args.head]
    if args.format == "json":
        print(json.dumps({**pset.describe(), "records": [asdict(r) for r in head]}, indent=1))
        return 0
    print(f"{pset.name}: {len(pset):,} prompts, sha256 {pset.sha256}")
    for r in head:
        cat = f" [{r.category}]" if r.category else ""
        print(f"  {r.id}{cat}: {r.text}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from t2ibench.prompts import read_manifest, resolve_file

    manifest = read_manifest(args.name)
    got = {key: str(resolve_file(args.name, key, args.prompts_dir)) for key in manifest["files"]}
    if args.format == "json":
        print(json.dumps(got, indent=1))
    else:
        for key, path in got.items():
            print(f"{args.name} {key}: {path} (checksum ok)")
    return 0
