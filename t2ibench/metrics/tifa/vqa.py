"""VQA backends for TIFA: one small interface, batched across questions and images.

A backend answers each (image, question) pair in free form; TIFA then maps the answer to the
nearest choice. The backend's name and checkpoint are part of the TIFA metric's version.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.weights import WeightFile


class VQABackend(ABC):
    name: ClassVar[str]
    # True when every answer is guaranteed to be one of the given choices (then TIFA needs no
    # answer-mapping model, e.g. the demo's measuring backend or a multiple-choice VLM prompt).
    answers_are_choices: ClassVar[bool] = False

    def __init__(self, device: str = "cpu", weights: Path | None = None, **options: Any):
        self.device = device
        self.options = options

    @classmethod
    def weight_files(cls) -> list[WeightFile]:
        return []

    @property
    @abstractmethod
    def version(self) -> str:
        """Backend + checkpoint identity, e.g. 'blip-vqa-capfilt-large@<revision>'."""

    @abstractmethod
    def answer(self, images: Sequence[Any], questions: Sequence[str],
               choices: Sequence[Sequence[str]]) -> list[str]:
        """Free-form answers, one per (images[i], questions[i], choices[i]); batched internally."""


# name -> "module:Class"; filled in by the backends' modules (blip, qwen, demo's measuring backend).
VQA_BACKENDS: dict[str, str] = {
    "shapes-measure": "t2ibench.demo.measure_vqa:ShapesMeasureVQA",
}


def vqa_backend_class(name: str) -> type[VQABackend]:
    if name not in VQA_BACKENDS:
        raise UserError(f"unknown VQA backend {name!r}; known: {', '.join(VQA_BACKENDS)}")
    module, cls = VQA_BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)
