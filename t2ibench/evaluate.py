"""The one evaluation driver: checkpoint (or in-memory model) -> images under the protocol -> scores.

Used by `t2ibench eval --ckpt`, by the trainers' in-training evaluation and by the demo; `evaluate_images`
is the same driver for a folder of existing images (`t2ibench eval --images`):

    result = evaluate("runs/a/checkpoint-1000", ["tifa", "clip"], out_dir=Path("out/a-1000"))
    result = evaluate(model, ["tifa"], out_dir=..., run="a", variant="sdxl_td4_8", step=1000, train_flops=3e18,
                      protocol=Protocol(resolution=32), scorer_options={"tifa": {"vqa": "shapes-measure",
                                                                                 "questions": qpath}})

Order of work: every input is checked first (metrics, prompt sets and their checksums, scorer weights,
what `out_dir` already holds); then images are generated into the cache (sharded across processes
under `accelerate launch`, aligned batches so 1 and N processes give identical images); then, on the
main process only, each scorer is built in turn and scores its prompt set; then `out_dir/results.json`
(atomically) and one row per metric in the results store.

Each metric is scored on the paper's prompt set unless `prompts` is given (TIFA and HPSv2 on tifa-v1;
ImageReward, CLIP, FID on coco-10k); a custom TIFA question file (`scorer_options["tifa"]["questions"]`)
brings its own prompts, the captions it asks about.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.atomic import write_json_atomic
from t2ibench.errors import UserError
from t2ibench.generate import as_sampleable, generate, processes
from t2ibench.protocol import GENERATION_BATCH_SIZE, UNCOND_PROMPT, Protocol

RESULTS_FILE = "results.json"
FORMAT = "t2ibench-eval-results"
FORMAT_VERSION = 1
LIBRARIES = ("t2ibench", "torch", "diffusers", "transformers", "accelerate", "open_clip_torch", "torch-fidelity",
             "image-reward", "hpsv2", "sentence-transformers", "safetensors", "prdc", "scipy")

__all__ = ["MetricRequest", "MetricSelection", "Protocol", "RESULTS_FILE", "evaluate", "evaluate_images",
           "library_versions", "manifest_hash"]


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in LIBRARIES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def manifest_hash(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()


# -- inputs ------------------------------------------------------------------------------------------
def parse_assignments(items: Sequence[str], what: str, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """['fid.resize=torch-fidelity'] -> {'fid': {'resize': 'torch-fidelity'}} (`what`: the flag, for messages)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        metric, dot, key = head.rpartition(".")
        if not (sep and dot and metric and key and value):
            raise UserError(f"--{what} {item!r}: expected METRIC.KEY=VALUE")
        if metric not in names:
            raise UserError(f"--{what} {item!r}: {metric} is not among --metrics {','.join(names)}")
        out.setdefault(metric, {})[key] = value
    return out


def _option_value(value: str) -> Any:
    return {"true": True, "false": False}.get(value.lower(), value)


