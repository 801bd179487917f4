"""`t2ibench compare A B [--metric M]`: paired difference of two results with its interval and p-value."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="paired comparison of two results (difference, 95%% interval, permutation p-value)",
        description="Difference of means A - B on the prompts both results scored, with a paired bootstrap 95%% "
                    "interval and a sign-flip permutation p-value. A and B are results.json files (or their "
                    "folders) or runs in the results store, RUN (latest step) or RUN@STEP. Results under "
                    "different protocols or prompt sets are refused.")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--metric", help="compare this metric only (default: every metric both have)")
    p.add_argument("--db", help="results store for RUN / RUN@STEP (default: $T2IBENCH_DB, else ./results/t2ibench.sqlite)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--permutations", type=int, default=10000, help="sign-flip permutations (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from t2ibench.errors import UserError
    from t2ibench.leaderboard.compare import compare_sides, load_side
    from t2ibench.store import ResultsStore

    if args.resamples < 100 or args.permutations < 100:
        raise UserError("--resamples and --permutations must be at least 100")
    store = ResultsStore(args.db)
    a, b = load_side(args.a, store), load_side(args.b, store)
    results = compare_sides(a, b, args.metric, n_resamples=args.resamples, n_permutations=args.permutations,
                            seed=args.seed)
    if args.format == "json":
        print(json.dumps({m: c.to_dict() for m, c in results.items()}))
        return 0
    print(f"A = {a.label}, B = {b.label}: A - B on common prompts, paired bootstrap 95% interval "
          f"({args.resamples} resamples, seed {args.seed}), sign-flip permutation p-value")
    for m, c in results.items():
        verdict = ("" if c.p_value is None else
                   "  significant at 0.05" if c.p_value < 0.05 else "  not significant at 0.05")
        print(f"  {m}: {c.describe(4)}{verdict}")
    return 0
