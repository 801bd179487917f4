"""The DPG-Bench scorer: every question of a prompt's graph asked of its images, scored officially.

Prompt records carry their question graph in `meta["dpg_questions"]` (the `dpg-bench` prompt set does).
The official VQA model is mPLUG-large through modelscope, which does not install with this project's
dependencies (modelscope's mPLUG pipeline needs its own, older transformers); the transformers VQA
backends of TIFA answer instead, and the version names the backend (`vqa=...`), so these numbers are
never ranked with published mPLUG ones.

Images per prompt: the official protocol scores 4 (a 2x2 grid cropped into 4, `PIC_NUM=4` in
dist_eval.sh). Separate images of one prompt (the same prompt id K times) are scored like those crops;
`grid=2x2` crops each image into its 4 quarters as the official code does. `k="official"` stops before
any model loads unless each prompt has 4 images (or crops); `k="any"` scores any K and records it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.base import (
    ImageLike,
    ItemScore,
    MetricResult,
    PromptRecord,
    Scorer,
)
from t2ibench.metrics.dpg.graph import QuestionGraph, score_prompt, summarize
from t2ibench.metrics.images_per_prompt import check_k, count_images_per_prompt
from t2ibench.metrics.tifa.vqa import VQABackend, to_rgb, vqa_backend_class
from t2ibench.weights import WeightFile

DEFAULT_VQA = "blip-vqa-capfilt-large"
OFFICIAL_IMAGES_PER_PROMPT = 4
GRIDS = {"none": 1, "2x2": 4}


def grid_crops(image, grid: str) -> list[Any]:
    """The official crops of a grid image: (0,0), (r,0), (0,r), (r,r) with r = width // 2."""
    if grid == "none":
        return [image]
    r = image.width // 2
    boxes = [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)]
    return [image.crop(b) for b in boxes[:GRIDS[grid]]]


class DPGBenchScore(Scorer):
    name: ClassVar[str] = "dpg"
    default_prompt_set: ClassVar[str] = "dpg-bench"
    default_batch_size: ClassVar[int] = 4

    def __init__(self, device: str = "cpu", weights: Mapping[str, Path | str] | None = None, *,
                 vqa: str = DEFAULT_VQA, grid: str = "none", k: str = "official",
                 images_per_prompt: int | None = None, vqa_batch_size: int | None = None, **vqa_options: Any):
        if grid not in GRIDS:
            raise UserError(f"dpg: grid={grid!r}; choose one of {', '.join(GRIDS)}")
        backend_cls = vqa_backend_class(vqa)
        super().__init__(device, weights, vqa=vqa)
        if vqa_batch_size is not None:
            vqa_options["batch_size"] = vqa_batch_size
        keys = [wf.key for wf in backend_cls.weight_files()]
        self.backend: VQABackend = backend_cls(device=device, weights=self.paths.get(keys[0]) if keys else None,
                                               **vqa_options)
        self.grid, self.k_policy, self.declared_k = grid, k, images_per_prompt
        self._graphs: dict[str, QuestionGraph] = {}
        self._k: int | None = None

    @classmethod
    def weight_files(cls, vqa: str = DEFAULT_VQA, **_: Any) -> list[WeightFile]:
        return list(vqa_backend_class(vqa).weight_files())

    @classmethod
    def check_prompts(cls, records: Sequence[PromptRecord], images_per_prompt: int | None = None,
                      k: str = "official", grid: str = "none", **options: Any) -> None:
        lacking = [r.id for r in records if not r.meta.get("dpg_questions")]
        if lacking:
            raise UserError(f"dpg: prompt {lacking[0]!r} (and {len(lacking) - 1} more) has no DPG-Bench question "
                            "graph; use the prompt set `dpg-bench`")
        check_k(cls.name, count_images_per_prompt(records, images_per_prompt) * GRIDS.get(grid, 1),
                OFFICIAL_IMAGES_PER_PROMPT, k)

    @classmethod
    def declared_version(cls, vqa: str = DEFAULT_VQA, k: str = "official", **_: Any) -> str:
        kk = OFFICIAL_IMAGES_PER_PROMPT if k == "official" else "K"
        return f"dpg-bench@3c228f1d/vqa={vqa}/k={kk}"

    @property
    def version(self) -> str:
        k = self._k or OFFICIAL_IMAGES_PER_PROMPT
        return f"dpg-bench@3c228f1d/vqa={self.backend.version}/k={k}"

    def graph(self, prompt: PromptRecord) -> QuestionGraph:
        if prompt.id not in self._graphs:
            rows = prompt.meta.get("dpg_questions")
            if not rows:
                raise UserError(f"dpg: prompt {prompt.id!r} has no DPG-Bench question graph")
            self._graphs[prompt.id] = QuestionGraph.from_meta(prompt.id, prompt.text, rows)
        return self._graphs[prompt.id]

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        flat_images, flat_q, spans = [], [], []
        for image, prompt in zip(images, prompts, strict=True):
            g = self.graph(prompt)
            crops = grid_crops(to_rgb(image), self.grid)
            spans.append((prompt, len(flat_q), len(crops)))
            for crop in crops:
                for q in g.questions.values():
                    flat_images.append(crop)
                    flat_q.append(q)
        answers = self.backend.answer(flat_images, flat_q, [("yes", "no")] * len(flat_q))
        items = []
        for prompt, start, n_crops in spans:
            g = self.graph(prompt)
            per_crop = []
            pos = start
            for _ in range(n_crops):
                per_crop.append({q: answers[pos + j] for j, q in enumerate(g.questions)})
                pos += len(g.questions)
            outcome = score_prompt(g, per_crop)
            items.append(ItemScore(prompt.id, outcome.score, {"answers": per_crop, "crop_scores": outcome.image_scores,
                                                               "failed": outcome.failed}))
        return items

    def aggregate(self, items: list[ItemScore], skipped: int = 0) -> MetricResult:
        if not items:
            raise UserError(f"dpg: no image could be scored ({skipped} unreadable)")
        by_prompt: dict[str, list[ItemScore]] = {}
        for it in items:
            by_prompt.setdefault(it.id, []).append(it)
        scored = []
        for pid, its in by_prompt.items():
            g = self._graphs[pid]
            answers = [a for it in its for a in it.details["answers"]]
            scored.append((g, score_prompt(g, [{int(q): v for q, v in a.items()} for a in answers])))
        self._k = max(len(o.image_scores) for _, o in scored if o.score is not None) if any(
            o.score is not None for _, o in scored) else None
        summary = summarize(scored)
        categories = {**summary.l1, **{f"{k}": v for k, v in summary.l2.items()}}
        return MetricResult(metric=self.name, version=self.version, value=summary.score, n_items=summary.n_prompts,
                            n_skipped=skipped, categories=categories, per_item=items,
                            extra={"n_prompts_failed": summary.n_failed, "images_per_prompt": self._k,
                                   "l1": summary.l1, "l2": summary.l2, "scale": "fraction (official printout x100)"})