@dataclass
class MetricRequest:
    """One metric of an evaluation: its options and weights. `weights` holds the user's explicit paths
    until `MetricSelection.resolve_weights()`, then the local path of every weight file."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Path] = field(default_factory=dict)

    def build(self, device: str):
        from t2ibench.metrics import scorer_class

        return scorer_class(self.name)(device=device, weights=self.weights, **self.options)


@dataclass
class MetricSelection:
    """The metric list of an evaluation, parsed and checked once (names, options, weights keys) and
    passed on as this object; `resolve_weights()` then finds every weight file, once, before any model."""

    requests: list[MetricRequest]
    weights_resolved: bool = False

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.requests]

    def __getitem__(self, name: str) -> MetricRequest:
        return next(r for r in self.requests if r.name == name)

    @classmethod
    def parse(cls, metrics: "str | Sequence[str] | MetricSelection", *,
              weights: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
              options: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None) -> "MetricSelection":
        """metrics: "clip,fid" or names; weights/options: {metric: {key: value}} or ["metric.key=value", ...]."""
        from t2ibench.metrics import parse_metrics, scorer_class

        if isinstance(metrics, MetricSelection):
            if weights or options:
                raise ValueError("a MetricSelection already carries its weights and options")
            return metrics
        names = parse_metrics(metrics if isinstance(metrics, str) else ",".join(metrics))
        if isinstance(weights, (list, tuple)):
            weights = parse_assignments(weights, "weights", names)
        if isinstance(options, (list, tuple)):  # command-line strings: "true"/"false" are booleans
            options = {m: {k: _option_value(v) for k, v in kv.items()}
                       for m, kv in parse_assignments(options, "option", names).items()}
        weights, options = dict(weights or {}), dict(options or {})
        for what, given in (("scorer options", options), ("weights", weights)):
            stray = sorted(set(given) - set(names))
            if stray:
                raise UserError(f"{what} given for {', '.join(stray)}, which is not among the metrics {','.join(names)}")
        from t2ibench.metrics.option_keys import check_scorer_keys

        check_scorer_keys(names, weights, options)  # a typo would open its own manifest group
        requests = []
        for name in names:
            opts = dict(options.get(name) or {})
            known = {wf.key for wf in scorer_class(name).weight_files(**opts)}
            for key in (weights.get(name) or {}):
                if key not in known:
                    raise UserError(f"--weights {name}.{key}: {name} has no weights {key!r}; "
                                    f"known: {', '.join(sorted(known)) or 'none'}")
            requests.append(MetricRequest(name, opts, {k: Path(v) for k, v in (weights.get(name) or {}).items()}))
        return cls(requests)

    def resolve_weights(self) -> "MetricSelection":
        """Every scorer's weight files, found before any model is built (MissingWeightsError otherwise)."""
        if self.weights_resolved:
            return self
        from t2ibench.metrics import scorer_class
        from t2ibench.prerequisites import MissingInputs
        from t2ibench.weights import resolve

        missing = MissingInputs()  # every missing file in one message, not one per attempt
        resolved = [{wf.key: missing.check(lambda wf=wf, r=r: resolve(wf, r.weights.get(wf.key), metric=r.name))
                     for wf in scorer_class(r.name).weight_files(**r.options)} for r in self.requests]
        missing.raise_if_any()
        for r, paths in zip(self.requests, resolved):
            r.weights = paths
        self.weights_resolved = True
        return self


def _prompt_sets(selection: MetricSelection, prompts, prompts_dir, limit) -> dict[str, Any]:
    """metric -> PromptSet (sets shared between metrics are loaded once)."""
    from t2ibench.metrics import default_prompt_set
    from t2ibench.prompts import load_prompt_set, prompts_from_tifa_questions

    loaded: dict[str, Any] = {}
    out = {}
    for m in selection.names:
        questions = selection[m].options.get("questions") if m == "tifa" else None
        if prompts is not None:
            key = f"set:{prompts}"
            if key not in loaded:
                loaded[key] = load_prompt_set(prompts, prompts_dir, limit)
        elif questions is not None and not isinstance(questions, (list, dict)):
            key = f"questions:{questions}"
            if key not in loaded:
                loaded[key] = prompts_from_tifa_questions(questions, limit)
        else:
            key = f"set:{default_prompt_set(m)}"
            if key not in loaded:
                loaded[key] = load_prompt_set(default_prompt_set(m), prompts_dir, limit)
        out[m] = loaded[key]
    return out


def _check_prompts(metrics: list[str], sets: dict[str, Any], protocol, options: dict[str, dict]) -> None:
    """Each metric's check of its prompts (its questions present, K images per prompt) before any work.
    K is the protocol's `images_per_prompt` when it has one, else 1."""
    from t2ibench.metrics import check_prompts

    k = getattr(protocol, "images_per_prompt", None) or 1
    for m in metrics:
        check_prompts(m, sets[m].records, k, **options.get(m, {}))


