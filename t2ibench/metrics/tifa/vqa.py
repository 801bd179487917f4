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
    """Subclasses declare their checkpoint in `weight_files()` under the key "vqa"; the TIFA scorer
    resolves it (explicit path, $T2IBENCH_WEIGHTS, HF cache/hub) and passes the path as `weights`."""

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


class HubVQABackend(VQABackend):
    """A transformers model from one hub snapshot (repo `repo_id`), resolved by the TIFA scorer."""

    repo_id: ClassVar[str]
    hub_files: ClassVar[tuple[str, ...]] = ("*.json", "*.safetensors", "*.txt")

    @classmethod
    def weight_files(cls) -> list[WeightFile]:
        return [WeightFile("vqa", cls.repo_id, cls.repo_id.split("/")[-1], is_dir=True, allow_patterns=cls.hub_files)]

    def _weights_dir(self, weights: Path | None) -> str:
        if weights is None:
            raise ValueError(f"{self.name}: weights path required (resolved by the TIFA scorer)")
        self.weights_path = Path(weights)
        return str(weights)

    def _check_tokenizer(self, tokenizer) -> None:
        if len(tokenizer) < 100:  # transformers 5 returns an empty tokenizer when files are missing
            raise ValueError(f"{self.name}: tokenizer files missing or empty in {self.weights_path}")


# name -> "module:Class" (imported on use), or a VQABackend subclass. Packages above the core add their
# own with `register_vqa_backend` (the demo registers "shapes-measure" when the demo package is imported).
VQA_BACKENDS: dict[str, str | type[VQABackend]] = {
    # The TIFA repo's "blip-large" and "blip-base" (transformers BlipForQuestionAnswering).
    "blip-vqa-capfilt-large": "t2ibench.metrics.tifa.blip:BlipVQACapfiltLarge",
    "blip-vqa-base": "t2ibench.metrics.tifa.blip:BlipVQABase",
    # A current open VLM answering multiple-choice prompts (choices in the prompt).
    "qwen2.5-vl-3b": "t2ibench.metrics.tifa.qwen:Qwen25VL3B",
    "qwen2.5-vl-7b": "t2ibench.metrics.tifa.qwen:Qwen25VL7B",
}


def register_vqa_backend(name: str, backend: str | type[VQABackend]) -> None:
    """Make `name` usable as TIFA's `vqa` option: a VQABackend subclass or its "module:Class" path."""
    if name in VQA_BACKENDS and VQA_BACKENDS[name] != backend:
        raise ValueError(f"VQA backend {name!r} is already registered as {VQA_BACKENDS[name]!r}")
    VQA_BACKENDS[name] = backend


def vqa_backend_class(name: str) -> type[VQABackend]:
    if name not in VQA_BACKENDS:
        raise UserError(f"unknown VQA backend {name!r}; known: {', '.join(VQA_BACKENDS)}")
    spec = VQA_BACKENDS[name]
    if isinstance(spec, type):
        return spec
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


def snapshot_tag(path: Path | None) -> str:
    """The hub commit of a resolved snapshot folder (HF cache layout .../snapshots/<commit>), else 'local'."""
    if path is not None:
        name = Path(path).name
        if len(name) == 40 and all(c in "0123456789abcdef" for c in name):
            return name[:12]
    return "local"


def to_rgb(image: Any):
    """PIL image (any mode) or a path -> RGB PIL image."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    return image if getattr(image, "mode", None) == "RGB" else image.convert("RGB")
