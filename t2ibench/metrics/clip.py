"""CLIP score with open_clip: cosine similarity of the L2-normalised image and text embeddings.

Default model: OpenAI CLIP ViT-L/14 (open_clip `ViT-L-14`, pretrained `openai`, QuickGELU), the model
behind the CLIP scores of about 0.27 that the paper and ImageReward's Table 1 report as raw cosine.
`clip` reports that raw cosine; `clip-x100` reports 100 * max(cos, 0) (the torchmetrics / "CLIPScore"
paper scale) under a different name, so the two are never compared by mistake.

Options: `arch` and `pretrained` pick another open_clip model (e.g. arch="ViT-H-14",
pretrained="laion2b_s32b_b79k"); both are part of the version string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from t2ibench.metrics.base import ImageLike, ItemScore, PromptRecord, Scorer, map_images
from t2ibench.weights import WeightFile


@dataclass(frozen=True)
class ClipModelSpec:
    arch: str
    pretrained: str
    repo_id: str
    filename: str = "open_clip_pytorch_model.bin"
    quick_gelu: bool = False


# (arch, pretrained) -> where its open_clip checkpoint lives on the hub.
CLIP_MODELS: dict[tuple[str, str], ClipModelSpec] = {
    ("ViT-L-14", "openai"): ClipModelSpec("ViT-L-14", "openai", "timm/vit_large_patch14_clip_224.openai",
                                          quick_gelu=True),
    ("ViT-H-14", "laion2b_s32b_b79k"): ClipModelSpec("ViT-H-14", "laion2b_s32b_b79k",
                                                     "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    ("ViT-B-32", "openai"): ClipModelSpec("ViT-B-32", "openai", "timm/vit_base_patch32_clip_224.openai",
                                          quick_gelu=True),
}
DEFAULT_ARCH, DEFAULT_PRETRAINED = "ViT-L-14", "openai"


def clip_model_spec(arch: str = DEFAULT_ARCH, pretrained: str = DEFAULT_PRETRAINED,
                    quick_gelu: bool | None = None) -> ClipModelSpec:
    """The registered spec, or one for a local checkpoint of any open_clip architecture."""
    spec = CLIP_MODELS.get((arch, pretrained))
    if spec is None:  # not on the hub list: needs an explicit weights path
        spec = ClipModelSpec(arch, pretrained, f"local/{arch}-{pretrained}", quick_gelu=bool(quick_gelu))
    elif quick_gelu is not None and quick_gelu != spec.quick_gelu:
        spec = ClipModelSpec(spec.arch, spec.pretrained, spec.repo_id, spec.filename, quick_gelu)
    return spec


class ClipScore(Scorer):
    name: ClassVar[str] = "clip"
    scale: ClassVar[str] = "cosine"
    default_batch_size: ClassVar[int] = 64

    @classmethod
    def weight_files(cls, arch: str = DEFAULT_ARCH, pretrained: str = DEFAULT_PRETRAINED,
                     quick_gelu: bool | None = None, **_: Any) -> list[WeightFile]:
        spec = clip_model_spec(arch, pretrained, quick_gelu)
        return [WeightFile("clip", spec.repo_id, spec.filename)]

    def __init__(self, device: str = "cpu", weights=None, **options: Any):
        super().__init__(device, weights, **options)
        import open_clip
        import torch

        self.spec = clip_model_spec(options.get("arch", DEFAULT_ARCH), options.get("pretrained", DEFAULT_PRETRAINED),
                                    options.get("quick_gelu"))
        # `pretrained=<file>` loads open_clip's checkpoint format (.bin or .safetensors) with weights_only.
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.spec.arch, pretrained=str(self.paths["clip"]), force_quick_gelu=self.spec.quick_gelu,
            device=torch.device(device))
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.spec.arch)

    @classmethod
    def declared_version(cls, arch: str = DEFAULT_ARCH, pretrained: str = DEFAULT_PRETRAINED,
                         quick_gelu: bool | None = None, **_: Any) -> str:
        spec = clip_model_spec(arch, pretrained, quick_gelu)
        gelu = "-quickgelu" if spec.quick_gelu else ""
        return f"{cls.name}/open_clip:{spec.arch}{gelu}/{spec.pretrained}/{cls.scale}"

    @property
    def version(self) -> str:
        return self.declared_version(self.spec.arch, self.spec.pretrained, self.spec.quick_gelu)

    def cosine(self, images: Sequence[ImageLike], texts: Sequence[str]) -> list[float]:
        import torch
        import torch.nn.functional as F

        pixels = torch.stack(map_images(self.preprocess, images)).to(self.device)
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            img = F.normalize(self.model.encode_image(pixels).float(), dim=-1)
            txt = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        return (img * txt).sum(-1).tolist()

    def to_scale(self, cos: float) -> float:
        return cos

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        values = self.cosine(images, [p.text for p in prompts])
        return [ItemScore(p.id, self.to_scale(v), {"cosine": v} if self.scale != "cosine" else {})
                for p, v in zip(prompts, values)]


class ClipScoreX100(ClipScore):
    """100 * max(cosine, 0): the torchmetrics CLIPScore scale (Hessel et al. use w=2.5 instead)."""

    name: ClassVar[str] = "clip-x100"
    scale: ClassVar[str] = "100xclip0"

    def to_scale(self, cos: float) -> float:
        return 100.0 * max(cos, 0.0)