def _generation_protocol(protocol: Protocol, ema: bool) -> dict[str, Any]:
    return {**protocol.to_dict(), "ema": ema, "uncond_prompt": UNCOND_PROMPT}


def _check_out_dir(out_dir: Path, gen_protocol: dict, sets: dict[str, Any], ckpt_hash: str | None) -> dict | None:
    """Existing results in `out_dir` must be of the same protocol (and checkpoint); returns them."""
    path = out_dir / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
        old_protocol = old["manifest"]["protocol"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a t2ibench eval results file; use another --out") from None
    old_protocol = {"images_per_prompt": 1, **old_protocol}  # results from before K was recorded
    if "sampling" not in gen_protocol:  # checked before the model is loaded: what is known so far
        old_protocol = {k: v for k, v in old_protocol.items() if k != "sampling"}
    if old_protocol != gen_protocol:
        diff = sorted(k for k in set(old_protocol) | set(gen_protocol) if old_protocol.get(k) != gen_protocol.get(k))
        detail = ", ".join(f"{k} {old_protocol.get(k)!r} vs {gen_protocol.get(k)!r}" for k in diff[:3])
        raise UserError(f"{out_dir} holds results of a different protocol ({detail}); use another --out")
    for m, pset in sets.items():
        prev = old.get("metrics", {}).get(m, {}).get("manifest", {}).get("prompt_set")
        if prev and (prev["sha256"] != pset.sha256 or prev["n_used"] != len(pset)):
            raise UserError(f"{out_dir} holds {m} results on other prompts ({prev['name']}, {prev['n_used']} prompts "
                            f"vs {pset.name}, {len(pset)}); use another --out")
    if ckpt_hash is not None and old.get("checkpoint", {}).get("hash") not in (None, ckpt_hash):
        raise UserError(f"{out_dir} holds results of another checkpoint ({old['checkpoint'].get('source')}); "
                        "use another --out")
    return old


# -- scoring -------------------------------------------------------------------------------------------
def _weights_digest(paths: dict[str, Path]) -> dict[str, str]:
    from t2ibench.checkpoints import file_sha256, tree_sha256

    out = {}
    for key, p in paths.items():
        p = Path(p)
        out[key] = file_sha256(p) if p.is_file() else tree_sha256(p) if p.is_dir() else f"missing:{p}"
    return out


def _score(name: str, scorer, image_paths: list[Path], records, batch_size, progress: bool,
           unreadable: set[str] | None = None):
    from t2ibench.generate import _progress
    from t2ibench.images import load_image

    def images():  # decoded per metric, so memory stays one batch deep; None (unreadable) is skipped and counted
        for p in image_paths:
            image = load_image(p)
            if image is None and unreadable is not None:
                unreadable.add(p.name)
            yield image

    with _progress(progress, f"scoring {name}", len(records)) as bar:
        return scorer.score(images(), list(records), batch_size=batch_size, progress=bar.advance)


def _variant_stats(variant_spec: dict | None) -> tuple[str | None, str | None, int | None, float | None]:
    """(name, family, params, gmacs) of the checkpoint's variant spec, where t2ibench.variants can say."""
    if not variant_spec:
        return None, None, None, None
    name, family = variant_spec.get("name"), variant_spec.get("family")
    try:
        from t2ibench.variants import VariantSpec, compute_stats

        stats = compute_stats(VariantSpec.from_dict(variant_spec))
        return name, family, int(stats.params), float(stats.gmacs)
    except Exception:  # stats are a convenience for the leaderboard, never a reason to lose a result
        return name, family, None, None


def evaluate(model_or_ckpt, metrics: str | Sequence[str] | MetricSelection, *, prompts: str | None = None,
             prompts_dir=None, protocol: Protocol | None = None, out_dir: Path, limit: int | None = None, db: Path | str | None = None, run: str | None = None,
             variant: str | None = None, step: int | None = None, train_flops: float | None = None,
             scorer_options: dict[str, dict] | None = None, device: str = "cpu", batch_size: int | None = None,
             accelerator=None, progress: bool = True, ema: bool = False,
             weights: dict[str, dict[str, str]] | None = None, image_dir: Path | None = None,
             score_batch_size: int | None = None, store: bool = True, offload: str | None = None) -> dict:
    """Generate (what is missing) and score; returns the results dict written to out_dir/results.json.

    metrics: "tifa,clip", names, or a parsed `MetricSelection` (which carries its weights and options;
    then `weights`/`scorer_options` stay None). batch_size: images per generation batch (default 8);
    score_batch_size: per scorer call (default: each scorer's own). image_dir: image cache root (default
    out_dir/images). db: results store path (default t2ibench.store.default_db_path()); store=False writes
    no row. offload: CPU offload of a diffusers pipeline ("model" or "sequential"; changes no numbers, so
    not in the manifest).
    """
    t_start = time.time()
    protocol = protocol or Protocol()
    from t2ibench.prerequisites import MissingInputs

    selection = MetricSelection.parse(metrics, weights=weights, options=scorer_options)
    names = selection.names
    out_dir = Path(out_dir)
    if isinstance(model_or_ckpt, (str, os.PathLike)):
        from t2ibench.generate import check_checkpoint

        check_checkpoint(model_or_ckpt, ema)  # a path that is no checkpoint: say so before anything else
    missing = MissingInputs()  # prompt sets and weights: everything missing in one message
    sets = missing.check(lambda: _prompt_sets(selection, prompts, prompts_dir, limit))
    missing.check(selection.resolve_weights)
    missing.raise_if_any()
    _check_prompts(names, sets, protocol, {m: selection[m].options for m in names})
    gen_protocol = _generation_protocol(protocol, ema)
    _check_out_dir(out_dir, gen_protocol, sets, None)  # before loading anything
    _check_writable(out_dir, image_dir, db if store else False)

    dist, device = processes(accelerator, device)
    model = as_sampleable(model_or_ckpt, ema=ema, device=device, dtype=protocol.dtype, offload=offload)
    # what the model samples with (scheduler, guidance, ...) joins the protocol: other samplers, other manifests
    gen_protocol["sampling"] = model.sampling(protocol)
    previous = _check_out_dir(out_dir, gen_protocol, sets, model.ckpt_hash)

    # -- generation (every process, its own aligned batches) ------------------------------------------
    cache_root = Path(image_dir) if image_dir else out_dir / "images"
    t_gen = time.time()
    image_paths: dict[str, list[Path]] = {}
    distinct = {id(s): s for s in sets.values()}
    restore_training = _eval_mode(model)
    try:
        for pset in distinct.values():
            image_paths[pset.name] = generate(model, pset, protocol, cache_root,
                                              batch_size=batch_size or GENERATION_BATCH_SIZE, rank=dist.rank,
                                              world=dist.world, progress=progress and dist.rank == 0)
    finally:
        restore_training()
    gen_seconds = time.time() - t_gen
    dist.barrier()
    if dist.rank != 0:
        dist.barrier()  # wait for the main process's scores, then return the same results
        return json.loads((out_dir / RESULTS_FILE).read_text())

    # -- scoring (main process) ------------------------------------------------------------------------
    checkpoint = {**model.describe(), "tags": model.tags}
    variant_spec = model.variant
    if isinstance(model_or_ckpt, (str, os.PathLike)):
        del model  # free the generator's memory before the scorers load (a passed-in model is the caller's)
    libs = library_versions()
    results = dict(previous["metrics"]) if previous else {}
    per_item = dict(previous.get("per_item", {})) if previous else {}
    for m in names:
        pset = sets[m]
        paths = image_paths[pset.name]
        t0 = time.time()
        scorer = selection[m].build(device)
        k = int(protocol.images_per_prompt)
        records = [r for r in pset.records for _ in range(k)]  # generate() orders images prompt by prompt
        result = _score(m, scorer, paths, records, score_batch_size, progress)
        manifest = {
            "protocol": gen_protocol,
            "prompt_set": pset.describe(),
            "seeds": _seed_rule(protocol, len(pset)),
            "scorer": {"name": m, "version": result.version, "weights": _weights_digest(scorer.paths),
                       "options": _canonical_options(selection[m].options)},
            "libraries": libs,
        }
        entry = result.to_dict(per_item=False)
        entry.update(uncertainty(result))
        if getattr(scorer, "last_features", None) is not None:  # distribution metric: keep its features
            entry["features_file"] = _save_features(out_dir, m, scorer)
        entry.update(manifest=manifest, manifest_hash=manifest_hash(manifest), seconds=round(time.time() - t0, 3))
        results[m] = entry
        where: dict[str, list[str]] = {}
        for r, p in zip(records, paths):
            where.setdefault(r.id, []).append(str(p.relative_to(cache_root)) if p.is_relative_to(cache_root) else str(p))
        per_item[m] = [{"id": it.id, "value": it.value, "details": it.details,
                        "image": (where.get(it.id) or [None])[0] if k == 1 else where.get(it.id)}
                       for it in result.per_item]
        del scorer

    tags = checkpoint.get("tags") or {}
    source = checkpoint["source"]
    run_name = run or tags.get("run") or (Path(source).name if source != "<in memory>" else "unnamed")
    v_name, family, params, gmacs = _variant_stats(variant_spec)
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "run": run_name, "variant": variant or tags.get("variant") or v_name, "family": family,
        "step": step if step is not None else tags.get("step"),
        "train_flops": train_flops if train_flops is not None else tags.get("train_flops"),
        "params": params, "gmacs": gmacs,
        "checkpoint": checkpoint,
        "manifest": {"protocol": gen_protocol, "prompt_sets": {s.name: s.describe() for s in distinct.values()},
                     "scorers": {m: results[m]["manifest"]["scorer"] for m in results}, "libraries": libs},
        "metrics": results,
        "per_item": per_item,
        "generation": {"device": device, "batch_size": batch_size or GENERATION_BATCH_SIZE, "processes": dist.world,
                       "image_dir": str(cache_root), "seconds": round(gen_seconds, 3)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - t_start, 3),
    }
    record["manifest_hash"] = manifest_hash(record["manifest"])
    write_json_atomic(out_dir / RESULTS_FILE, record)
    if store:
        _store_rows(record, names, db)
    dist.barrier()
    return record


