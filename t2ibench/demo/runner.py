"""`t2ibench demo`: the offline study, end to end, through the suite's real code paths.

1. data: a shapes-world training folder (`<stem>.png` + `<stem>.txt`) and a held-out evaluation set
   (TIFA-format questions), see `t2ibench.demo.shapes`;
2. train: micro variants (registered topologies at a reduced width/depth, pixel space, a tiny frozen
   text encoder) with the reference trainer, `t2ibench.train.loop.train` -- the code behind `t2ibench train`;
   its in-training evaluation scores each checkpoint with TIFA through `t2ibench.evaluate.evaluate`
   (the code behind `t2ibench eval`), answered by the measuring VQA backend `shapes-measure`;
3. step 0: the same pipeline on the untrained weights (the baseline), through the same `evaluate`;
4. store + leaderboard: every score is a row in the demo's own results store; the site is built from it.

Resumable: the data is kept when it exists, each run continues from its newest checkpoint, and a step
whose `results.json` exists is not evaluated again; a checkpoint left without its evaluation (an
interruption mid-evaluation) is evaluated from disk. The settings that define the study are recorded
in `<out>/demo.json`; a rerun with other settings stops with a one-line error (use --fresh or another
--out), except `--steps`, which may grow: training then continues where it stopped.

The demo's departures from the paper's recipe (a micro model trained for minutes) are all explicit
fields of a typed run config (`Demo.run_config`), recorded in every checkpoint and listed in demo.json.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.atomic import write_json_atomic
from t2ibench.errors import UserError
from t2ibench.train.in_training_eval import eval_out_dir

STATE_FILE = "demo.json"
DB_FILE = "results.sqlite"
METRIC = "tifa"
VQA_BACKEND = "shapes-measure"


@dataclass(frozen=True)
class MicroVariant:
    """A registered topology at a micro size: `model.*` run-config fields of `base`."""

    name: str  # run name in the store and on the leaderboard
    base: str  # registered variant (see `t2ibench variants`)
    sizes: dict[str, Any]  # ModelConfig field -> typed value (e.g. transformer_depth=(0, 1, 1))
    description: str = ""


def _sdxl_micro(channels: int, depth: int) -> MicroVariant:
    # SDXL's topology (no attention at the first level, `depth` transformer blocks at the x2 and x4
    # levels) at widths channels x (1, 2, 4); GroupNorm groups scaled down with the width.
    widths = "/".join(str(channels * m) for m in (1, 2, 4))
    blocks = f"{depth} transformer block{'s' if depth > 1 else ''} per attention level"
    return MicroVariant(f"sdxl-c{channels}-td{depth}", "sdxl",
                        {"channels": channels, "transformer_depth": (0, depth, depth),
                         "norm_groups": min(channels, 16)},
                        f"SDXL topology, widths {widths}, {blocks}")


# name -> micro variant. The default pair differs in width (2x channels: ~3.8x parameters, ~3.4x FLOPs).
MICRO_VARIANTS: dict[str, MicroVariant] = {v.name: v for v in (
    _sdxl_micro(c, d) for c in (8, 16, 32) for d in (1, 2))}
DEFAULT_VARIANTS = ("sdxl-c8-td1", "sdxl-c16-td1")


@dataclass
class DemoSettings:
    """Everything that defines the study (recorded in demo.json) plus how this invocation runs."""

    out: str = "demo"
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    steps: int = 1200  # optimizer steps per variant
    eval_every: int = 300  # in-training TIFA evaluation (and checkpoint) every K steps; step 0 always
    prompts: int = 64  # held-out evaluation prompts
    train_images: int = 4000
    resolution: int = 16  # pixels; the 2x2 grid's objects are 6 px (4x cheaper per sample than 32 px)
    batch: int = 32  # global batch
    lr: float = 2e-3
    # v-prediction on a zero-terminal-SNR schedule (Lin et al., 2024). With the recipe's epsilon target
    # on SD's schedule, pure noise never occurs in training, so a sampler started from it gets the image
    # mean wrong: the black backgrounds came out in random colour casts and TIFA stayed near chance.
    prediction: str = "v_prediction"  # or epsilon (the recipe's; then the schedule stays SD's)
    warmup: int = 50
    sample_steps: int = 20  # DDIM steps (protocol: 50)
    cfg: float = 3.0  # classifier-free guidance (protocol: 7.5)
    seed: int = 0
    max_objects: int = 3
    colors: tuple[str, ...] | None = None  # None: the world's defaults
    ema: bool = False
    # how this invocation runs (not part of the study)
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True

    RUN_ONLY = ("out", "steps", "eval_every", "device", "threads", "progress")

    def study(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k not in self.RUN_ONLY}

    def world(self):
        from t2ibench.demo.shapes import ShapesWorld

        kw: dict[str, Any] = {"resolution": self.resolution, "max_objects": self.max_objects}
        if self.colors:
            kw["colors"] = tuple(self.colors)
        return ShapesWorld(**kw)

    def check(self) -> None:
        unknown = [v for v in self.variants if v not in MICRO_VARIANTS]
        if unknown:
            raise UserError(f"unknown demo variant {unknown[0]!r}; known: {', '.join(MICRO_VARIANTS)}")
        if len(set(self.variants)) != len(self.variants) or not self.variants:
            raise UserError("--variants needs one or more distinct names")
        for name in ("steps", "eval_every", "prompts", "train_images", "batch", "sample_steps"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"demo: {name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.prediction not in ("epsilon", "v_prediction"):
            raise UserError(f"--prediction must be epsilon or v_prediction, got {self.prediction!r}")
        if self.device not in ("cpu", "cuda"):
            raise UserError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise UserError("--device cuda, but torch sees no CUDA device; use --device cpu")
        self.world()  # world knobs are checked by the world itself


@dataclass
class StepScore:
    step: int
    tifa: float
    categories: dict[str, float]
    train_flops: float | None
    seconds: float | None
    ci95: list[float] | None = None  # bootstrap over the held-out prompts (t2ibench.stats)


@dataclass
class VariantReport:
    name: str
    params: int | None
    scores: list[StepScore] = field(default_factory=list)
    train_wall_s: float = 0.0


@dataclass
class DemoReport:
    out: Path
    db: Path
    site: Path
    variants: list[VariantReport]
    wall_s: float
    ground_truth_tifa: float | None = None
    # the last variant minus the first at their last common step: diff, ci95, p_value, n (paired over prompts)
    last_step_difference: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out", "db", "site"):
            d[k] = str(d[k])
        return d


def micro_run_config(s: DemoSettings, variant: MicroVariant, *, data_dir: Path, db: Path, out: Path, run: str,
                     seed: int, alt_text_prob: float | None = None):
    """The typed run config of a micro variant trained on the shapes data in `data_dir`: the recipe's, with the
    demo's departures (each an explicit field; see `Demo.departures`). `alt_text_prob` is the recipe's
    synthetic-caption mixing (None: the recipe's 0.5; it only matters where the data has synthetic captions)."""
    from t2ibench.train.config import CheckpointConfig, DataConfig, EvalConfig, LogConfig, ModelConfig, RunConfig

    recipe = RunConfig(variant=variant.base)
    scorer_options = {METRIC: {"vqa": VQA_BACKEND, "questions": str((data_dir / "eval" / "questions.json").resolve())}}
    data = DataConfig(path=str(data_dir / "train"), num_workers=0)
    if alt_text_prob is not None:
        data = dataclasses.replace(data, alt_text_prob=alt_text_prob)
    return RunConfig(
        variant=variant.base, resolution=s.resolution, seed=seed, run=run, out=str(out),
        # micro model: pixel space, tiny frozen text encoder (open_clip text tower, fixed random weights)
        model=ModelConfig(**variant.sizes, text_encoder="tiny", vae="none", prediction_type=s.prediction,
                          zero_terminal_snr=s.prediction == "v_prediction"),
        data=data,
        # minutes on a CPU instead of 600K steps at batch 2048
        optim=dataclasses.replace(recipe.optim, lr=s.lr, warmup_steps=s.warmup),
        train=dataclasses.replace(recipe.train, global_batch=s.batch, micro_batch=s.batch, steps=s.steps,
                                  ema=s.ema, ema_decay=0.99, mixed_precision="no", cpu=s.device == "cpu"),
        checkpoint=CheckpointConfig(every=s.eval_every, keep=2, embed_frozen=True),
        eval=EvalConfig(every=s.eval_every, metrics=METRIC, limit=s.prompts, db=str(db), steps=s.sample_steps,
                        cfg=s.cfg, seed=0, batch_size=min(64, s.prompts), options=json.dumps(scorer_options)),
        log=LogConfig(tensorboard=False, progress=s.progress, every=10),
    )


def eval_dir(config) -> Path:
    """The folder of `config`'s run that holds one `step-*` folder per evaluation (the trainer's
    in-training evaluation writes to the same place, `eval_out_dir`)."""
    return eval_out_dir(config, 0).parent


def evaluate_run(config, model_or_ckpt, step: int, train_flops: float, device: str) -> dict:
    """Score one state of a run with the study's TIFA, through `t2ibench eval`'s driver, into the store."""
    from t2ibench.evaluate import evaluate

    return evaluate(model_or_ckpt, METRIC, protocol=config.eval.protocol(config.resolution),
                    out_dir=eval_out_dir(config, step), limit=config.eval.limit, db=Path(config.eval.db),
                    run=config.run_name, variant=config.variant, step=step, train_flops=train_flops,
                    scorer_options=config.eval.scorer_options(), device=device, batch_size=config.eval.batch_size,
                    progress=False)


def train_run(config, say) -> float:
    """Train (or continue) one run up to its configured steps; returns its training wall-clock."""
    from t2ibench.train.loop import train
    from t2ibench.train.state import latest_checkpoint, read_state

    latest = latest_checkpoint(Path(config.out))
    if latest is not None and read_state(latest).step >= config.train.steps:
        say(f"  trained already ({read_state(latest).step} steps)")
        return read_state(latest).wall_s
    result = train(config, resume=latest is not None)
    for ev in result.evaluations:
        say(f"  step {ev['step']}: TIFA {ev['scores'].get(METRIC, float('nan')):.3f}")
    return result.wall_s


def fill_missing_evals(config, device: str, say) -> None:
    """Evaluate every kept checkpoint on the evaluation grid that has no results.json (an interruption
    between the checkpoint and the end of its evaluation)."""
    from t2ibench.train.state import checkpoint_root, read_state

    for ckpt in sorted(checkpoint_root(Path(config.out)).glob("step-*")):
        if not (ckpt / "training_state" / "state.json").is_file():
            continue
        state = read_state(ckpt)
        if state.step % config.eval.every or (eval_out_dir(config, state.step) / "results.json").is_file():
            continue
        record = evaluate_run(config, ckpt / "model", state.step, state.train_flops, device)
        say(f"  step {state.step} (from checkpoint): TIFA {record['metrics'][METRIC]['value']:.3f}")


class Demo:
    """One demo directory: its data, runs, store and site (see the module doc for the layout)."""

    def __init__(self, settings: DemoSettings, console=None):
        settings.check()
        self.s = settings
        self.out = Path(settings.out)
        self.console = console
        self.data_dir = self.out / "data"
        self.db = self.out / DB_FILE
        self.site = self.out / "site"

    # -- bookkeeping ---------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def prepare(self, fresh: bool) -> None:
        """--fresh: remove what an earlier demo wrote here; otherwise insist on the same study."""
        state_path = self.out / STATE_FILE
        if fresh and self.out.exists():
            if not state_path.is_file() and any(self.out.iterdir()):
                raise UserError(f"{self.out} is not empty and holds no {STATE_FILE}; --fresh only clears a demo "
                                "directory (choose another --out)")
            for name in ("data", "runs", "site", DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", STATE_FILE):
                path = self.out / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        if state_path.is_file():
            old = json.loads(state_path.read_text()).get("study", {})
            new = self.s.study()
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k != "variants")
            if diff:
                k = diff[0]
                raise UserError(f"{self.out} holds a demo with {k}={old.get(k)!r} (now {new.get(k)!r}); "
                                "rerun with --fresh or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(state_path, {"study": self.s.study(), "overrides": {v: self.departures(MICRO_VARIANTS[v])
                                                                         for v in self.s.variants}})

    # -- 1. data ---------------------------------------------------------------------------------------
    def make_data(self) -> dict[str, Path]:
        from t2ibench.demo.datasets import write_eval_set, write_training_set

        world = self.s.world()
        t0 = time.time()
        write_training_set(self.data_dir / "train", world, n=self.s.train_images, seed=self.s.seed)
        paths = write_eval_set(self.data_dir / "eval", world, n_prompts=self.s.prompts, seed=self.s.seed)
        n_eval = len(json.loads(paths["text_inputs"].read_text()))
        n_questions = len(json.loads(paths["questions"].read_text()))
        if n_eval < self.s.prompts:
            raise UserError(f"the shapes world has only {n_eval} held-out prompts; use --prompts {n_eval} or fewer")
        self.say(f"data: {self.s.train_images} training images, {n_eval} held-out prompts ({n_questions} TIFA "
                 f"questions) in {self.data_dir} [{time.time() - t0:.1f}s]")
        self.questions = paths["questions"]
        return paths

    # -- 2. the run config of a micro variant ---------------------------------------------------------
    def run_dir(self, variant: MicroVariant) -> Path:
        return self.out / "runs" / variant.name

    def run_config(self, variant: MicroVariant):
        """The typed run config of a micro variant: the recipe's, with the demo's departures (see `departures`)."""
        return micro_run_config(self.s, variant, data_dir=self.data_dir, db=self.db, out=self.run_dir(variant),
                                run=variant.name, seed=self.s.seed)

    def departures(self, variant: MicroVariant) -> dict[str, Any]:
        """Every run-config field where the demo's run differs from the recipe (recorded in demo.json)."""
        from t2ibench.train.config import RunConfig

        def flat(d: dict, prefix: str = "") -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in d.items():
                out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
            return out

        ours, recipe = flat(self.run_config(variant).to_dict()), flat(RunConfig(variant=variant.base).to_dict())
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ours.items() if recipe.get(k) != v}

    # -- 3. evaluation outside training: step 0 and checkpoints left without their evaluation ------
    def eval_dir(self, variant: MicroVariant, step: int) -> Path:
        return eval_out_dir(self.run_config(variant), step)

    def evaluate(self, variant: MicroVariant, model_or_ckpt, step: int, train_flops: float) -> dict:
        return evaluate_run(self.run_config(variant), model_or_ckpt, step, train_flops, self._device())

    def baseline(self, variant: MicroVariant) -> None:
        """Step 0: the untrained weights the trainer starts from (same config, same seed)."""
        if (self.eval_dir(variant, 0) / "results.json").is_file():
            return
        from t2ibench.train.components import new_run_model

        model = new_run_model(self.run_config(variant)).to(self._device())
        model.info.tags.update(run=variant.name, variant=variant.base, step=0, train_flops=0.0)
        record = self.evaluate(variant, model, 0, 0.0)
        self.say(f"  step 0 (untrained): TIFA {record['metrics'][METRIC]['value']:.3f}")

    def fill_missing_evals(self, variant: MicroVariant) -> None:
        fill_missing_evals(self.run_config(variant), self._device(), self.say)

    # -- 4. training ---------------------------------------------------------------------------------
    def train(self, variant: MicroVariant) -> float:
        """Train (or continue) one variant up to `steps`; returns its training wall-clock."""
        return train_run(self.run_config(variant), self.say)

    def _device(self) -> str:
        return "cuda" if self.s.device == "cuda" else "cpu"

    # -- 5. results -------------------------------------------------------------------------------------
    def collect(self) -> list[VariantReport]:
        reports = []
        for name in self.s.variants:
            variant = MICRO_VARIANTS[name]
            report = VariantReport(name, None)
            for path in sorted((self.run_dir(variant) / "eval").glob("step-*/results.json")):
                rec = json.loads(path.read_text())
                m = rec["metrics"][METRIC]
                step = int(rec["step"])
                if step > self.s.steps:  # evaluated by an earlier, longer run of this demo
                    continue
                report.params = rec.get("params") or report.params
                report.scores.append(StepScore(step, float(m["value"]), dict(m.get("categories") or {}),
                                               rec.get("train_flops"), rec.get("seconds"), m.get("ci95")))
            report.scores.sort(key=lambda s: s.step)
            from t2ibench.train.state import latest_checkpoint, read_state

            latest = latest_checkpoint(self.run_dir(variant))
            report.train_wall_s = read_state(latest).wall_s if latest else 0.0
            reports.append(report)
        return reports

    def ground_truth(self) -> float | None:
        """TIFA of the held-out set's ground-truth renders: the backend's ceiling on these prompts."""
        from PIL import Image

        from t2ibench.metrics import scorer_class
        from t2ibench.prompts import prompts_from_tifa_questions

        pset = prompts_from_tifa_questions(self.questions)
        scorer = scorer_class(METRIC)(vqa=VQA_BACKEND, questions=str(self.questions))
        images = [Image.open(self.data_dir / "eval" / "reference" / f"{r.id}.png").convert("RGB") for r in pset.records]
        return float(scorer.score(images, pset.records).value)

    def build_site(self) -> Path:
        from t2ibench.leaderboard import build_site
        from t2ibench.store import ResultsStore

        with ResultsStore(self.db) as store:
            report = build_site(store, self.site)
        return report.index


