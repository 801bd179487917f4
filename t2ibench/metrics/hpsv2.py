"""HPSv2 (Wu et al., 2023): open_clip ViT-H-14 fine-tuned on human preferences, batched.

`hpsv2` is HPS v2.0 (`HPS_v2_compressed.pt`), `hpsv2.1` is HPS v2.1 (`HPS_v2.1_compressed.pt`): two
different metrics under two names and versions; a checkpoint whose file name says the other version
is refused. The score is what `hpsv2.img_score.score` returns: the cosine of the L2-normalised image
and text features, no logit scale (the HPSv2 README tables print it x100).

The model is open_clip's ViT-H-14 (same state_dict keys and tokenizer ids as hpsv2's vendored copy)
loaded once from the HPS checkpoint (`{'state_dict': ...}`, strict). The preprocessing is hpsv2's
(ToTensor, its `ResizeMaxSize`: long side to 224 with torchvision's bicubic tensor resize, zero-pad
to square, then OpenAI mean/std), run on batches of same-size images, with one fix: hpsv2 skips the
padding when the long side is already 224, which crashes on such non-square images; here they are
padded like every other image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.base import ImageLike, ItemScore, PromptRecord, Scorer
from t2ibench.weights import WeightFile

HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
DEFAULT_ARCH = "ViT-H-14"


def hps_preprocess_batch(images: Sequence[ImageLike], image_size: int, mean=None, std=None):
    """hpsv2's validation transform (ToTensor, its ResizeMaxSize: long side to `image_size` bicubic
    with torchvision's tensor resize, zero-pad to square, normalise), on whole batches of same-size
    images, padding every non-square result (hpsv2 skips the padding when the long side is already
    `image_size`). Returns a (B, 3, S, S) float tensor in input order."""
    import numpy as np
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    mean = torch.tensor(mean or OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(std or OPENAI_STD).view(1, 3, 1, 1)
    out = torch.empty(len(images), 3, image_size, image_size)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(im.size, []).append(i)
    for (width, height), idx in groups.items():
        arr = np.stack([np.asarray(images[i].convert("RGB")) for i in idx])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)  # = ToTensor
        scale = image_size / float(max(height, width))
        if scale != 1.0:
            new_size = [round(height * scale), round(width * scale)]
            x = F.resize(x, new_size, InterpolationMode.BICUBIC)
        h, w = x.shape[-2:]
        if (h, w) != (image_size, image_size):
            pad_h, pad_w = image_size - h, image_size - w
            x = F.pad(x, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        out[idx] = (x - mean) / std
    return out


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # hpsv2's OPENAI_DATASET_MEAN / STD
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class HPSv2Score(Scorer):
    name: ClassVar[str] = "hpsv2"
    hps_version: ClassVar[str] = "v2.0"
    default_prompt_set: ClassVar[str] = "tifa-v1"
    default_batch_size: ClassVar[int] = 32

    @classmethod
    def weight_files(cls, **_: Any) -> list[WeightFile]:
        return [WeightFile("hps", "xswu/HPSv2", HPS_FILES[cls.hps_version])]

    def __init__(self, device: str = "cpu", weights=None, arch: str = DEFAULT_ARCH, **options: Any):
        super().__init__(device, weights, **options)
        import open_clip
        import torch

        path = self.paths["hps"]
        other = next(v for v in HPS_FILES if v != self.hps_version)
        if path.name == HPS_FILES[other] or (other == "v2.1" and "v2.1" in path.name):
            raise UserError(f"{self.name} is HPS {self.hps_version} but {path.name} is HPS {other}; "
                            f"use --metrics {'hpsv2.1' if other == 'v2.1' else 'hpsv2'}")
        self.arch = arch
        model = open_clip.create_model(arch, pretrained=None, device=torch.device(device))
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if state_dict is None:
            raise UserError(f"{path} is not an HPS checkpoint ({{'state_dict': ...}})")
        try:
            model.load_state_dict(state_dict)  # strict, as hpsv2 loads it
        except RuntimeError as exc:
            raise UserError(f"{path} does not fit open_clip {arch}: {str(exc).splitlines()[0]}") from None
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        size = self.model.visual.image_size
        if isinstance(size, (list, tuple)):
            if size[0] != size[1]:
                raise UserError(f"hpsv2: non-square model input {size} is not supported")
            size = size[0]
        self.image_size = int(size)
        # hpsv2 scores under torch.cuda.amp.autocast (fp16 on CUDA, nothing on CPU): do the same.
        self.amp = torch.device(device).type == "cuda"

    @classmethod
    def declared_version(cls, arch: str = DEFAULT_ARCH, checkpoint: str | None = None, **_: Any) -> str:
        stem = checkpoint or HPS_FILES[cls.hps_version].rsplit(".", 1)[0]
        return f"{cls.name}/hps-{cls.hps_version}:{stem}/open_clip:{arch}/pad-square"

    @property
    def version(self) -> str:
        return self.declared_version(self.arch, self.paths["hps"].stem)

    def scores(self, images: Sequence[ImageLike], texts: Sequence[str]) -> list[float]:
        import torch

        pixels = hps_preprocess_batch(images, self.image_size).to(self.device)
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode(), torch.autocast("cuda", enabled=self.amp):
            out = self.model(pixels, tokens)
            img, txt = (out["image_features"], out["text_features"]) if isinstance(out, dict) else out[:2]
            return (img.float() * txt.float()).sum(-1).tolist()

    def score_batch(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> list[ItemScore]:
        return [ItemScore(p.id, v) for p, v in zip(prompts, self.scores(images, [p.text for p in prompts]))]


class HPSv21Score(HPSv2Score):
    name: ClassVar[str] = "hpsv2.1"
    hps_version: ClassVar[str] = "v2.1"
