"""`t2ibench metrics [--format table|json]`: every scorer, its version, kind, weights (present or missing)
and the keys its `--option METRIC.KEY=VALUE` takes."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("metrics", help="list the scorers, their versions and whether their weights are present",
                              description=__doc__)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=run)


def describe(name: str) -> dict:
    from t2ibench.metrics import scorer_class
    from t2ibench.metrics.option_keys import option_keys
    from t2ibench.weights import find_local

    cls = scorer_class(name)
    files = []
    for wf in cls.weight_files():
        hit = find_local(wf)
        files.append({"key": wf.key, "repo_id": wf.repo_id, "filename": wf.filename, "revision": wf.revision,
                      "sha256": wf.sha256, "url": wf.url, "present": hit is not None,
                      "path": str(hit) if hit else None})
    return {"name": name, "version": cls.declared_version(), "kind": cls.kind,
            "higher_is_better": cls.higher_is_better, "default_prompt_set": cls.default_prompt_set, "files": files,
            "options": sorted(option_keys(name)),
            "weights": "present" if all(f["present"] for f in files) else "missing"}


def run(args: argparse.Namespace) -> int:
    from t2ibench.metrics import SCORERS

    rows = [describe(name) for name in SCORERS]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "version", "kind", "weights", "files", "--option keys")
    for r in rows:
        files = "\n".join(f"{'ok' if f['present'] else 'MISSING'} {f['repo_id']}/{f['filename']}" for f in r["files"])
        table.add_row(r["name"], r["version"], r["kind"], r["weights"], files, ", ".join(r["options"]) or "-")
    Console(width=200).print(table)
    return 0