def run_demo(settings: DemoSettings, *, fresh: bool = False, console=None) -> DemoReport:
    """The whole study; returns what `t2ibench demo` prints."""
    import torch

    t0 = time.time()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    demo = Demo(settings, console)
    demo.prepare(fresh)
    demo.make_data()
    for i, name in enumerate(settings.variants, 1):
        variant = MICRO_VARIANTS[name]
        demo.say(f"[bold]variant {i}/{len(settings.variants)}: {name}[/bold] ({variant.description})")
        demo.baseline(variant)
        demo.train(variant)
        demo.fill_missing_evals(variant)
    site = demo.build_site()
    gt = demo.ground_truth()
    report = DemoReport(demo.out, demo.db, site, demo.collect(), time.time() - t0, gt)
    report.last_step_difference = _last_step_difference(demo, report)
    write_json_atomic(demo.out / "summary.json", report.to_dict())
    return report


def _last_step_difference(demo: Demo, report: DemoReport) -> dict[str, Any] | None:
    """Paired comparison (bootstrap interval, sign-flip p) of the last variant against the first at
    the last step both reached, on the same held-out prompts."""
    if len(report.variants) < 2:
        return None
    first, last = report.variants[0], report.variants[-1]
    common = sorted({s.step for s in first.scores} & {s.step for s in last.scores})
    if not common:
        return None
    from t2ibench.leaderboard.compare import compare_sides, load_side

    step = common[-1]
    try:
        a, b = (load_side(str(demo.eval_dir(MICRO_VARIANTS[v.name], step) / "results.json")) for v in (last, first))
        c = compare_sides(a, b, METRIC)[METRIC]
    except UserError as exc:  # a summary line must never cost the study its results
        return {"a": last.name, "b": first.name, "step": step, "diff": None, "reason": str(exc)}
    return {"a": last.name, "b": first.name, "step": step, **c.to_dict()}