def _check_writable(out_dir: Path, image_dir, db) -> None:
    """Results, image cache and store can be written: checked before generation, not after scoring."""
    from t2ibench.cli_args import writable_dir, writable_file

    writable_dir(out_dir, "output directory")
    if image_dir:
        writable_dir(image_dir, "image cache")
    if db is not False:
        from t2ibench.store import ResultsStore

        results = ResultsStore(db)
        if results.path is not None:
            writable_file(results.path, "results store")
        results.check_writable()  # an unreachable server or a newer store: say so before generating


def _save_features(out_dir: Path, metric: str, scorer) -> str:
    """The generated images' features and the real statistics, for permutation tests between results."""
    import numpy as np

    from t2ibench.atomic import atomic_open

    name = f"{metric}-features.npz"
    mu, sigma = scorer.last_real
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / name, "wb") as fh:
        np.savez(fh, features=np.asarray(scorer.last_features, dtype=np.float32), mu_real=mu, sigma_real=sigma)
    return name


def _seed_rule(protocol: Protocol, n_prompts: int) -> dict[str, Any]:
    k = int(protocol.images_per_prompt)
    if k == 1:
        return {"first": protocol.base_seed, "last": protocol.base_seed + n_prompts - 1, "rule": "base_seed + index"}
    from t2ibench.generate import SEED_STRIDE, image_seed

    return {"first": protocol.base_seed, "last": image_seed(protocol.base_seed, n_prompts - 1, k - 1),
            "rule": f"base_seed + index + {SEED_STRIDE} * image", "images_per_prompt": k}


