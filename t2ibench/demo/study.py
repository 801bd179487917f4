"""`t2ibench study`: the paper's scaling claims, re-tested on micro variants of the shapes world.

A preset is a grid of *arms* (a micro variant plus a caption mix), each trained with several seeds by
the reference trainer (`t2ibench.train.loop.train`) and scored by `t2ibench eval`'s TIFA path at 25%,
50%, 75% and 100% of training, into one results store. `t2ibench.demo.claims` then tests each claim
with `t2ibench.stats` and `report` writes the Markdown report and the leaderboard site's study page.

Layout of `<out>/`: `study.json` (the settings that define the study), `data/` (one training set with
alt-texts and synthetic captions, one held-out evaluation set), `runs/<arm>/seed-<s>/` (checkpoints and
evaluations), `results.sqlite`, `claims.json`, `report.md`, `site/` (leaderboard + `study.html`),
`timing.json` (wall-clock; kept out of the report so that a resumed study gives the identical report).

Resumable like the demo: data is kept, every run continues from its newest checkpoint, an evaluated
step is never evaluated again. `--seeds` may grow between invocations; other settings may not.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from t2ibench.atomic import write_json_atomic
from t2ibench.demo.runner import (
    METRIC,
    MICRO_VARIANTS,
    DemoSettings,
    eval_dir,
    fill_missing_evals,
    micro_run_config,
    train_run,
)
from t2ibench.errors import UserError

STATE_FILE = "study.json"
DB_FILE = "results.sqlite"
EVALS_PER_RUN = 4  # at 25%, 50%, 75% and 100% of training: C1 uses 50%, C6 uses 25%


@dataclass(frozen=True)
class Arm:
    """One trained configuration: a micro variant and the probability of training on the alt-text
    (the trainer's synthetic-caption mixing, `data.alt_text_prob`; 0.5 is the recipe's)."""

    name: str
    variant: str  # a key of t2ibench.demo.runner.MICRO_VARIANTS
    alt_text_prob: float
    description: str


# The grid every preset trains. "base", "deeper" and "wider" carry the scaling claims (C1-C6);
# "base" is also the caption mix of C7, against "alt-only" and "synthetic-only".
ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("base", "sdxl-c8-td1", 0.5, "SDXL topology, widths 8/16/32, 1 transformer block; 50% alt-text"),
    Arm("deeper", "sdxl-c8-td2", 0.5, "base with 2 transformer blocks per attention level"),
    Arm("wider", "sdxl-c16-td1", 0.5, "base at twice the width (16/32/64)"),
    Arm("alt-only", "sdxl-c8-td1", 1.0, "base trained on alt-texts only (they name one object group)"),
    Arm("synthetic-only", "sdxl-c8-td1", 0.0, "base trained on synthetic captions only (whole scene)"),
)}


@dataclass(frozen=True)
class StudyPreset:
    name: str
    steps: int  # optimizer steps per run; a multiple of EVALS_PER_RUN
    prompts: int  # held-out evaluation prompts, shared by every run and seed
    train_images: int
    seeds: int  # default number of training seeds per arm
    description: str


PRESETS: dict[str, StudyPreset] = {p.name: p for p in (
    StudyPreset("default", 1000, 64, 4000, 2, "5 arms x 2 seeds x 1000 steps, 64 prompts: about 30 min on 2 CPU cores"),
    StudyPreset("quick", 40, 12, 200, 2, "5 arms x 2 seeds x 40 steps, 12 prompts: the machinery in about 3 min"),
)}


@dataclass
class StudySettings:
    preset: str = "default"
    seeds: int | None = None  # None: the preset's
    out: str = "study"
    device: str = "cpu"
    jobs: int = 1  # runs trained at once, each in its own process with one torch thread
    progress: bool = True

    @property
    def spec(self) -> StudyPreset:
        return PRESETS[self.preset]

    @property
    def n_seeds(self) -> int:
        return self.seeds if self.seeds is not None else self.spec.seeds

    def check(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"unknown study preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.n_seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {self.n_seeds}")
        if self.jobs < 1:
            raise UserError(f"--jobs must be >= 1, got {self.jobs}")
        self.demo_settings().check()

    def demo_settings(self) -> DemoSettings:
        """The micro-training settings shared by every run: the demo's, at the preset's size."""
        p = self.spec
        return DemoSettings(out=self.out, variants=tuple(dict.fromkeys(a.variant for a in ARMS.values())),
                            steps=p.steps, eval_every=p.steps // EVALS_PER_RUN, prompts=p.prompts,
                            train_images=p.train_images, device=self.device, threads=1, progress=self.progress)

    def study(self) -> dict[str, Any]:
        """What defines the study (recorded in study.json; a rerun must agree, seeds may grow)."""
        d = self.demo_settings()
        preset = {k: v for k, v in asdict(self.spec).items() if k != "description"}
        arms = [{k: v for k, v in asdict(a).items() if k != "description"} for a in ARMS.values()]
        return {"preset": preset, "arms": arms,
                "training": d.study(), "steps": d.steps, "eval_every": d.eval_every, "data_seed": d.seed}


@dataclass
class StudyReport:
    out: Path
    claims: list[dict[str, Any]]
    settings: dict[str, Any]
    seeds: list[int]
    wall_s: float
    markdown: Path
    page: Path
    site: Path

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out", "markdown", "page", "site"):
            d[k] = str(d[k])
        return d


class Study:
    def __init__(self, settings: StudySettings, console=None):
        settings.check()
        self.s = settings
        self.out = Path(settings.out)
        self.console = console
        self.data_dir = self.out / "data"
        self.db = self.out / DB_FILE
        self.site = self.out / "site"
        self.micro = settings.demo_settings()

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def prepare(self, fresh: bool) -> None:
        state = self.out / STATE_FILE
        if fresh and self.out.exists():
            if not state.is_file() and any(self.out.iterdir()):
                raise UserError(f"{self.out} is not empty and holds no {STATE_FILE}; --fresh only clears a study "
                                "directory (choose another --out)")
            shutil.rmtree(self.out)
        if state.is_file():
            old = json.loads(state.read_text())
            if old.get("study") != json.loads(json.dumps(self.s.study())):
                raise UserError(f"{self.out} holds a study with other settings (preset "
                                f"{old.get('study', {}).get('preset', {}).get('name')!r}); rerun with --fresh or "
                                "choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(state, {"study": self.s.study()})

    def make_data(self) -> None:
        from t2ibench.demo.datasets import write_eval_set, write_training_set

        world = self.micro.world()
        t0 = time.time()
        write_training_set(self.data_dir / "train", world, n=self.micro.train_images, seed=self.micro.seed,
                           captions="alt+synthetic")
        paths = write_eval_set(self.data_dir / "eval", world, n_prompts=self.micro.prompts, seed=self.micro.seed,
                               reference_images=False)
        n_eval = len(json.loads(paths["text_inputs"].read_text()))
        if n_eval < self.micro.prompts:
            raise UserError(f"the shapes world has only {n_eval} held-out prompts; the preset needs {self.micro.prompts}")
        self.say(f"data: {self.micro.train_images} training images (alt-text + 5 synthetic captions each), "
                 f"{n_eval} held-out prompts [{time.time() - t0:.1f}s]")

    def run_config(self, arm: Arm, seed: int):
        return micro_run_config(self.micro, MICRO_VARIANTS[arm.variant], data_dir=self.data_dir, db=self.db,
                                out=self.out / "runs" / arm.name / f"seed-{seed}", run=f"{arm.name}-s{seed}",
                                seed=seed, alt_text_prob=arm.alt_text_prob)

    def runs(self) -> list[tuple[int, Arm]]:
        """Every (seed, arm), seeds outermost: a study cut short has whole seeds."""
        return [(seed, arm) for seed in range(self.s.n_seeds) for arm in ARMS.values()]

    def run_all(self, stdout_to_stderr: bool = False) -> dict[str, float]:
        """Train and evaluate every run, `jobs` at a time; returns each run's training wall-clock."""
        tasks = [(asdict(self.s), arm.name, seed, stdout_to_stderr) for seed, arm in self.runs()]
        if self.s.jobs == 1:
            return dict(_train_and_evaluate((*t[:3], False)) for t in tasks)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.say(f"training {len(tasks)} runs, {self.s.jobs} at a time (one torch thread each)")
        with ProcessPoolExecutor(self.s.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            return dict(pool.map(_train_and_evaluate, tasks))

    def scores(self):
        """Per-prompt TIFA of every (seed, arm, evaluated step), read back from the runs' results.json."""
        from t2ibench.demo.claims import ScoreGrid

        steps = [self.micro.eval_every * k for k in range(1, EVALS_PER_RUN + 1)]
        return ScoreGrid.from_results(
            {arm.name: [eval_dir(self.run_config(arm, seed)) for seed in range(self.s.n_seeds)] for arm in ARMS.values()},
            steps, METRIC)

    def build_site(self) -> Path:
        from t2ibench.leaderboard import build_site
        from t2ibench.store import ResultsStore

        with ResultsStore(self.db) as store:
            report = build_site(store, self.site, pages=(("study.html", "study report"),))
        return report.index


def _train_and_evaluate(task: tuple[dict[str, Any], str, int, bool]) -> tuple[str, float]:
    """One run, trained to the preset's steps and evaluated at every grid step; in a worker process or not.

    Every run uses one torch thread whatever --jobs is, so the scores do not depend on --jobs (CPU sums
    depend on the thread count). A lock on the run directory keeps a leftover worker of a killed study
    and a rerun from training the same run at once (the kernel drops the lock when its holder dies)."""
    import fcntl
    import sys

    import torch

    settings, arm_name, seed, stdout_to_stderr = task
    if stdout_to_stderr:  # a worker process: `--format json` keeps stdout for the JSON
        sys.stdout = sys.stderr
    torch.set_num_threads(1)
    study = Study(StudySettings(**settings))
    arm = ARMS[arm_name]
    config = study.run_config(arm, seed)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    with open(Path(config.out) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        def say(text: str) -> None:
            print(f"[{config.run_name}] {text.strip()}", flush=True)

        say(f"{arm.variant}, alt-text {arm.alt_text_prob:.0%}, seed {seed}")
        wall = train_run(config, say)
        fill_missing_evals(config, "cuda" if study.s.device == "cuda" else "cpu", say)
    return config.run_name, wall


def run_study(settings: StudySettings, *, fresh: bool = False, console=None,
              stdout_to_stderr: bool = False) -> StudyReport:
    """The whole study: data, runs, claims, report. Returns what `t2ibench study` prints."""
    from t2ibench.demo import claims as claims_mod
    from t2ibench.leaderboard.study_page import write_study_report

    t0 = time.time()
    study = Study(settings, console)
    study.prepare(fresh)
    study.make_data()
    walls = study.run_all(stdout_to_stderr)
    grid = study.scores()
    claims = claims_mod.evaluate_claims(grid, grid.params)
    study.build_site()
    record = {"settings": settings.study(), "description": settings.spec.description,
              "arms": [asdict(a) for a in ARMS.values()], "seeds": list(range(settings.n_seeds)),
              "claims": [c.to_dict() for c in claims], "scores": grid.summary()}
    write_json_atomic(study.out / "claims.json", record)
    markdown, page = write_study_report(record, study.out / "report.md", study.site)
    wall = time.time() - t0
    write_json_atomic(study.out / "timing.json", {"wall_s": wall, "train_wall_s": walls})
    return StudyReport(study.out, record["claims"], record["settings"], record["seeds"], wall, markdown, page, study.site)


__all__ = ["ARMS", "Arm", "PRESETS", "StudyPreset", "StudyReport", "StudySettings", "run_study"]
