"""PickScore (Kirstain et al., NeurIPS 2023): a CLIP ViT-H/14 fine-tuned on Pick-a-Pic preferences.

Model `yuvalkirstain/PickScore_v1` (transformers CLIPModel) with the processor of
`laion/CLIP-ViT-H-14-laion2B-s32B-b79K` (resize shorter side to 224 bicubic, centre crop, CLIP mean/std;
tokens truncated to 77), as the model card loads them. Score per (image, prompt) = the model's
`logit_scale.exp()` times the cosine of the L2-normalised image and text embeddings, as the model card
computes it (about 21-22 for typical images; a probability needs a softmax over several images of one
prompt, which a per-image benchmark does not have). The paper evaluates on the Pick-a-Pic test prompts;
the default prompt set here is the one every preference scorer of this suite uses on generated
images, coco-10k, recorded in the manifest like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.base import ImageLike, ItemScore, PromptRecord, Scorer
from t2ibench.weights import WeightFile

MODEL_REPO = "yuvalkirstain/PickScore_v1"
PROCESSOR_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScore(Scorer):
    name: ClassVar[str] = "pickscore"
    default_batch_size: ClassVar[int] = 32

    @classmethod
    def weight_files(cls, **_: Any) -> list[WeightFile]:
        return [WeightFile("model", MODEL_REPO, "PickScore_v1", is_dir=True,
                           allow_patterns=("config.json", "*.safetensors")),
                WeightFile("processor", PROCESSOR_REPO, "CLIP-ViT-H-14-laion2B-s32B-b79K", is_dir=True,
                           allow_patterns=("preprocessor_config.json", "tokenizer*", "vocab.json", "merges.txt",
                                           "special_tokens_map.json", "config.json"))]

    def __init__(self, device: str = "cpu", weights=None, **options: Any):
        super().__init__(device, weights, **options)
        from transformers import AutoProcessor, CLIPModel

        model_dir, processor_dir = self.paths["model"], self.paths["processor"]
        for d in (model_dir, processor_dir):
            if not d.is_dir():
                raise UserError(f"pickscore: {d} is not a model folder")
        try:
            self.model = CLIPModel.from_pretrained(str(model_dir), local_files_only=True).to(device).eval()
            self.processor = AutoProcessor.from_pretrained(str(processor_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UserError(f"pickscore: {str(exc).splitlines()[0]}") from None
        if len(self.processor.tokenizer) < 2:  # transformers 5 returns an empty tokenizer instead of failing
            raise UserError(f"pickscore: no tokenizer vocabulary in {processor_dir}")

    @classmethod
    def declared_version(cls, **_: Any) -> str:
        return f"{cls.name}/transformers:CLIPModel:{MODEL_REPO}/processor:{PROCESSOR_REPO}/logit-scale-cosine"

    @property
    def version(self) -> str:
        return self.declared_version()

    def scores(self, images: Sequence[ImageLike], texts: Sequence[str]) -> list[float]:
        import torch
        import torch.nn.functional as F

        image_inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        text_inputs = self.processor(text=list(texts), padding=True, truncation=True, max_length=77,
                                     return_tensors="pt").to(self.device)
        with torch.inference_mode():
            img = _embedding(self.model.get_image_features(**image_inputs))
            txt = _embedding(self.model.get_text_features(**text_inputs))
            cos = (F.normalize(img.float(), dim=-1) * F.normalize(txt.float(), dim=-1)).sum(-1)
            return (self.model.logit_scale.exp().float() * cos).tolist()

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        return [ItemScore(p.id, v) for p, v in zip(prompts, self.scores(images, [p.text for p in prompts]))]


def _embedding(out):
    """transformers 5 returns the projected embedding as `pooler_output` of a model output; 4.x a tensor."""
    return out if hasattr(out, "dim") else out.pooler_output