def prompt_means(per_item) -> dict[str, float]:
    """Item scores averaged per prompt id (K images per prompt give one value per prompt)."""
    sums: dict[str, list[float]] = {}
    for it in per_item:
        v = it.value if hasattr(it, "value") else it.get("value")
        key = it.id if hasattr(it, "id") else it.get("id")
        if v is not None and math.isfinite(v):
            acc = sums.setdefault(key, [0.0, 0])
            acc[0] += v
            acc[1] += 1
    return {k: s / c for k, (s, c) in sums.items()}


def uncertainty(result) -> dict[str, Any]:
    """The 95% interval of a MetricResult's aggregate (and of its categories), seeded and recorded:
    per-image metrics by a bootstrap over prompts (per-prompt means first), distribution metrics as
    their scorer computed it over the generated images' features (result.extra["interval"])."""
    from t2ibench import stats

    if "interval" in result.extra:  # distribution scorer (FID): bootstrap over its features
        return {"ci95": result.extra["interval"].get("ci95"), "interval": result.extra["interval"]}
    means = prompt_means(result.per_item)
    iv = stats.bootstrap_mean(list(means.values()))
    out: dict[str, Any] = {"ci95": iv.ci, "interval": iv.to_dict()}
    if len(means) != sum(1 for it in result.per_item if it.value is not None):  # K > 1: mean of prompt means
        out["value"] = iv.estimate
    by_type: dict[str, dict[str, list[float]]] = {}
    for it in result.per_item:  # TIFA: per-type accuracy, pooled over the questions of the resampled prompts
        for q in (it.details or {}).get("questions") or []:
            cell = by_type.setdefault(q["element_type"], {}).setdefault(it.id, [0.0, 0.0])
            cell[0] += q["score"]
            cell[1] += 1
    if by_type and result.categories:
        ids = list(dict.fromkeys(it.id for it in result.per_item))
        cats = {}
        for t, cells in by_type.items():
            num = [cells.get(i, (0.0, 0.0))[0] for i in ids]
            den = [cells.get(i, (0.0, 0.0))[1] for i in ids]
            civ = stats.bootstrap_ratio(num, den)
            cats[t] = civ.ci if civ.ok else None
        out["categories_ci95"] = cats
    return out


