"""HPSv2 (Wu et al., 2023): open_clip ViT-H-14 fine-tuned on human preferences, batched.

`hpsv2` is HPS v2.0 (`HPS_v2_compressed.pt`), `hpsv2.1` is HPS v2.1 (`HPS_v2.1_compressed.pt`): two
different metrics under two names and versions; a checkpoint whose file name says the other version
is refused. The score is what `hpsv2.img_score.score` returns: the cosine of the L2-normalised image
and text features, no logit scale (the HPSv2 README tables print it x100).

The model is open_clip's ViT-H-14 (same state_dict keys and tokenizer ids as hpsv2's vendored copy)
loaded once from the HPS checkpoint (`{'state_dict': ...}`, strict). The preprocessing is hpsv2's own
(its `ResizeMaxSize`: long side to 224 bicubic, zero-pad to square, then OpenAI mean/std), with one
fix: hpsv2 skips the padding when the long side is already 224, which crashes on such non-square
images; here they are padded like every other image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from t2ibench.errors import UserError
from t2ibench.metrics.base import ImageLike, ItemScore, PromptRecord, Scorer
from t2ibench.weights import WeightFile

HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
DEFAULT_ARCH = "ViT-H-14"


def hps_preprocess(image_size, mean=None, std=None):
    """hpsv2's validation transform (resize long side, pad to square, normalise), padding every non-square image."""
    from torchvision.transforms import Compose, ToTensor
    from torchvision.transforms import functional as F

    from t2ibench.compat.hpsv2_turtle import ensure_turtle_importable

    ensure_turtle_importable()
    from hpsv2.src.open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from hpsv2.src.open_clip.transform import MaskAwareNormalize, ResizeMaxSize

    if isinstance(image_size, (list, tuple)):
        if image_size[0] != image_size[1]:
            raise UserError(f"hpsv2: non-square model input {image_size} is not supported")
        image_size = image_size[0]

    def pad_to_square(t):
        h, w = t.shape[-2:]
        if (h, w) == (image_size, image_size):
            return t
        pad_h, pad_w = image_size - h, image_size - w
        return F.pad(t, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)

    return Compose([lambda im: im.convert("RGB"), ToTensor(), ResizeMaxSize(image_size, fill=0), pad_to_square,
                    MaskAwareNormalize(mean=mean or OPENAI_DATASET_MEAN, std=std or OPENAI_DATASET_STD)])


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
        self.preprocess = hps_preprocess(self.model.visual.image_size)
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

        pixels = torch.stack([self.preprocess(im) for im in images]).to(self.device)
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
