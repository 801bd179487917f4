"""Image features for the distribution metrics, computed once and cached on disk.

An *extractor* is a registered (network, checkpoint, resize protocol); its `cache_id` names all three
plus the weights file, so features of different extractors never mix. FID, KID and precision/recall
read `inception` features, CMMD reads `clip-vit-l14-336`, FD-DINOv2 reads `dinov2-vit-l14`.

The cache lives under `<cache dir>/features/<cache_id>/`:
  * `items/<k[:2]>/<k>.npy`: one image's feature vector, keyed by the sha256 of its decoded RGB pixels,
    so the same image gives a hit whichever folder or run it comes from;
  * `lists/<d>.npy`: the stacked features of a list of files, keyed by their names, sizes and mtimes,
    so a real-image folder seen before is not even decoded again.
Entries are written atomically; concurrent writers of the same entry write the same bytes, so a
cache directory can be shared by a cluster (`t2ibench features build` fills it ahead of time).

Models load lazily, only when some image misses the cache, and are shared by the scorers alive at
the same time (FID, KID and precision/recall share one Inception). `EXTRACTED` counts the images each extractor actually ran on.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from t2ibench.atomic import atomic_open
from t2ibench.errors import UserError
from t2ibench.weights import WeightFile

# extractor name -> number of images it has encoded in this process (a cache hit adds nothing)
EXTRACTED: Counter[str] = Counter()

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_RESIZES = "center-crop-N, pil-bicubic-299 or torch-fidelity"
DEFAULT_INCEPTION_RESIZE = "center-crop-256"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered feature extractor: what it runs, from which weights, after which resize."""

    name: str
    network: str  # what the version string names
    weights: WeightFile
    resizes: tuple[str, ...]  # protocols it accepts; the first is the default
    dim: int
    doc: str = ""

    def check_resize(self, protocol: str | None) -> str:
        protocol = protocol or self.resizes[0]
        if protocol in self.resizes:
            return protocol
        if self.name == "inception" and re.fullmatch(r"center-crop-[1-9]\d*", protocol):
            return protocol
        accepted = INCEPTION_RESIZES if self.name == "inception" else ", ".join(self.resizes)
        raise UserError(f"unknown {self.name} resize protocol {protocol!r}; use {accepted}")


EXTRACTORS: dict[str, ExtractorSpec] = {
    "inception": ExtractorSpec(
        "inception", "torch-fidelity:inception-v3-compat",
        # Published on GitHub releases, not the hub; "6726825d" is its sha256 prefix (torch.hub convention).
        WeightFile("inception", "toshas/torch-fidelity", "weights-inception-2015-12-05-6726825d.pth",
                   revision="v0.2.0", sha256="6726825d", url=INCEPTION_URL),
        (DEFAULT_INCEPTION_RESIZE, "pil-bicubic-299", "torch-fidelity"), 2048,
        "torch-fidelity's TF-FID InceptionV3, 2048-d pool features"),
    "clip-vit-l14-336": ExtractorSpec(
        "clip-vit-l14-336", "transformers:CLIPVisionModelWithProjection",
        WeightFile("clip-vit-l14-336", "openai/clip-vit-large-patch14-336", "clip-vit-large-patch14-336",
                   is_dir=True, allow_patterns=("config.json", "*.safetensors")),
        ("center-crop-pil-bicubic",), 768,
        "OpenAI CLIP ViT-L/14@336 image embeddings, L2-normalised (CMMD's embedding)"),
    "dinov2-vit-l14": ExtractorSpec(
        "dinov2-vit-l14", "transformers:Dinov2Model",
        WeightFile("dinov2-vit-l14", "facebook/dinov2-large", "dinov2-large", is_dir=True,
                   allow_patterns=("config.json", "*.safetensors")),
        ("resize-bicubic-224",), 1024,
        "DINOv2 ViT-L/14 CLS token after the final norm (dgm-eval's DINOv2 representation)"),
}


def extractor_spec(name: str) -> ExtractorSpec:
    if name not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name]


# -- preprocessing ---------------------------------------------------------------------------------

def inception_resize(image, protocol: str):
    """PIL image -> PIL image as the Inception protocol prescribes (before torch-fidelity's own resize
    to 299): `center-crop-N` (shorter side to N bicubic, centre crop), `pil-bicubic-299` (clean-fid
    style), `torch-fidelity` (as is)."""
    from PIL import Image

    image = image.convert("RGB")
    if protocol == "pil-bicubic-299":
        return image.resize((299, 299), Image.BICUBIC)
    if protocol.startswith("center-crop-"):
        n = int(protocol.rsplit("-", 1)[1])
        w, h = image.size
        scale = n / min(w, h)
        if (w, h) != (n, n):
            rw, rh = max(n, round(w * scale)), max(n, round(h * scale))
            image = image.resize((rw, rh), Image.BICUBIC)
            left, top = (rw - n) // 2, (rh - n) // 2
            image = image.crop((left, top, left + n, top + n))
    return image