def summary_table(report: DemoReport):
    """A rich table: one row per evaluated step, one column per variant, each score with its 95%
    interval; below it, the paired difference of the last and first variants at their last step."""
    from rich.table import Table

    steps = sorted({s.step for v in report.variants for s in v.scores})
    table = Table(title=f"TIFA ({VQA_BACKEND}) on held-out shapes prompts")
    table.add_column("step", justify="right")
    for v in report.variants:
        params = f" ({v.params / 1e6:.2f}M)" if v.params else ""
        table.add_column(f"{v.name}{params}", justify="right")
    for step in steps:
        cells = []
        for v in report.variants:
            hit = [s for s in v.scores if s.step == step]
            ci = hit[0].ci95 if hit else None
            cells.append("-" if not hit else f"{hit[0].tifa:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        table.add_row(str(step), *cells)
    table.add_row("train time", *[f"{v.train_wall_s:.0f}s" for v in report.variants])
    d = report.last_step_difference
    if d and d.get("diff") is not None:
        ci = f" [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d.get("ci95") else ""
        p = f", p = {d['p_value']:.3g}" if d.get("p_value") is not None else ""
        from rich.console import Group
        from rich.text import Text

        return Group(table, Text(f"[brackets]: 95% bootstrap intervals over the {d['n']} held-out prompts. At step "
                                 f"{d['step']}, {d['a']} - {d['b']} = {d['diff']:+.3f}{ci}{p} (paired bootstrap "
                                 "interval, sign-flip permutation p-value)."))
    if d and d.get("reason"):
        from rich.console import Group
        from rich.text import Text

        return Group(table, Text(f"No paired comparison at step {d['step']}: {d['reason']}"))
    return table


__all__ = ["DemoReport", "DemoSettings", "MICRO_VARIANTS", "MicroVariant", "run_demo", "summary_table"]
