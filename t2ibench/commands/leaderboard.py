"""`t2ibench leaderboard build|fit|export|import|merge`: the static site, power-law fits on Pareto
frontiers, and moving results between stores (CSV/JSON files, or store to store)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from t2ibench.errors import UserError

X_CHOICES = ("compute", "params", "data")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("leaderboard", help="build the leaderboard site, fit scaling laws, move results",
                              description="Build the static leaderboard site, fit S = a*X^b on Pareto frontiers, "
                                          "and import/export results.")
    sub = p.add_subparsers(dest="leaderboard_command", metavar="ACTION")
    db_help = ("results store: a SQLite path, sqlite:///PATH or postgresql://user@host:port/dbname "
               "(default: $T2IBENCH_DB, else ./results/t2ibench.sqlite)")

    b = sub.add_parser("build", help="write the static site (index.html + plots)")
    b.add_argument("--db", help=db_help)
    b.add_argument("--out", help="output folder (default: ./leaderboard/site)")
    b.add_argument("--select", choices=("latest", "best"), default="latest",
                   help="which result of each run the tables rank (default: latest step)")
    b.add_argument("--format", choices=("text", "json"), default="text")
    b.set_defaults(handler=_build)

    f = sub.add_parser("fit", help="fit S = a*X^b on the Pareto frontier of a metric")
    f.add_argument("--x", choices=X_CHOICES, required=True,
                   help="compute: cumulative training GFLOPs; params: millions of parameters; "
                        "data: millions of image-noun pairs")
    f.add_argument("--metric", default="tifa", help="metric to fit (default: tifa)")
    f.add_argument("--db", help=db_help)
    f.add_argument("--manifest", help="protocol manifest hash (or prefix) to fit when the store holds several")
    f.add_argument("--select", choices=("latest", "best"), default="latest",
                   help="result per run for --x params/data (default: latest)")
    f.add_argument("--plot", help="PNG to draw the fit into (default: ./leaderboard/fit-METRIC-X.png)")
    f.add_argument("--no-plot", action="store_true", help="print the fit only")
    f.add_argument("--format", choices=("text", "json"), default="text")
    f.set_defaults(handler=_fit)

    pr = sub.add_parser("predict", help="predict a run's score at a later step (or the final ranking of runs)",
                        description="Fit the run's score-vs-step curve on its evaluations so far and predict the "
                                    "score at a later step, with a 95%% predictive interval (form chosen by "
                                    "backtest; see docs/statistics.md). --rank predicts every run's score at the "
                                    "same step and ranks them.")
    pr.add_argument("--run", action="append", help="run to predict (repeat for several); default with --rank: all")
    pr.add_argument("--at-step", type=int, help="step to predict (default: the largest step any run reached)")
    pr.add_argument("--up-to-step", type=int,
                    help="use only evaluations at or before this step (a backtest of an early prediction)")
    pr.add_argument("--rank", action="store_true", help="rank the runs by their predicted scores")
    pr.add_argument("--metric", default="tifa", help="metric (default: tifa)")
    pr.add_argument("--manifest", help="protocol manifest hash (or prefix) when the store holds several")
    pr.add_argument("--form", help="curve form (default: the backtest's choice); see docs/statistics.md")
    pr.add_argument("--db", help=db_help)
    pr.add_argument("--format", choices=("text", "json"), default="text")
    pr.set_defaults(handler=_predict)

    e = sub.add_parser("export", help="write every result to a CSV or JSON file")
    e.add_argument("file", help="destination, .csv or .json")
    e.add_argument("--db", help=db_help)
    e.add_argument("--as", dest="file_format", choices=("csv", "json"), help="format (default: from the suffix)")
    e.set_defaults(handler=_export)

    i = sub.add_parser("import", help="add the results of a CSV or JSON export to the store")
    i.add_argument("file", help="source, .csv or .json (as written by export)")
    i.add_argument("--db", help=db_help)
    i.add_argument("--as", dest="file_format", choices=("csv", "json"), help="format (default: from the suffix)")
    i.set_defaults(handler=_import)

    m = sub.add_parser("merge", help="add the results of other stores (e.g. one per job) to one store",
                       description="Copy every result of the source stores into --into, once: a result already "
                                   "there (same run, step, metric, version, manifest and checkpoint hash) is "
                                   "skipped, so merging again changes nothing. A result that is there with a "
                                   "different value is reported and not overwritten (exit status 1).")
    m.add_argument("sources", nargs="+", metavar="SOURCE", help="stores to read: SQLite paths or URLs")
    m.add_argument("--into", required=True, metavar="DB", help="destination store, created if needed: a SQLite path, sqlite:///PATH or "
                                                      "postgresql://user@host:port/dbname")
    m.add_argument("--format", choices=("text", "json"), default="text")
    m.set_defaults(handler=_merge)

    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _store(args: argparse.Namespace, *, reading: bool = True):  # noqa: ANN202
    """The store of --db. A reading command never creates one: a mistyped path or an empty file is an
    error, not an empty store (an empty store would, e.g., replace a good site with an empty page)."""
    from t2ibench.store import ResultsStore

    store = ResultsStore(args.db)
    if reading and store.kind == "sqlite":  # a server database answers for itself when connected
        where = "--db" if args.db else "the default location (set --db PATH or $T2IBENCH_DB)"
        if not store.path.exists():
            raise UserError(f"no results store at {store.path} ({where}); check the path")
        if store.path.is_file() and store.path.stat().st_size == 0:
            raise UserError(f"{store.path} is an empty file, not a results store ({where}); check the path")
    return store


def _build(args: argparse.Namespace) -> int:
    from t2ibench.cli_args import writable_dir
    from t2ibench.leaderboard.site import DEFAULT_OUT, build_site

    store = _store(args)
    writable_dir(args.out or DEFAULT_OUT, "--out")
    report = build_site(store, args.out, select=args.select)
    if args.format == "json":
        print(json.dumps({"index": str(report.index), "results": report.n_rows, "protocol_groups": report.n_groups,
                          "plots": [str(p) for p in report.plots]}))
    elif report.n_rows == 0:
        print(f"the results store is empty; wrote a page that says so: {report.index}")
    else:
        print(f"wrote {report.index} ({report.n_rows} results, {report.n_groups} protocol group(s), "
              f"{len(report.plots)} plots); open it in a browser, no server needed")
    return 0


def _choose_group(groups: list, metric: str, manifest: str | None):  # noqa: ANN202
    of_metric = [g for g in groups if g.metric == metric]
    if not of_metric:
        known = sorted({g.metric for g in groups})
        raise UserError(f"no {metric!r} results in the store" + (f"; it has: {', '.join(known)}" if known else ""))
    comparable = [g for g in of_metric if g.comparable]
    if manifest:
        comparable = [g for g in comparable if g.manifest_hash.startswith(manifest)]
        if not comparable:
            raise UserError(f"no {metric} results with a protocol manifest hash starting {manifest!r}")
    if not comparable:
        raise UserError(f"no {metric} results carry a protocol manifest hash, so none can be compared or fitted")
    chosen = comparable[0]  # group_by_protocol orders by run count, largest first
    others = [g for g in comparable[1:]]
    return chosen, others


def _fit(args: argparse.Namespace) -> int:
    from t2ibench.leaderboard.analysis import X_AXES, fit_scaling, group_by_protocol
    from t2ibench.leaderboard.reference import PAPER_FIT_METRIC, PAPER_FITS

    store = _store(args)
    if not args.no_plot:
        from t2ibench.cli_args import writable_file

        writable_file(args.plot or Path("leaderboard") / f"fit-{args.metric}-{args.x}.png", "--plot")
    group, others = _choose_group(group_by_protocol(store.query(metric=args.metric)), args.metric, args.manifest)
    fit = fit_scaling(group, args.x, args.select)
    plot_path = None
    if not args.no_plot:
        from t2ibench.leaderboard.plots import plot_scaling_fit

        plot_path = plot_scaling_fit(fit, Path(args.plot or Path("leaderboard") / f"fit-{args.metric}-{args.x}.png"))
    paper = PAPER_FITS[args.x] if args.metric.lower() == PAPER_FIT_METRIC else None
    band = fit.band
    intervals = ({"a_ci95": band.a_ci, "b_ci95": band.b_ci, "method": band.method, "n_resamples": band.n_resamples,
                  "seed": band.seed} if band is not None and band.a_ci else
                 {"a_ci95": None, "b_ci95": None, "reason": band.reason if band is not None else "no fit"})
    if args.format == "json":
        print(json.dumps({
            "metric": args.metric, "x": args.x, "x_unit": X_AXES[args.x], "manifest_hash": group.manifest_hash,
            "version": group.version, "a": fit.fit.a, "b": fit.fit.b, "r2": fit.fit.r2, "n_points": len(fit.points),
            **intervals,
            "frontier": [{"run": r.run, "step": r.step, "x": x, "score": s} for x, s, r in fit.frontier],
            "paper": {"a": paper.a, "b": paper.b, "source": paper.source} if paper else None,
            "plot": str(plot_path) if plot_path else None}))
        return 0
    print(f"{args.metric} vs {X_AXES[args.x]}")
    print(f"protocol {group.manifest_hash} (version {group.version}); {len(group.runs())} run(s)")
    if others:
        print(f"note: {len(others)} other protocol(s) hold {args.metric} results and were not pooled "
              f"({', '.join(g.manifest_hash[:12] for g in others)}); choose one with --manifest")
    print(f"Pareto frontier: {len(fit.frontier)} of {len(fit.points)} points")
    for x, s, r in fit.frontier:
        step = f" step {r.step}" if r.step is not None else ""
        print(f"  {r.run}{step}: X = {x:.6g}, S = {s:.4f}")
    print(f"fit (log-log least squares): S = a * X^b with a = {fit.fit.a:.6g}, b = {fit.fit.b:.6g}, "
          f"R^2 = {fit.fit.r2:.4f} (in log space)")
    if intervals.get("a_ci95"):
        print(f"95% intervals ({band.method}, {band.n_resamples} resamples, seed {band.seed}): "
              f"a in [{band.a_ci[0]:.6g}, {band.a_ci[1]:.6g}], b in [{band.b_ci[0]:.6g}, {band.b_ci[1]:.6g}]")
    else:
        print(f"no intervals for a and b: {intervals['reason']}")
    if paper:
        print(f"reference, {paper.label()}")
    if plot_path:
        print(f"plot: {plot_path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from t2ibench.leaderboard.analysis import group_by_protocol
    from t2ibench.leaderboard.predict import default_target_step, predict_ranking
    from t2ibench.stats import CURVE_FORMS, DEFAULT_CURVE_FORM

    form = args.form or DEFAULT_CURVE_FORM
    if form not in CURVE_FORMS:
        raise UserError(f"unknown --form {form!r}; choose one of {', '.join(CURVE_FORMS)}")
    if not args.run and not args.rank:
        raise UserError("name a run with --run R, or use --rank to predict every run")
    group, _ = _choose_group(group_by_protocol(_store(args).query(metric=args.metric)), args.metric, args.manifest)
    at = args.at_step if args.at_step is not None else default_target_step(group)
    if at < 0:
        raise UserError(f"--at-step must be >= 0, got {at}")
    preds = predict_ranking(group, args.run, at, args.up_to_step, form)
    if args.format == "json":
        print(json.dumps({"metric": args.metric, "manifest_hash": group.manifest_hash, "at_step": at,
                          "up_to_step": args.up_to_step, "ranking": bool(args.rank),
                          "predictions": [{"run": p.run, "rank": i + 1 if args.rank else None,
                                           "observed_steps": p.observed_steps, **p.prediction.to_dict()}
                                          for i, p in enumerate(preds)]}))
        return 0
    from t2ibench.stats import CURVE_FORMS as forms

    print(f"{args.metric} predicted at step {at} ({forms[form].description}; 95% predictive intervals)")
    for i, p in enumerate(preds):
        pr = p.prediction
        head = f"{i + 1}. " if args.rank else "  "
        seen = f"from steps {p.observed_steps}" if p.observed_steps else "no evaluations"
        if pr.estimate is None:
            print(f"{head}{p.run}: no prediction: {pr.reason}")
        elif pr.lo is None:
            print(f"{head}{p.run}: {pr.estimate:.4f} (no interval: {pr.reason}), {seen}")
        else:
            print(f"{head}{p.run}: {pr.estimate:.4f} [{pr.lo:.4f}, {pr.hi:.4f}], {seen}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from t2ibench.cli_args import writable_file

    store = _store(args)
    writable_file(args.file, "export file")
    n = store.export(args.file, args.file_format)
    print(f"exported {n} result(s) to {args.file}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from t2ibench.cli_args import writable_file

    store = _store(args, reading=False)  # import may create the store
    if store.path is not None:
        writable_file(store.path, "--db")
    report = store.import_file(args.file, args.file_format)
    print(f"imported {args.file} into {store}: {report.summary()}")
    _print_conflicts(report.conflicts)
    return 1 if report.conflicts else 0


def _print_conflicts(conflicts: list) -> None:  # list[Conflict]
    for c in conflicts:
        print(f"conflict: {c.describe()}", file=sys.stderr)


def _merge(args: argparse.Namespace) -> int:
    from t2ibench.store import ResultsStore

    into = ResultsStore(args.into)
    sources = [ResultsStore(s) for s in args.sources]
    for src in sources:
        if not src.exists():
            raise UserError(f"results merge: no results store at {src}")
        if src.is_same_store(into):
            raise UserError(f"results merge: {src} is the destination itself")
    read = [(src, src.query()) for src in sources]  # every source read before anything is written
    reports = []
    for src, rows in read:
        report = into.insert(rows)
        reports.append((src, report))
        if args.format == "text":
            print(f"{src}: {report.summary()}")
        _print_conflicts(report.conflicts)
    n_conflicts = sum(len(r.conflicts) for _, r in reports)
    if args.format == "json":
        print(json.dumps({"into": str(into), "sources": [
            {"source": str(s), "added": r.added, "duplicates": r.duplicates,
             "conflicts": [c.describe() for c in r.conflicts]} for s, r in reports]}))
    else:
        print(f"{into} now holds {len(into)} result(s)" +
              (f"; {n_conflicts} conflicting result(s) were not written (listed above)" if n_conflicts else ""))
    return 1 if n_conflicts else 0
