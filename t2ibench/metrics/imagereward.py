"""ImageReward (Xu et al., 2023) through the image-reward package, batched.

The model is the library's own `ImageReward.ImageReward` (BLIP ViT-L/16 + BERT with cross-attention
+ MLP head) built from `ImageReward.pt` and `med_config.json`, with the tokenizer read from a local
bert-base-uncased `vocab.txt` (see t2ibench/compat/imagereward.py). The library's `score` handles one
image at a time; `score_batch` runs the same modules, in the same order, on a whole batch: the
library's preprocessing, its tokenizer with 35-token truncation, visual encoder, text encoder with
cross-attention, CLS feature, MLP, and its (r - mean) / std normalisation. Two things make the
batch cheaper without changing the numbers beyond float rounding (~1e-6): the PIL steps run on a
thread pool, and prompts are padded to the longest in the batch rather than always to 35 tokens
(padded positions are masked out of attention, so they only cost time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from t2ibench.metrics.base import ImageLike, ItemScore, PromptRecord, Scorer, map_images
from t2ibench.weights import WeightFile

MAX_TOKENS = 35  # the library's tokenizer call: padding="max_length", truncation=True, max_length=35


class ImageRewardScore(Scorer):
    name: ClassVar[str] = "imagereward"
    default_batch_size: ClassVar[int] = 32

    @classmethod
    def weight_files(cls, **_: Any) -> list[WeightFile]:
        return [
            WeightFile("imagereward", "THUDM/ImageReward", "ImageReward.pt"),
            WeightFile("med_config", "THUDM/ImageReward", "med_config.json"),
            WeightFile("bert_vocab", "google-bert/bert-base-uncased", "vocab.txt"),
        ]

    def __init__(self, device: str = "cpu", weights=None, **options: Any):
        super().__init__(device, weights, **options)
        from t2ibench.compat.imagereward import build_imagereward

        self.model = build_imagereward(self.paths["imagereward"], self.paths["med_config"], self.paths["bert_vocab"],
                                       device=device)

    @classmethod
    def declared_version(cls, checkpoint: str = "ImageReward", vit: str = "large", **_: Any) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            lib = version("image-reward")
        except PackageNotFoundError:
            lib = "missing"
        return f"{cls.name}/image-reward-{lib}:{checkpoint}/blip-vit-{vit}/bert-uncased-{MAX_TOKENS}tok"

    @property
    def version(self) -> str:
        vit = self.model.vit_size
        return self.declared_version(self.paths["imagereward"].stem,
                                     vit.blip_name or f"w{vit.width}d{vit.depth}p{vit.patch_size}")

    def preprocess_batch(self, images: Sequence[ImageLike]):
        """The library's `_transform(224)`: its PIL steps (Resize bicubic, CenterCrop, RGB) per image, then
        ToTensor and Normalize on the whole batch (the same arithmetic, once per batch)."""
        import numpy as np
        import torch
        from torchvision.transforms import Compose, Normalize, ToTensor

        steps = list(self.model.preprocess.transforms)
        if not (isinstance(steps[-2], ToTensor) and isinstance(steps[-1], Normalize)):  # another image-reward
            return torch.stack([self.model.preprocess(im) for im in images])
        pil_steps, normalize = Compose(steps[:-2]), steps[-1]
        arr = np.stack(map_images(lambda im: np.asarray(pil_steps(im)), images))
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().float().div_(255)
        mean = torch.tensor(normalize.mean).view(1, 3, 1, 1)
        std = torch.tensor(normalize.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def rewards(self, images: Sequence[ImageLike], texts: Sequence[str]) -> list[float]:
        import torch

        m = self.model
        text = m.blip.tokenizer(list(texts), padding="longest", truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt").to(self.device)
        pixels = self.preprocess_batch(images).to(self.device)
        with torch.inference_mode():
            image_embeds = m.blip.visual_encoder(pixels)
            image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
            out = m.blip.text_encoder(text.input_ids, attention_mask=text.attention_mask,
                                      encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts,
                                      return_dict=True)
            rewards = (m.mlp(out.last_hidden_state[:, 0, :].float()) - m.mean) / m.std
        return rewards[:, 0].tolist()

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        return [ItemScore(p.id, v) for p, v in zip(prompts, self.rewards(images, [p.text for p in prompts]))]
