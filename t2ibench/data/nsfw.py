"""Unsafe-content classifier: Falconsai/nsfw_image_detection, a ViT-base/16 (224 px) fine-tuned as a
two-class image classifier (labels ``normal``/``nsfw``), loaded with transformers'
AutoModelForImageClassification + AutoImageProcessor. An image is removed when the softmax
probability of the ``nsfw`` label is at least the threshold (default 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from t2ibench.data.curation_weights import NSFW_VIT, resolve_model
from t2ibench.errors import UserError

UNSAFE_LABELS = ("nsfw", "unsafe", "porn", "hentai", "sexy")


@dataclass
class NsfwClassifier:
    model: object
    processor: object
    unsafe_ids: tuple[int, ...]
    device: str = "cpu"

    @classmethod
    def load(cls, weights=None, device: str = "cpu"):
        from transformers import AutoImageProcessor, AutoModelForImageClassification
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        path = resolve_model(NSFW_VIT, weights, "--nsfw-weights")
        try:
            model = AutoModelForImageClassification.from_pretrained(path).eval().to(device)
            processor = AutoImageProcessor.from_pretrained(path)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: cannot load the NSFW classifier ({str(exc).splitlines()[0][:200]})") from None
        labels = {int(i): str(name).lower() for i, name in model.config.id2label.items()}
        unsafe = tuple(i for i, name in labels.items() if name in UNSAFE_LABELS)
        if not unsafe:
            raise UserError(f"{path}: classifier labels {sorted(labels.values())} name no unsafe class "
                            f"(expected one of {', '.join(UNSAFE_LABELS)})")
        return cls(model, processor, unsafe, device)

    def unsafe_prob(self, images) -> list[float]:
        """P(unsafe) per image: the summed softmax probability of the unsafe labels."""
        import torch

        if not images:
            return []
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            probs = self.model(**inputs).logits.float().softmax(-1)
        return probs[:, list(self.unsafe_ids)].sum(-1).cpu().tolist()