def evaluate_images(images_dir: Path | str, metrics: str | Sequence[str] | MetricSelection, *,
                    prompts: str | None = None, out_dir: Path, limit: int | None = None, device: str = "cpu",
                    score_batch_size: int | None = None, progress: bool = True,
                    weights: dict[str, dict[str, str]] | None = None,
                    scorer_options: dict[str, dict] | None = None, images_per_prompt: int | None = None) -> dict:
    """Score the images of a folder (named by prompt id or index, see t2ibench/images.py) against
    `prompts` (a set name or prompt file; a TIFA question file in scorer_options["tifa"]["questions"]
    brings its own); writes and returns out_dir/results.json. Checked before any model is loaded:
    metrics, prompts, the image/prompt match, every weight file (everything missing in one message),
    each metric's check of its prompts (K = images_per_prompt images per prompt, else 1), --out writable."""
    from t2ibench.cli_args import writable_dir
    from t2ibench.images import load_prompts, match_images
    from t2ibench.metrics import check_prompts
    from t2ibench.prerequisites import MissingInputs

    selection = MetricSelection.parse(metrics, weights=weights, options=scorer_options)
    questions = selection["tifa"].options.get("questions") if "tifa" in selection.names else None
    if not prompts and not (questions is not None and not isinstance(questions, (list, dict))):
        raise UserError("--images needs --prompts FILE_OR_NAME (the prompts the images were generated from)")
    missing = MissingInputs()  # the prompts, the image match and every scorer's weights, reported together
    if prompts:
        pset = missing.check(lambda: load_prompts(prompts, limit=limit))
    else:  # a TIFA question file brings its own prompts
        from t2ibench.prompts import prompts_from_tifa_questions

        pset = missing.check(lambda: prompts_from_tifa_questions(questions, limit=limit))
    match = missing.check(lambda: match_images(images_dir, list(pset))) if pset is not None else None
    missing.check(selection.resolve_weights)  # stop before any model is loaded
    missing.raise_if_any()
    for m in selection.names:  # the metric's questions present, K images per prompt
        check_prompts(m, match.prompts, images_per_prompt, **selection[m].options)
    out_dir = writable_dir(out_dir, "--out")

    results: dict[str, Any] = {}
    unreadable: set[str] = set()
    for m in selection.names:
        t0 = time.time()
        scorer = selection[m].build(device)
        result = _score(m, scorer, match.paths, match.prompts, score_batch_size, progress, unreadable)
        entry = result.to_dict()
        entry.update(uncertainty(result))  # ci95, how it was made, categories' intervals
        entry["weights"] = {k: {"path": str(p), "bytes": p.stat().st_size if p.is_file() else None}
                            for k, p in scorer.paths.items()}
        entry["seconds"] = round(time.time() - t0, 3)
        results[m] = entry
        del scorer
    record = {
        "source": {"images": str(Path(images_dir).resolve()), "prompts": prompts, "matched_by": match.by},
        "prompt_set": pset.describe() if hasattr(pset, "describe") else None,
        "n_prompts": len(pset), "n_images": len(match.paths), "prompts_without_image": match.prompts_without_image,
        "n_skipped": len(unreadable), "skipped_images": sorted(unreadable),
        "metrics": results,
        "manifest": {"device": device, "batch_size": score_batch_size, "packages": library_versions(),
                     "scorers": {m: r["version"] for m, r in results.items()},
                     "options": {r.name: r.options for r in selection.requests if r.options}},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(Path(out_dir) / RESULTS_FILE, record)
    return record


def _canonical_options(options: dict[str, Any]) -> dict[str, str]:
    """Options as the manifest records them: a file by its sha256, not its path (same file, same manifest)."""
    from t2ibench.checkpoints import file_sha256

    out = {}
    for k, v in sorted(options.items()):
        if isinstance(v, (str, os.PathLike)) and Path(v).is_file():
            out[k] = f"file-sha256:{file_sha256(Path(v))}"
        elif isinstance(v, (list, dict)):
            out[k] = "sha256:" + hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()
        else:
            out[k] = str(v)
    return out


def _eval_mode(model):
    """Put the backbone in eval mode for sampling; returns how to restore the caller's mode."""
    net = getattr(model, "backbone", None) or getattr(getattr(model, "pipe", None), "unet", None)
    if net is None or not net.training:
        return lambda: None
    net.eval()
    return lambda: net.train()


def _row_interval(entry: dict) -> dict:
    """What the store keeps of a result's uncertainty: the interval, how it was made, categories'."""
    out = dict(entry.get("interval") or {})
    if entry.get("categories_ci95"):
        out["categories_ci95"] = entry["categories_ci95"]
    return out


def _store_rows(record: dict, names: list[str], db) -> None:
    from t2ibench.store import ResultRow, ResultsStore

    rows = []
    for m in names:
        r = record["metrics"][m]
        rows.append(ResultRow(run=record["run"], metric=m, version=r["version"], value=float(r["value"]),
                              n_items=int(r["n_items"]), variant=record["variant"], family=record["family"],
                              step=record["step"], train_flops=record["train_flops"], params=record["params"],
                              gmacs=record["gmacs"], categories=r.get("categories") or {},
                              ckpt_hash=record["checkpoint"]["hash"], manifest_hash=r["manifest_hash"],
                              manifest=r["manifest"], interval=_row_interval(r),
                              item_values=prompt_means(record["per_item"].get(m, []))))
    report = ResultsStore(db).insert(rows)  # a rerun of the same evaluation adds no duplicate
    for conflict in report.conflicts:
        print(f"results store: {conflict.describe()}", file=sys.stderr)
