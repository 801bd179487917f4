"""`t2ibench weights check|fetch [--metrics LIST]`: verify or download the scorers' pinned weight files.

`check` looks only at local copies (explicit dirs via $T2IBENCH_WEIGHTS, the Hugging Face cache,
torch's hub cache) and verifies pinned sha256 hashes; it exits 1 when anything is missing or wrong.
`fetch` downloads what is missing (needs the hub, i.e. HF_HUB_OFFLINE unset). `--trainer` covers the
trainer's frozen parts instead (OpenCLIP ViT-H-14 text encoder, SDXL VAE).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="check or fetch the scorers' weights", description=__doc__)
    p.add_argument("action", choices=("check", "fetch"))
    p.add_argument("--metrics", default=None, help="comma-separated metric names (default: all)")
    p.add_argument("--trainer", action="store_true",
                   help="the trainer's frozen weights (OpenCLIP ViT-H-14 text encoder, SDXL VAE) instead of scorers'")
    p.set_defaults(handler=run)


def _hash_ok(path, sha256: str | None) -> bool | None:
    """None when nothing is pinned; a short pin (a torch.hub-style prefix) is compared as a prefix."""
    if not sha256 or path.is_dir():
        return None
    from t2ibench.weights import sha256_file

    return sha256_file(path).startswith(sha256)


def run(args: argparse.Namespace) -> int:
    from t2ibench.errors import UserError
    from t2ibench.metrics import SCORERS, parse_metrics, scorer_class
    from t2ibench.weights import find_local, hub_offline, resolve

    if args.trainer and args.metrics:
        raise UserError("give --metrics or --trainer, not both")
    if args.trainer:
        from t2ibench.model import OPENCLIP_H, SDXL_VAE

        names, files_of = ["trainer"], {"trainer": [OPENCLIP_H, SDXL_VAE]}
    else:
        names = parse_metrics(args.metrics) if args.metrics else list(SCORERS)
        files_of = {name: scorer_class(name).weight_files() for name in names}
    if args.action == "fetch" and hub_offline():
        missing = [f"{wf.repo_id}/{wf.filename}".rstrip("/") for name in names for wf in files_of[name]
                   if find_local(wf) is None]
        if missing:
            raise UserError(f"cannot fetch {', '.join(missing)}: HF_HUB_OFFLINE=1 (offline mode) forbids downloads; "
                            "run it again with HF_HUB_OFFLINE=0 where the hub is reachable")
    bad = 0
    for name in names:
        for wf in files_of[name]:
            label = f"{name}: {wf.repo_id}/{wf.filename}"
            if args.action == "fetch":
                path = resolve(wf, metric=None if args.trainer else name, download=True)  # MissingWeightsError -> one line, exit 2
            else:
                path = find_local(wf)
                if path is None:
                    print(f"MISSING  {label}")
                    bad += 1
                    continue
            ok = _hash_ok(path, wf.sha256)
            if ok is False:
                print(f"BAD-HASH {label} at {path} (expected sha256 {wf.sha256})")
                bad += 1
            else:
                print(f"{'ok' if ok is None else 'verified':8} {label} at {path}")
    if bad:
        what = "--trainer" if args.trainer else f"--metrics {','.join(names)}"
        print(f"{bad} file(s) missing or wrong; run `t2ibench weights fetch {what}` "
              "where the hub is reachable, or put them under $T2IBENCH_WEIGHTS/<repo_id>/")
        return 1
    return 0
