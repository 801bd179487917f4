"""Qwen2.5-VL as a multiple-choice VQA backend (transformers `Qwen2_5_VLForConditionalGeneration`).

The choices go into the prompt and the model is asked to reply with one of them. Its reply is the
free-form answer; a reply equal to a choice up to case, surrounding whitespace and a final period is
returned as that choice (so "Yes." counts as "yes"); anything else goes to TIFA's answer mapping like
any free-form answer. Greedy decoding, left-padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.metrics.tifa.vqa import HubVQABackend, snapshot_tag, to_rgb

PROMPT = "{question}\nChoices: {choices}\nAnswer with exactly one of the choices and nothing else."


def match_choice(reply: str, choices: Sequence[str]) -> str:
    """The choice `reply` spells (ignoring case, surrounding whitespace, a final period), else the reply."""
    if reply in choices:
        return reply
    norm = reply.strip().rstrip(".").strip().lower()
    hits = [c for c in choices if c.strip().lower() == norm]
    return hits[0] if hits else reply.strip()


class Qwen25VL(HubVQABackend):
    hub_files = ("*.json", "*.safetensors", "*.txt", "*.jinja")  # + the chat template
    answers_are_choices = False  # a generative model can still reply outside the choices
    max_new_tokens: ClassVar[int] = 16

    def __init__(self, device: str = "cpu", weights: Path | None = None, batch_size: int = 16,
                 dtype: str = "auto", max_pixels: int | None = None, **options: Any):
        super().__init__(device, weights, **options)
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        path = self._weights_dir(weights)
        kwargs = {"max_pixels": max_pixels} if max_pixels else {}
        self.processor = AutoProcessor.from_pretrained(path, **kwargs)
        self._check_tokenizer(self.processor.tokenizer)
        self.processor.tokenizer.padding_side = "left"  # decoder-only batched generation
        if dtype == "auto":
            dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            path, dtype=getattr(torch, dtype)).to(device).eval()
        self.batch_size = batch_size

    @property
    def version(self) -> str:
        return f"{self.name}@{snapshot_tag(self.weights_path)}/mc-prompt-v1"

    def prompt(self, question: str, choices: Sequence[str]) -> str:
        content = [{"type": "image"},
                   {"type": "text", "text": PROMPT.format(question=question, choices=", ".join(choices))}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                  add_generation_prompt=True, tokenize=False)

    def answer(self, images: Sequence[Any], questions: Sequence[str],
               choices: Sequence[Sequence[str]]) -> list[str]:
        import torch

        answers: list[str] = []
        rgb: dict[int, Any] = {}  # convert each distinct image once
        with torch.inference_mode():
            for start in range(0, len(questions), self.batch_size):
                stop = start + self.batch_size
                batch_images = [rgb.setdefault(id(im), to_rgb(im)) for im in images[start:stop]]
                texts = [self.prompt(q, cs) for q, cs in zip(questions[start:stop], choices[start:stop])]
                inputs = self.processor(text=texts, images=batch_images, padding=True,
                                        return_tensors="pt").to(self.device)
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
                replies = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:],
                                                      skip_special_tokens=True)
                answers += [match_choice(r, cs) for r, cs in zip(replies, choices[start:stop])]
        return answers


class Qwen25VL3B(Qwen25VL):
    name = "qwen2.5-vl-3b"
    repo_id = "Qwen/Qwen2.5-VL-3B-Instruct"


class Qwen25VL7B(Qwen25VL):
    name = "qwen2.5-vl-7b"
    repo_id = "Qwen/Qwen2.5-VL-7B-Instruct"
