"""The model weights the data tools use, and how each is found (t2ibench.weights rules).

Order: the explicit ``--*-weights PATH`` flag, ``$T2IBENCH_WEIGHTS/<repo_id>/...``, then the Hugging
Face cache/hub (never when ``HF_HUB_OFFLINE=1``). A missing model stops with one line naming its file.
"""

from __future__ import annotations

from pathlib import Path

from t2ibench.errors import MissingWeightsError
from t2ibench.weights import WeightFile, resolve

# OpenAI CLIP ViT-L/14 in open_clip's hub format (open_clip's own `ViT-L-14`/`openai` pretrained tag
# points at this repo). Loaded with `local-dir:` so a tiny test model takes the same path.
CLIP_VIT_L14 = WeightFile("clip-vit-l-14-openai", "timm/vit_large_patch14_clip_224.openai", "", is_dir=True,
                          allow_patterns=("open_clip_config.json", "open_clip_model.safetensors"))
# LAION "improved aesthetic predictor" (christophschuhmann/improved-aesthetic-predictor,
# sac+logos+ava1-l14-linearMSE.pth): an MLP on L2-normalised ViT-L/14 image embeddings. The hub copy is
# the one TRL's DDPO trainer downloads.
AESTHETIC_MLP = WeightFile("aesthetic-mlp", "trl-lib/ddpo-aesthetic-predictor", "aesthetic-model.pth")
# The original LAION linear head (LAION-AI/aesthetic-predictor on GitHub, sa_0_4_vit_l_14_linear.pth).
# Not on the hub: give the file with --aesthetic-weights or put it under $T2IBENCH_WEIGHTS.
AESTHETIC_LINEAR = WeightFile("aesthetic-linear", "LAION-AI/aesthetic-predictor", "sa_0_4_vit_l_14_linear.pth")
# ViT-base image classifier fine-tuned for normal/nsfw (transformers ViTForImageClassification).
NSFW_VIT = WeightFile("nsfw-vit", "Falconsai/nsfw_image_detection", "", is_dir=True,
                      allow_patterns=("config.json", "model.safetensors", "preprocessor_config.json"))
# BLIP-2 captioner (ViT-g + Q-Former + OPT-2.7B), transformers format.
BLIP2_OPT_2_7B = WeightFile("blip2-opt-2.7b", "Salesforce/blip2-opt-2.7b", "", is_dir=True,
                            allow_patterns=("*.json", "*.safetensors", "*.txt"))

DATA_WEIGHTS: dict[str, WeightFile] = {wf.key: wf for wf in
                                       (CLIP_VIT_L14, AESTHETIC_MLP, AESTHETIC_LINEAR, NSFW_VIT, BLIP2_OPT_2_7B)}
HUB_ONLY_BY_PATH = {AESTHETIC_LINEAR.key}


def resolve_model(wf: WeightFile, explicit: str | Path | None, flag: str) -> Path:
    """Local path of `wf`; on a miss, one line naming the file and the flag that points at it."""
    if explicit is not None and Path(explicit).expanduser().exists():
        return Path(explicit).expanduser()
    try:
        return resolve(wf, Path(explicit) if explicit else None,
                       download=False if wf.key in HUB_ONLY_BY_PATH else None)
    except MissingWeightsError as exc:
        raise MissingWeightsError(f"{wf.key} model: {exc}; or pass {flag} PATH") from None
