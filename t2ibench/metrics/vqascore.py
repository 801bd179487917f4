"""VQAScore (Lin et al., ECCV 2024): P("Yes") of a generative VLM asked whether the image shows the prompt.

As t2v_metrics 3.0 computes it for Qwen2.5-VL (`t2v_metrics/models/vqascore_models/qwen2vl_model.py`,
`Qwen2VLModel.forward`): the chat message holds the image then the question
`Does this image show "{prompt}"?`; the image goes through `qwen_vl_utils.process_vision_info` (Qwen's own
resize to multiples of 28 px) and the processor; the score is the softmax probability, at the first
generated position, of the first token of "Yes". t2v_metrics takes that distribution from
`generate(max_new_tokens=1, do_sample=False, output_scores=True)`, i.e. after the checkpoint's
generation-config logits processors; at the first step with greedy decoding only the repetition penalty
(1.05 in the Qwen2.5-VL checkpoints) acts, and it is applied here the same way, over each prompt's own
(unpadded) tokens. t2v_metrics scores one pair at a time; here pairs are batched with left padding.

Offered: Qwen2.5-VL 3B and 7B Instruct (t2v_metrics' Qwen family). The paper's CLIP-FlanT5 models are not
offered: t2v_metrics' CLIP-T5 code is a LLaVA fork written for transformers 4.49; it imports here (with
opencv) but was not shown to load and score correctly under transformers 5 (docs/alignment-metrics.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from t2ibench.metrics.tifa.vqa import snapshot_tag, to_rgb
from t2ibench.weights import WeightFile

QUESTION_TEMPLATE = 'Does this image show "{}"?'
ANSWER_TEMPLATE = "Yes"
# GenAI-Bench's skill groups (t2v_metrics genai_bench/evaluate.py `tag_groups`).
BASIC_SKILLS = ("attribute", "scene", "spatial relation", "action relation", "part relation")
ADVANCED_SKILLS = ("counting", "comparison", "differentiation", "negation", "universal")


@dataclass(frozen=True)
class VQAScoreModel:
    name: str
    repo_id: str


VQASCORE_MODELS: dict[str, VQAScoreModel] = {
    "qwen2.5-vl-3b": VQAScoreModel("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct"),
    "qwen2.5-vl-7b": VQAScoreModel("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct"),
}
DEFAULT_MODEL = "qwen2.5-vl-7b"


class VQAScore(Scorer):
    name: ClassVar[str] = "vqascore"
    default_prompt_set: ClassVar[str] = "genai-bench"
    default_batch_size: ClassVar[int] = 8

    def __init__(self, device: str = "cpu", weights: Mapping[str, Path | str] | None = None, *,
                 model: str = DEFAULT_MODEL, dtype: str = "auto", **options: Any):
        if model not in VQASCORE_MODELS:
            raise UserError(f"vqascore: unknown model {model!r}; known: {', '.join(VQASCORE_MODELS)}")
        if options:
            raise UserError(f"vqascore: unknown option(s) {', '.join(sorted(options))}; known: model, dtype")
        super().__init__(device, weights, model=model)
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.model_name = model
        path = str(self.paths["vqascore"])
        self.processor = AutoProcessor.from_pretrained(path)
        if len(self.processor.tokenizer) < 100:  # transformers 5 returns an empty tokenizer when files are missing
            raise UserError(f"vqascore: tokenizer files missing or empty in {path}")
        self.processor.tokenizer.padding_side = "left"
        if dtype == "auto":
            dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
        self.dtype = dtype
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
        self.model.eval()
        self.answer_id = self.processor.tokenizer.encode(ANSWER_TEMPLATE)[0]
        self.repetition_penalty = float(getattr(self.model.generation_config, "repetition_penalty", None) or 1.0)

    @classmethod
    def weight_files(cls, model: str = DEFAULT_MODEL, **_: Any) -> list[WeightFile]:
        spec = VQASCORE_MODELS.get(model)
        if spec is None:
            return []
        return [WeightFile("vqascore", spec.repo_id, spec.repo_id.split("/")[-1], is_dir=True,
                           allow_patterns=("*.json", "*.safetensors", "*.txt", "*.jinja"))]

    @classmethod
    def declared_version(cls, model: str = DEFAULT_MODEL, **_: Any) -> str:
        return f"vqascore/{model}/q={QUESTION_TEMPLATE}/a={ANSWER_TEMPLATE}"

    @property
    def version(self) -> str:
        return (f"vqascore/{self.model_name}@{snapshot_tag(self.paths['vqascore'])}/q={QUESTION_TEMPLATE}/"
                f"a={ANSWER_TEMPLATE}/{self.dtype}")

    def probabilities(self, images: Sequence[ImageLike], texts: Sequence[str]) -> list[float]:
        import torch
        from qwen_vl_utils import process_vision_info

        chats, vision = [], []
        for image, text in zip(images, texts, strict=True):
            messages = [{"role": "user", "content": [{"type": "image", "image": to_rgb(image)},
                                                     {"type": "text", "text": QUESTION_TEMPLATE.format(text)}]}]
            chats.append(self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            vision += process_vision_info(messages)[0]
        inputs = self.processor(text=chats, images=vision, padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[:, -1, :].float()
        logits = logits.clone()  # an ordinary tensor: the penalty below writes in place
        if self.repetition_penalty != 1.0:  # transformers' RepetitionPenaltyLogitsProcessor, per unpadded prompt
            for row in range(logits.shape[0]):
                ids = inputs["input_ids"][row][inputs["attention_mask"][row].bool()].unique()
                seen = logits[row, ids]
                logits[row, ids] = torch.where(seen < 0, seen * self.repetition_penalty, seen / self.repetition_penalty)
        return torch.softmax(logits, dim=-1)[:, self.answer_id].tolist()

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        values = self.probabilities(images, [p.text for p in prompts])
        return [ItemScore(p.id, v) for p, v in zip(prompts, values, strict=True)]

    def aggregate(self, items: list[ItemScore], skipped: int = 0) -> MetricResult:
        result = super().aggregate(items, skipped)
        skills = getattr(self, "_skills", {})
        result.categories = skill_means([(it.id, it.value) for it in items if it.value is not None], skills)
        return result

    def score(self, images, prompts, batch_size=None, progress=None) -> MetricResult:
        prompts = list(prompts)
        self._skills = {p.id: list(p.meta.get("skills", [])) for p in prompts}
        return super().score(images, prompts, batch_size, progress)


def skill_means(values: Sequence[tuple[str, float]], skills: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """GenAI-Bench per-skill means, as `show_performance_per_skill` in linzhiqiu/t2v_metrics
    genai_bench/evaluate.py (commit d8ad36aa) computes them: each tag, including the
    `basic` and `advanced` groups, is the mean over the prompts listed under it; `all` is the mean over the
    union of tagged prompts (untagged prompts are left out of it). Several images of a prompt are averaged
    first."""
    by_prompt: dict[str, list[float]] = {}
    for pid, v in values:
        by_prompt.setdefault(pid, []).append(v)
    prompt_mean = {pid: sum(v) / len(v) for pid, v in by_prompt.items()}
    by_tag: dict[str, list[float]] = {}
    tagged: dict[str, float] = {}
    for pid, tags in skills.items():
        if pid not in prompt_mean:
            continue
        for tag in tags:
            by_tag.setdefault(tag, []).append(prompt_mean[pid])
            tagged[pid] = prompt_mean[pid]
    out = {tag: sum(v) / len(v) for tag, v in by_tag.items()}
    if tagged:
        out["all"] = sum(tagged.values()) / len(tagged)
    return out
