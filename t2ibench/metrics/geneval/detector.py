"""GenEval's perception models: an instance detector and the CLIP colour classifier.

The official detector is mmdetection's Mask2Former Swin-S (`mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco`).
mmdet needs mmcv, which has no wheel for this project's torch (2.13) on Python 3.11 and does not build
here, so the detector offered is the transformers port of the same architecture trained on COCO
instances (`facebook/mask2former-swin-small-coco-instance`): a different checkpoint and post-processing,
hence a differently named version (`hf-mask2former-swin-s`). Numbers from it are not the paper's.

Colour: as the official `color_classification` (evaluate_images.py lines 109-127 at af4902f2): each kept
object is cut out with its mask over a #999 grey background, cropped to its box, and classified among 10
colours by zero-shot open_clip ViT-L/14 (openai) with the official three templates (text embeddings
L2-normalised, averaged over templates, normalised again; logits 100 * cos; clip_benchmark's
`zero_shot_classifier` / `run_classification`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.metrics.geneval.rules import COLORS, Detection
from t2ibench.weights import WeightFile

# evaluation/object_names.txt at af4902f2: the 80 COCO thing classes in COCO order, GenEval's spelling.
OBJECT_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
COLOR_TEMPLATES = ("a photo of a {{c}} {cls}", "a photo of a {{c}}-colored {cls}", "a photo of a {{c}} object")
CROP_BACKGROUND = "#999"


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    repo_id: str
    official: bool


DETECTORS: dict[str, DetectorSpec] = {
    "hf-mask2former-swin-s": DetectorSpec("hf-mask2former-swin-s", "facebook/mask2former-swin-small-coco-instance",
                                          official=False),
}
DEFAULT_DETECTOR = "hf-mask2former-swin-s"


def detector_weight(name: str) -> WeightFile:
    spec = DETECTORS[name]
    return WeightFile("detector", spec.repo_id, spec.repo_id.split("/")[-1], is_dir=True,
                      allow_patterns=("*.json", "*.safetensors"))


def mask_box(mask) -> tuple[float, float, float, float]:
    """Box of a binary mask, mmdet's `mask2bbox` convention (x2, y2 one past the last pixel)."""
    import numpy as np

    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


class Mask2FormerDetector:
    """transformers Mask2Former (COCO instances) -> per GenEval class name, every candidate instance."""

    # All candidates go to the GenEval rules, which apply their own confidence thresholds.
    candidate_threshold: ClassVar[float] = 0.0

    def __init__(self, path: Path, device: str = "cpu"):
        import torch
        from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

        self.processor = AutoImageProcessor.from_pretrained(str(path))
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(str(path)).to(device).eval()
        self.device = device
        if self.model.config.num_labels != len(OBJECT_NAMES):
            raise ValueError(f"detector at {path} has {self.model.config.num_labels} classes, GenEval needs "
                             f"the {len(OBJECT_NAMES)} COCO thing classes")
        self._torch = torch

    def detect(self, images: Sequence[Any]) -> list[dict[str, list[Detection]]]:
        torch = self._torch
        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        sizes = [(im.height, im.width) for im in images]
        results = self.processor.post_process_instance_segmentation(
            outputs, threshold=self.candidate_threshold, target_sizes=sizes, return_binary_maps=True)
        out = []
        for res in results:
            per_class: dict[str, list[Detection]] = {}
            maps = res["segmentation"]
            for k, seg in enumerate(res["segments_info"]):
                mask = maps[k].cpu().numpy().astype(bool) if maps is not None and len(maps) else None
                if mask is None or not mask.any():
                    continue
                per_class.setdefault(OBJECT_NAMES[seg["label_id"]], []).append(
                    Detection(box=mask_box(mask), score=float(seg["score"]), mask=mask))
            out.append(per_class)
        return out


class ColorClassifier:
    """Zero-shot colour of detected objects with open_clip, as the official code does."""

    def __init__(self, path: Path, arch: str, quick_gelu: bool, device: str = "cpu"):
        import open_clip
        import torch

        self.model, _, self.transform = open_clip.create_model_and_transforms(
            arch, pretrained=str(path), force_quick_gelu=quick_gelu, device=torch.device(device))
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.device = device
        self._heads: dict[str, Any] = {}

    def autocast(self):
        """The official run classifies under CUDA autocast (clip_benchmark's `amp=True`); on CPU, float32."""
        import torch

        return torch.autocast("cuda", enabled=str(self.device).startswith("cuda"))

    def head(self, classname: str):
        import torch
        import torch.nn.functional as F

        if classname not in self._heads:
            templates = [t.format(cls=classname) for t in COLOR_TEMPLATES]
            cols = []
            with torch.inference_mode(), self.autocast():
                for color in COLORS:
                    tokens = self.tokenizer([t.format(c=color) for t in templates]).to(self.device)
                    emb = F.normalize(self.model.encode_text(tokens), dim=-1).mean(dim=0)
                    cols.append(emb / emb.norm())
            self._heads[classname] = torch.stack(cols, dim=1)
        return self._heads[classname]

    def crops(self, image, objects: Sequence[Detection]) -> list[Any]:
        from PIL import Image

        image = image.convert("RGB")
        blank = Image.new("RGB", image.size, color=CROP_BACKGROUND)
        out = []
        for obj in objects:
            im = image
            if obj.mask is not None:
                im = Image.composite(image, blank, Image.fromarray(obj.mask))
            out.append(im.crop(tuple(obj.box[:4])))
        return out

    def colors(self, image, objects: Sequence[Detection], classname: str) -> list[str]:
        import torch
        import torch.nn.functional as F

        if not objects:
            return []
        pixels = torch.stack([self.transform(c) for c in self.crops(image, objects)]).to(self.device)
        with torch.inference_mode(), self.autocast():
            feats = F.normalize(self.model.encode_image(pixels), dim=-1)
            logits = 100.0 * feats @ self.head(classname)
        return [COLORS[i] for i in logits.argmax(1).tolist()]
