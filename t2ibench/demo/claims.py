"""The paper's claims as statistical tests on a study's per-prompt scores.

Every claim is an *effect* with a claimed sign, measured on the per-prompt TIFA of every (seed, arm,
step) and given its 95% interval and two-sided p-value by `t2ibench.stats.seeds`:

* linear contrasts (C1-C4, C7): `contrast_effect` on the (seeds x prompts) matrix of the contrast,
  whose interval adds seed-to-seed variation to prompt resampling;
* rank statistics (C5, C6): `bootstrap_effect`, resampling seeds and prompts together.

The verdict is a function of the interval alone (`Effect.verdict`): *supported* when it lies on the
claimed side of zero, *contradicted* when it lies on the other side, *not significant* otherwise.
Nothing here knows which verdict to expect.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t2ibench.errors import UserError
from t2ibench.leaderboard.reference import PAPER, PAPER_FITS, TABLE4_SOURCE, table4_for
from t2ibench.stats.seeds import Effect, bootstrap_effect, contrast_effect

SCALING_ARMS = ("base", "deeper", "wider")


@dataclass
class ScoreGrid:
    """values[s, k, t, p]: the score of arm k, trained with seed s, at steps[t], on prompt p."""

    arms: list[str]
    steps: list[int]
    prompts: list[str]
    values: np.ndarray
    train_flops: dict[str, list[float]]  # arm -> training FLOPs at each step (seed 0's; identical across seeds)
    params: dict[str, int]

    @property
    def n_seeds(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def from_results(cls, eval_dirs: Mapping[str, Sequence[Path]], steps: Sequence[int], metric: str) -> ScoreGrid:
        """Read `<eval_dir>/step-<N>/results.json` of every arm and seed (one eval dir per seed)."""
        from t2ibench.leaderboard.compare import load_side

        arms = list(eval_dirs)
        n_seeds = len(next(iter(eval_dirs.values())))
        prompts: list[str] | None = None
        values = None
        flops: dict[str, list[float]] = {a: [] for a in arms}
        params: dict[str, int] = {}
        for k, arm in enumerate(arms):
            for s, directory in enumerate(eval_dirs[arm]):
                for t, step in enumerate(steps):
                    path = Path(directory) / f"step-{step:08d}" / "results.json"
                    if not path.is_file():
                        raise UserError(f"{path} is missing: the study is incomplete (rerun it to finish)")
                    items = load_side(str(path)).metrics[metric].item_values
                    if prompts is None:
                        prompts = sorted(items)
                        values = np.full((n_seeds, len(arms), len(steps), len(prompts)), np.nan)
                    if sorted(items) != prompts:
                        raise UserError(f"{path} scores other prompts than the rest of the study")
                    values[s, k, t] = [items[p] for p in prompts]
                    record = json.loads(path.read_text())
                    if s == 0:
                        flops[arm].append(float(record.get("train_flops") or 0.0))
                    params[arm] = int(record.get("params") or 0)
        return cls(arms, list(steps), prompts or [], values, flops, params)

    def at(self, arm: str, step: int) -> np.ndarray:
        """(seeds, prompts) scores of one arm at one step."""
        return self.values[:, self.arms.index(arm), self.steps.index(step)]

    def summary(self) -> dict[str, Any]:
        """Mean score of every arm and step, overall and per seed (the numbers behind the plots)."""
        out: dict[str, Any] = {"steps": self.steps, "n_prompts": len(self.prompts), "arms": {}}
        for k, arm in enumerate(self.arms):
            out["arms"][arm] = {
                "params": self.params.get(arm), "train_flops": self.train_flops.get(arm),
                "mean": [round(float(self.values[:, k, t].mean()), 6) for t in range(len(self.steps))],
                "per_seed": [[round(float(self.values[s, k, t].mean()), 6) for t in range(len(self.steps))]
                             for s in range(self.n_seeds)],
                "interval": [contrast_effect(self.values[:, k, t]).to_dict() for t in range(len(self.steps))],
            }
        return out


@dataclass
class Claim:
    id: str
    title: str
    measure: str  # what the effect is, in words and units
    paper: str  # where the paper makes the claim, with its numbers where it gives them (a reference, not a target)
    effect: Effect
    direction: int = +1  # the claimed sign of the effect
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.effect.verdict(self.direction)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "measure": self.measure, "paper": self.paper,
                "direction": self.direction, "verdict": self.verdict, "effect": self.effect.to_dict(),
                "details": self.details}


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho (scipy, average ranks for ties); 0 when either side is constant (no order to agree with)."""
    from t2ibench.leaderboard.analysis import spearman as rank_correlation

    rc = rank_correlation(list(a), list(b))
    return 0.0 if rc is None or math.isnan(rc.rho) else rc.rho


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b; 0 when either side is constant."""
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return 0.0 if tau is None or math.isnan(tau) else float(tau)


def _log2_ratio(params: Mapping[str, int], a: str, b: str) -> float:
    if not params.get(a) or not params.get(b):
        raise UserError(f"no parameter count recorded for {a if not params.get(a) else b}")
    return math.log2(params[a] / params[b])


def evaluate_claims(grid: ScoreGrid, params: Mapping[str, int]) -> list[Claim]:
    """C1-C7 on one study's scores (see docs/study.md for each claim's design)."""
    final, half, quarter = grid.steps[-1], grid.steps[len(grid.steps) // 2 - 1], grid.steps[0]
    x = grid.at
    claims: list[Claim] = []

    rise = np.mean([x(a, final) - x(a, half) for a in SCALING_ARMS], axis=0)
    claims.append(Claim(
        "C1", "Score rises with training steps",
        f"TIFA at step {final} minus TIFA at step {half}, averaged over base, deeper and wider",
        f"{PAPER}, Fig. 3-4: every model's TIFA keeps rising over training; the paper's fit "
        f"S = {PAPER_FITS['compute'].a} C^{PAPER_FITS['compute'].b} (C: training GFLOPs)",
        contrast_effect(rise)))

    claims.append(Claim(
        "C2", "Wider is better at equal steps", f"TIFA of wider minus base at step {final}",
        f"{PAPER}, Fig. 4a: SDXL UNets of 128 to 384 channels; more channels score higher at equal steps",
        contrast_effect(x("wider", final) - x("base", final))))

    claims.append(Claim(
        "C3", "Deeper is better at equal steps", f"TIFA of deeper minus base at step {final}",
        f"{PAPER}, Fig. 4b: SDXL UNets of 2 to 14 transformer blocks; more blocks score higher at equal steps",
        contrast_effect(x("deeper", final) - x("base", final))))

    l_depth, l_width = _log2_ratio(params, "deeper", "base"), _log2_ratio(params, "wider", "base")
    per_doubling = ((x("deeper", final) - x("base", final)) / l_depth
                    - (x("wider", final) - x("base", final)) / l_width)
    claims.append(Claim(
        "C4", "Depth is more parameter-efficient than width",
        f"TIFA gained per doubling of parameters at step {final}: by depth (base to deeper, x{2 ** l_depth:.2f} "
        f"parameters) minus by width (base to wider, x{2 ** l_width:.2f})",
        f"{PAPER}, Sec. 3.3: adding transformer blocks improves alignment more per parameter than adding channels",
        contrast_effect(per_doubling), details={"params": {a: params.get(a) for a in SCALING_ARMS}}))

    # C5: every evaluated (arm, step) of the scaling arms is a point; compute grows with steps, params do not.
    points = [(a, t) for a in SCALING_ARMS for t in range(len(grid.steps))]
    cols = np.stack([grid.values[:, grid.arms.index(a), t] for a, t in points], axis=1)  # (S, points, P)
    compute = [grid.train_flops[a][t] for a, t in points]
    size = [params[a] for a, _ in points]
    rho_c = bootstrap_effect(cols, lambda m: spearman(m, compute))
    rho_p = bootstrap_effect(cols, lambda m: spearman(m, size))
    claims.append(Claim(
        "C5", "Score follows compute more closely than parameters",
        f"Spearman rho of TIFA with training FLOPs minus rho with parameters, over the {len(points)} evaluations "
        "of base, deeper and wider",
        f"{PAPER}, Fig. 10a-b: TIFA against training compute and against model size; the paper's fits "
        f"S = {PAPER_FITS['compute'].a} C^{PAPER_FITS['compute'].b} and S = {PAPER_FITS['params'].a} "
        f"N^{PAPER_FITS['params'].b}",
        bootstrap_effect(cols, lambda m: spearman(m, compute) - spearman(m, size)),
        details={"rho_compute": rho_c.to_dict(), "rho_params": rho_p.to_dict()}))

    every = list(grid.arms)
    early = np.stack([x(a, quarter) for a in every] + [x(a, final) for a in every], axis=1)  # (S, 2K, P)
    k = len(every)
    claims.append(Claim(
        "C6", "Early evaluations predict the final ranking",
        f"Kendall tau between the ranking of all {k} arms at step {quarter} (25% of training) and at step {final}",
        f"{PAPER}, Sec. 3: rankings of model variants early in training already indicate the final ranking",
        bootstrap_effect(early, lambda m: kendall(m[:k], m[k:]))))

    t4 = {data: score for _, data, score in table4_for("tifa")}
    paper_t4 = (f"{TABLE4_SOURCE}: SD2 on LensArt, TIFA {t4.get('LensArt')} with alt-texts only, "
                f"{t4.get('LensArt + Top5 Syn.')} mixing in top-5 synthetic captions")
    claims.append(Claim(
        "C7a", "Mixing in synthetic captions improves alignment",
        f"TIFA of base (50% alt-text, else a top-5 synthetic caption) minus alt-only at step {final}",
        paper_t4, contrast_effect(x("base", final) - x("alt-only", final))))
    claims.append(Claim(
        "C7b", "Synthetic captions alone improve alignment over alt-texts",
        f"TIFA of synthetic-only minus alt-only at step {final}",
        paper_t4, contrast_effect(x("synthetic-only", final) - x("alt-only", final))))
    return claims


__all__ = ["Claim", "ScoreGrid", "kendall", "spearman", "evaluate_claims"]
