"""TIFA's scoring, as the official implementation does it.

Read from Yushi-Hu/tifa at commit 8e37050f44ab4ee681e4251f3c8a9d4cc86e901e (`tifascore/tifa_score.py`,
`tifascore/vqa_models.py`, `tifascore/mc_sbert.py`):

* the VQA model answers each question in free form;
* `VQAModel.multiple_choice_vqa`: when the free-form answer is *exactly* (case- and whitespace-sensitive)
  one of the choices it is kept, otherwise it is mapped to the choice whose SBERT embedding
  (all-mpnet-base-v2, mean pooling, L2-normalised) has the highest cosine similarity with the answer's;
  ties go to the first such choice (`torch.argmax`);
* a question scores `int(mapped == answer)`;
* `tifa_score_benchmark`: a caption's score is the mean over its questions, every occurrence counted
  (a question repeated within a caption is asked and scored again, so it weighs twice); TIFA is the mean
  over captions; the per-type accuracy is the mean over all question occurrences of that `element_type`;
  the standard deviation over captions is `statistics.stdev` (sample, n-1).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from t2ibench.metrics.tifa.questions import TifaQuestion


@dataclass
class QuestionOutcome:
    """One asked question: the VQA's free-form answer, the choice it maps to and the 0/1 score.
    `free_form`/`mapped` are None when the caption had no image (the question then scores 0)."""

    question: str
    choices: list[str]
    answer: str
    element_type: str
    element: str
    free_form: str | None
    mapped: str | None
    score: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needs_mapping(free_form: str, choices: Sequence[str]) -> bool:
    """Official rule: only an answer that is not literally one of the choices goes to SBERT."""
    return free_form not in choices


class AnswerMapper:
    """Nearest choice by sentence-embedding cosine similarity, via sentence-transformers.

    all-mpnet-base-v2 as a sentence-transformers model is Transformer -> mean pooling -> Normalize,
    the same computation as the official `SBERTModel` (AutoModel + mean pooling + F.normalize).
    """

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 256):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device=device)
        self.batch_size = batch_size

    def embed(self, sentences: Sequence[str]):
        return self.model.encode(list(sentences), batch_size=self.batch_size, convert_to_tensor=True,
                                 normalize_embeddings=True, show_progress_bar=False)

    def map(self, answers: Sequence[str], choices: Sequence[Sequence[str]]) -> list[str]:
        """The closest choice for each answer; every distinct string is embedded once."""
        import torch

        if not answers:
            return []
        texts = list(dict.fromkeys([*answers, *(c for cs in choices for c in cs)]))
        row = {t: i for i, t in enumerate(texts)}
        emb = self.embed(texts).float().cpu()
        out = []
        for answer, cs in zip(answers, choices, strict=True):
            sims = emb[[row[c] for c in cs]] @ emb[row[answer]]
            out.append(cs[int(torch.argmax(sims))])  # argmax: first maximal index, as officially
        return out


def score_questions(questions: Sequence[TifaQuestion], free_form: Sequence[str],
                    mapped: Sequence[str]) -> list[QuestionOutcome]:
    return [QuestionOutcome(question=q.question, choices=list(q.choices), answer=q.answer,
                            element_type=q.element_type, element=q.element, free_form=f, mapped=m,
                            score=int(m == q.answer))
            for q, f, m in zip(questions, free_form, mapped, strict=True)]


def unanswered(questions: Sequence[TifaQuestion]) -> list[QuestionOutcome]:
    """Outcomes for a caption whose image is missing: every question scores 0."""
    return [QuestionOutcome(question=q.question, choices=list(q.choices), answer=q.answer,
                            element_type=q.element_type, element=q.element, free_form=None, mapped=None,
                            score=0) for q in questions]


def caption_score(outcomes: Sequence[QuestionOutcome]) -> float:
    if not outcomes:
        raise ValueError("a caption with no questions has no TIFA score")
    return sum(o.score for o in outcomes) / len(outcomes)


@dataclass
class TifaSummary:
    tifa_average: float
    tifa_stdev: float | None  # None for fewer than two captions (statistics.stdev would raise)
    accuracy_by_type: dict[str, float]
    caption_scores: list[float]
    n_questions: int


def summarize(captions: Iterable[Sequence[QuestionOutcome]]) -> TifaSummary:
    """TIFA over captions (each a list of outcomes, duplicates included), as tifa_score_benchmark does."""
    caption_scores: list[float] = []
    by_type: dict[str, list[int]] = defaultdict(list)
    for outcomes in captions:
        caption_scores.append(caption_score(outcomes))
        for o in outcomes:
            by_type[o.element_type].append(o.score)
    if not caption_scores:
        raise ValueError("no caption to score")
    return TifaSummary(
        tifa_average=float(statistics.mean(caption_scores)),
        tifa_stdev=statistics.stdev(caption_scores) if len(caption_scores) > 1 else None,
        accuracy_by_type={t: float(statistics.mean(s)) for t, s in by_type.items()},
        caption_scores=caption_scores,
        n_questions=sum(len(s) for s in by_type.values()),
    )
