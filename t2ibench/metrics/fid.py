"""FID with torch-fidelity's InceptionV3 (the TF-FID-compatible `inception-v3-compat` extractor).

The real side is either a folder of real images (`real_images=DIR`) or, for COCO prompt sets, the
COCO val2014 images named by each scored prompt's `meta["coco_image_id"]` under `coco_dir=DIR`
(`COCO_val2014_000000xxxxxx.jpg`, `000000xxxxxx.jpg` or `<id>.jpg`). Its statistics are cached on disk,
keyed by the image list (names, sizes, mtimes), the resize protocol and the Inception weights file.

Resize protocols (part of the version, applied to real and generated images alike):
  * `center-crop-N` (default N=256, the paper's "real images resized to the generation resolution"):
    PIL bicubic resize of the shorter side to N, centre crop NxN, then torch-fidelity's own resize.
  * `pil-bicubic-299` (clean-fid style): PIL bicubic resize of the whole image to 299x299.
  * `torch-fidelity`: images as they are; torch-fidelity's TF1-style bilinear resize to 299 inside
    the extractor (what `torch_fidelity.calculate_metrics` does on a folder).
Images of different sizes are grouped by size into batches, so mixed sizes never crash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.atomic import atomic_open
from t2ibench.errors import UserError
from t2ibench.metrics.base import ImageLike, MetricResult, PromptRecord, Scorer
from t2ibench.weights import WeightFile

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
DEFAULT_RESIZE = "center-crop-256"
FEATURE_LAYER = "2048"


def check_resize(protocol: str) -> str:
    if protocol in ("torch-fidelity", "pil-bicubic-299") or re.fullmatch(r"center-crop-[1-9]\d*", protocol):
        return protocol
    raise UserError(f"unknown FID resize protocol {protocol!r}; use center-crop-N, pil-bicubic-299 or torch-fidelity")


def apply_resize(image, protocol: str):
    """PIL image -> PIL image as the protocol prescribes (before torch-fidelity's own resize to 299)."""
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


def coco_image_path(coco_dir: Path, image_id: Any) -> Path | None:
    i = int(image_id)
    for name in (f"COCO_val2014_{i:012d}.jpg", f"{i:012d}.jpg", f"{i}.jpg", f"COCO_val2014_{i:012d}.png"):
        if (coco_dir / name).is_file():
            return coco_dir / name
    return None


class FID(Scorer):
    name: ClassVar[str] = "fid"
    kind: ClassVar[str] = "distribution"
    higher_is_better: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 32

    @classmethod
    def weight_files(cls, **_: Any) -> list[WeightFile]:
        # Published on GitHub releases, not the hub; "6726825d" is its sha256 prefix (torch.hub convention).
        return [WeightFile("inception", "toshas/torch-fidelity", "weights-inception-2015-12-05-6726825d.pth",
                           revision="v0.2.0", sha256="6726825d", url=INCEPTION_URL)]

    def __init__(self, device: str = "cpu", weights=None, *, real_images: str | Path | None = None,
                 coco_dir: str | Path | None = None, resize: str = DEFAULT_RESIZE,
                 cache_dir: str | Path | None = None, **options: Any):
        super().__init__(device, weights, **options)
        import torch
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )

        self.resize = check_resize(resize)
        self.real_images = Path(real_images) if real_images else None
        self.coco_dir = Path(coco_dir) if coco_dir else None
        if self.real_images is not None and not self.real_images.is_dir():
            raise UserError(f"fid: real image folder {self.real_images} does not exist")
        if self.real_images is None and self.coco_dir is None:
            raise UserError("fid needs real images: --option fid.real_images=DIR, or fid.coco_dir=DIR "
                            "(COCO val2014 images) with a prompt set that has coco_image_id")
        from t2ibench.paths import cache_root

        self.cache_dir = Path(cache_dir).expanduser() / "fid" if cache_dir else cache_root() / "fid"
        path = self.paths["inception"]
        # torch-fidelity unpickles the file with weights_only=False; refuse anything that is not plain tensors.
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"fid: {path} is not a plain state_dict of tensors ({type(exc).__name__})") from None
        self.extractor = FeatureExtractorInceptionV3("inception-v3-compat", [FEATURE_LAYER],
                                                     feature_extractor_weights_path=str(path)).to(device)
        self._weights_id = f"{path.name}:{path.stat().st_size}"
        self._features: list[Any] = []
        self._coco_ids: list[Any] = []

    @classmethod
    def declared_version(cls, resize: str = DEFAULT_RESIZE, **_: Any) -> str:
        from importlib.metadata import version

        return f"{cls.name}/torch-fidelity-{version('torch-fidelity')}:inception-v3-compat/{check_resize(resize)}"

    @property
    def version(self) -> str:
        return self.declared_version(self.resize)

    # -- features --------------------------------------------------------------------------------
    def features(self, images: Sequence[ImageLike], batch_size: int | None = None):
        """(N, 2048) float32 pool features, in input order; same-size images share a batch."""
        import numpy as np
        import torch

        bs = batch_size or self.default_batch_size
        tensors = [torch.from_numpy(np.asarray(apply_resize(im, self.resize), dtype=np.uint8).copy()).permute(2, 0, 1)
                   for im in images]
        by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, t in enumerate(tensors):
            by_size[tuple(t.shape)].append(i)
        out = torch.empty(len(tensors), 2048, dtype=torch.float32)
        with torch.inference_mode():
            for idx in by_size.values():
                for s in range(0, len(idx), bs):
                    chunk = idx[s:s + bs]
                    feats = self.extractor(torch.stack([tensors[i] for i in chunk]).to(self.device))[0]
                    out[chunk] = feats.float().cpu()
        return out

    def update(self, images: Sequence[ImageLike], prompts: Sequence[PromptRecord]) -> None:
        self._features.append(self.features(images))
        self._coco_ids.extend(p.meta.get("coco_image_id") for p in prompts)

    # -- real side ------------------------------------------------------------------------------
    def real_files(self) -> list[Path]:
        from t2ibench.images import list_images

        if self.real_images is not None:
            return list_images(self.real_images)
        if any(i is None for i in self._coco_ids):
            raise UserError("fid: the prompt set has no coco_image_id for every prompt; pass real_images=DIR instead")
        files, missing = [], []
        for i in dict.fromkeys(self._coco_ids):
            p = coco_image_path(self.coco_dir, i)
            (files if p else missing).append(p or i)
        if missing:
            raise UserError(f"fid: {len(missing)} COCO images not found in {self.coco_dir} (e.g. id {missing[0]})")
        return files

    def real_cache_key(self, files: Sequence[Path]) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.version, self._weights_id]).encode())
        for f in files:
            st = f.stat()
            h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:32]

    def real_statistics(self) -> tuple[dict[str, Any], int, int]:
        """(stats, n_real, n_real_skipped), from the cache when the same images were seen before."""
        import numpy as np
        from torch_fidelity.metric_fid import fid_features_to_statistics

        from t2ibench.images import load_image

        files = self.real_files()
        cache = self.cache_dir / f"real-{self.real_cache_key(files)}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return {"mu": z["mu"], "sigma": z["sigma"]}, int(z["n"]), int(z["skipped"])
        feats, skipped = [], 0
        for s in range(0, len(files), 256):  # bounded memory: decode a slice at a time
            images = [load_image(f) for f in files[s:s + 256]]
            skipped += sum(im is None for im in images)
            good = [im for im in images if im is not None]
            if good:
                feats.append(self.features(good))
        import torch

        n = sum(len(f) for f in feats)
        if n < 2:
            raise UserError(f"fid needs at least 2 real images; {n} readable of {len(files)}")
        stats = fid_features_to_statistics(torch.cat(feats))
        with atomic_open(cache, "wb") as f:
            np.savez(f, mu=stats["mu"], sigma=stats["sigma"], n=n, skipped=skipped)
        return stats, n, skipped

    def compute(self) -> MetricResult:
        import torch
        from torch_fidelity.metric_fid import (
            KEY_METRIC_FID,
            fid_features_to_statistics,
            fid_statistics_to_metric,
        )

        n = sum(len(f) for f in self._features)
        if n < 2:
            raise UserError(f"fid needs at least 2 generated images; got {n}")
        features = torch.cat(self._features)
        fake = fid_features_to_statistics(features)
        real, n_real, real_skipped = self.real_statistics()
        value = fid_statistics_to_metric(real, fake, verbose=False)[KEY_METRIC_FID]
        # The interval resamples the generated images against the fixed real statistics (t2ibench.stats).
        from t2ibench.stats import fid_bootstrap

        interval = fid_bootstrap(features.double().numpy(), real["mu"], real["sigma"]).to_dict()
        # kept for `t2ibench compare` (a permutation test over two runs' generated features)
        self.last_features, self.last_real = features.numpy(), (real["mu"], real["sigma"])
        self.reset()  # one score() call is one pass; the scorer can be reused for the next image set
        return MetricResult(metric=self.name, version=self.version, value=float(value), n_items=n,
                            extra={"n_real": n_real, "n_real_skipped": real_skipped, "resize": self.resize,
                                   "interval": interval})

    def reset(self) -> None:
        self._features.clear()
        self._coco_ids.clear()
