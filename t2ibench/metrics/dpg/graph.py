"""DPG-Bench question graphs and their official scoring, written here from the official code.

Mirrors TencentQQGYLab/ELLA at 3c228f1dc6c4d3cad0a47493816151a419f14db3, `dpg_bench/compute_dpg_bench.py`:

* `parse_question_graphs` <- `prepare_dpg_data` (lines 65-99): rows of `dpg_bench.csv` grouped by
  consecutive `item_id`; `proposition_id` is the question id, `dependency` a comma-separated list of
  parent ids (0: none). The official loop skips the csv's first data row (`if i == 0: continue`), so the
  first item loses its first question; `official_first_row=True` (the default) keeps that quirk, since
  it changes the published numbers.
* `score_image` <- the body of `compute_dpg_one_sample`'s crop loop (lines 123-155): a question scores 1
  when the VQA answer is exactly "yes"; then, in csv order and in place (so a zeroed parent zeroes its
  children transitively only when it comes first), a question whose first parent answered "no" scores 0.
  The image's score is the mean over its questions. A parent id that is not a question of the item
  makes the official code raise; it then skips the image ("Failed filename") and leaves it out of every
  mean: `score_image` returns `failed` for it.
* `score_prompt` <- the rest of `compute_dpg_one_sample` (lines 156-161): mean over the prompt's images
  (the 2x2 grid crops); the category scores use the raw answers (before the dependency rule) of the
  prompt's last image.
* `summarize` <- `main` (lines 164-253): DPG-Bench is the mean over scored prompts; an L2 category
  (`tuple` up to its first "(", e.g. "entity - whole") is the mean of its questions' raw scores over all
  prompts; an L1 category is the part before the first "-". The official printout is x100.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from t2ibench.errors import UserError
from t2ibench.prompts.dpg_questions import CSV_COLUMNS, QuestionGraph, parse_question_graphs  # noqa: F401

YES = "yes"


def category_l2(tuple_text: str) -> str:
    return tuple_text.split("(")[0].strip()


def category_l1(l2: str) -> str:
    return l2.split("-")[0].strip()


@dataclass
class ImageOutcome:
    score: float | None          # None: the official code fails on this item (a parent is not a question)
    raw: dict[int, float]        # qid -> 1.0 for "yes", before the dependency rule
    final: dict[int, float]      # after the dependency rule
    failed: str = ""


def score_image(graph: QuestionGraph, answers: dict[int, str]) -> ImageOutcome:
    scores = {q: float(answers[q] == YES) for q in graph.questions}
    raw = dict(scores)
    for q, parents in graph.parents.items():
        for p in parents:
            if p == 0:
                continue
            if p not in scores:
                return ImageOutcome(None, raw, scores, failed=f"question {q} depends on {p}, which is not a question")
            if scores[p] == 0:
                scores[q] = 0
                break
    return ImageOutcome(sum(scores.values()) / len(scores), raw, scores)


@dataclass
class PromptOutcome:
    score: float | None
    image_scores: list[float]
    category_raw: dict[int, float]  # the last image's raw scores (official `qid2scores_orig`)
    failed: str = ""


def score_prompt(graph: QuestionGraph, per_image_answers: Sequence[dict[int, str]]) -> PromptOutcome:
    outcomes = []
    for answers in per_image_answers:
        o = score_image(graph, answers)
        if o.score is None:
            return PromptOutcome(None, [], {}, o.failed)
        outcomes.append(o)
    if not outcomes:
        raise ValueError("a prompt needs at least one image")
    image_scores = [o.score for o in outcomes]
    return PromptOutcome(sum(image_scores) / len(image_scores), image_scores, outcomes[-1].raw)


@dataclass
class DpgSummary:
    score: float
    l1: dict[str, float]
    l2: dict[str, float]
    n_prompts: int
    n_failed: int


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def summarize(scored: Sequence[tuple[QuestionGraph, PromptOutcome]]) -> DpgSummary:
    ok = [(g, o) for g, o in scored if o.score is not None]
    if not ok:
        raise UserError("dpg: no prompt could be scored")
    by_l2: dict[str, list[float]] = defaultdict(list)
    for g, o in ok:
        for q, v in o.category_raw.items():
            by_l2[category_l2(g.tuples[q])].append(v)
    by_l1: dict[str, list[float]] = defaultdict(list)
    for l2, values in by_l2.items():
        by_l1[category_l1(l2)].extend(values)
    return DpgSummary(score=_mean([o.score for _, o in ok]), l1={k: _mean(v) for k, v in by_l1.items()},
                      l2={k: _mean(v) for k, v in sorted(by_l2.items())}, n_prompts=len(ok),
                      n_failed=len(scored) - len(ok))