def center_crop_resize(image, size: int):
    """CMMD's reader: the largest centred square, then PIL bicubic (antialiased) to size x size."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), resample=Image.BICUBIC)


def _normalised(arrays, mean, std):
    import numpy as np
    import torch

    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# -- the loaded networks -----------------------------------------------------------------------------

class Extractor:
    """A loaded network: `prepare` turns PIL images into model inputs (same-size groups), `encode`
    runs a batch. Subclasses hold one of the registered networks."""

    def __init__(self, spec: ExtractorSpec, path: Path, resize: str, device: str):
        self.spec, self.path, self.resize, self.device = spec, path, resize, device

    def prepare(self, image) -> Any:
        raise NotImplementedError

    def encode(self, batch) -> Any:
        raise NotImplementedError

    def __call__(self, images: Sequence[Any], batch_size: int) -> Any:
        """(N, dim) float32 features in input order; images of one input size share a batch."""
        import torch

        from t2ibench.metrics.base import map_images

        inputs = map_images(self.prepare, list(images))
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, t in enumerate(inputs):
            by_shape[tuple(t.shape)].append(i)
        rows: list[Any] = [None] * len(inputs)
        with torch.inference_mode():
            for idx in by_shape.values():
                for s in range(0, len(idx), batch_size):
                    chunk = idx[s:s + batch_size]
                    feats = self.encode(torch.stack([inputs[i] for i in chunk]).to(self.device)).float().cpu()
                    for i, f in zip(chunk, feats):
                        rows[i] = f
        EXTRACTED[self.spec.name] += len(inputs)
        return torch.stack(rows)


class InceptionExtractor(Extractor):
    def __init__(self, spec, path, resize, device):
        super().__init__(spec, path, resize, device)
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )

        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                               feature_extractor_weights_path=str(path)).to(device)

    def prepare(self, image):
        import numpy as np
        import torch

        arr = np.asarray(inception_resize(image, self.resize), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)  # uint8 CHW, torch-fidelity resizes to 299

    def encode(self, batch):
        return self.net(batch)[0]


class ClipExtractor(Extractor):
    def __init__(self, spec, path, resize, device):
        super().__init__(spec, path, resize, device)
        from transformers import CLIPVisionModelWithProjection

        self.model = _from_pretrained(CLIPVisionModelWithProjection, path, spec).to(device).eval()
        self.size = int(self.model.config.image_size)

    def prepare(self, image):
        import numpy as np

        return _normalised([np.asarray(center_crop_resize(image, self.size))], CLIP_MEAN, CLIP_STD)[0]

    def encode(self, batch):
        import torch.nn.functional as F

        return F.normalize(self.model(pixel_values=batch).image_embeds.float(), dim=-1)


class Dinov2Extractor(Extractor):
    def __init__(self, spec, path, resize, device):
        super().__init__(spec, path, resize, device)
        from transformers import Dinov2Model

        self.model = _from_pretrained(Dinov2Model, path, spec).to(device).eval()

    def prepare(self, image):
        import numpy as np
        from PIL import Image

        # dgm-eval's default: torchvision Resize((224, 224), BICUBIC) on the PIL image (= PIL bicubic), no crop.
        return _normalised([np.asarray(image.convert("RGB").resize((224, 224), Image.BICUBIC))],
                           IMAGENET_MEAN, IMAGENET_STD)[0]

    def encode(self, batch):
        return self.model(pixel_values=batch).pooler_output  # layernorm(last_hidden_state)[:, 0]


def check_weights(spec: ExtractorSpec, path: Path) -> None:
    """Refuse unusable weights when a scorer is built, before any image is read (models load lazily)."""
    if spec.weights.is_dir:
        if not (Path(path) / "config.json").is_file():
            raise UserError(f"{path} is not a transformers model folder (no config.json) for {spec.name}")
        return
    import torch

    # torch-fidelity unpickles the file with weights_only=False; refuse anything but plain tensors.
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not plain tensors"
        raise UserError(f"{path} is not a plain state_dict of tensors ({type(exc).__name__})") from None


def _from_pretrained(cls, path: Path, spec: ExtractorSpec):
    try:
        return cls.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} does not load as {cls.__name__}: {str(exc).splitlines()[0]}") from None


LOADERS: dict[str, Callable[..., Extractor]] = {
    "inception": InceptionExtractor, "clip-vit-l14-336": ClipExtractor, "dinov2-vit-l14": Dinov2Extractor,
}
# Loaded networks, shared by the scorers alive at the same time (FID, KID and precision/recall built
# together share one Inception) and freed with the last of them: weak references, no leak across metrics.
_LOADED: weakref.WeakValueDictionary[tuple[str, str, str, str], Extractor] = weakref.WeakValueDictionary()


def weights_id(path: Path) -> str:
    """Names the weights by file names and sizes (hashing gigabytes on every run would cost more than
    it protects); a transformers folder adds its config.json."""
    path = Path(path)
    if path.is_file():
        return f"{path.name}-{path.stat().st_size}"
    parts = [f"{p.name}:{p.stat().st_size}" for p in sorted(path.iterdir()) if p.is_file()
             and p.suffix in (".safetensors", ".bin", ".json")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# -- the cache ------------------------------------------------------------------------------------

def image_key(image) -> str:
    """sha256 of the decoded RGB pixels and size: the same image has the same key wherever it lives."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    h = hashlib.sha256(f"{image.size[0]}x{image.size[1]}\0".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def files_key(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = Path(f).stat()
        h.update(f"{Path(f).name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


@dataclass
class FeatureSource:
    """Features of one extractor through the cache. Build with `feature_source(...)`."""

    spec: ExtractorSpec
    path: Path
    resize: str
    device: str
    root: Path
    batch_size: int = 32
    _net: Extractor | None = field(default=None, repr=False)

    @cached_property
    def cache_id(self) -> str:
        return f"{self.spec.name}--{self.resize}--{weights_id(self.path)}"

    @cached_property
    def folder(self) -> Path:
        return self.root / "features" / self.cache_id

    def extractor(self) -> Extractor:
        if self._net is None:
            key = (self.spec.name, str(self.path), self.resize, self.device)
            net = _LOADED.get(key)
            if net is None:
                net = _LOADED[key] = LOADERS[self.spec.name](self.spec, self.path, self.resize, self.device)
            self._net = net
        return self._net

    def _item_path(self, key: str) -> Path:
        return self.folder / "items" / key[:2] / f"{key}.npy"

    def of_images(self, images: Sequence[Any]):
        """(N, dim) float32 features of in-memory PIL images, extracting only the ones not cached."""
        import numpy as np
        import torch

        keys = [image_key(im) for im in images]
        rows: list[Any] = [None] * len(images)
        missing: dict[str, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            if k not in missing:
                try:
                    rows[i] = torch.from_numpy(np.load(self._item_path(k)))
                    continue
                except (OSError, ValueError):
                    pass
            missing[k].append(i)
        if missing:
            feats = self.extractor()([images[idx[0]] for idx in missing.values()], self.batch_size)
            for (k, idx), f in zip(missing.items(), feats):
                for i in idx:
                    rows[i] = f
                with atomic_open(self._item_path(k), "wb") as fh:
                    np.save(fh, f.numpy())
        return torch.stack(rows) if rows else torch.empty(0, self.spec.dim)

    def of_files(self, files: Sequence[Path], chunk: int = 256):
        """(features of the readable files, number unreadable); the whole list is cached too."""
        import numpy as np
        import torch

        from t2ibench.images import load_image

        listed = self.folder / "lists" / f"{files_key(files)}.npz"
        if listed.is_file():
            with np.load(listed) as z:
                return torch.from_numpy(z["features"]), int(z["skipped"])
        feats, skipped = [], 0
        for s in range(0, len(files), chunk):  # bounded memory: decode a slice at a time
            images = [load_image(f) for f in files[s:s + chunk]]
            skipped += sum(im is None for im in images)
            good = [im for im in images if im is not None]
            if good:
                feats.append(self.of_images(good))
        out = torch.cat(feats) if feats else torch.empty(0, self.spec.dim)
        with atomic_open(listed, "wb") as fh:
            np.savez(fh, features=out.numpy(), skipped=skipped, files=json.dumps([Path(f).name for f in files]))
        return out, skipped


def feature_source(name: str, path: Path, *, resize: str | None = None, device: str = "cpu",
                   cache_dir: Path | str | None = None, batch_size: int = 32) -> FeatureSource:
    from t2ibench.paths import cache_root

    spec = extractor_spec(name)
    check_weights(spec, Path(path))
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    return FeatureSource(spec, Path(path), spec.check_resize(resize), device, root, batch_size)
