"""Tiny randomly initialised models for the distribution metrics and PickScore, saved the way the
published checkpoints are (transformers `save_pretrained` folders, safetensors), so the scorers load
them through their real loading code."""

from __future__ import annotations

import json
from pathlib import Path


def _spread_(module, seed: int) -> None:
    """Normal init of every parameter so features depend on the input (LayerNorm weights near 1)."""
    from tiny_scorers import _randomise_

    _randomise_(module, seed)


def clip_bpe_files(folder: Path) -> Path:
    """open_clip's shipped CLIP BPE vocabulary written as vocab.json + merges.txt: a CLIPTokenizer on
    these files gives OpenAI CLIP's token ids (49408 entries) without the hub."""
    from open_clip.tokenizer import SimpleTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = SimpleTokenizer()
    # open_clip names the two specials <start_of_text>/<end_of_text>; transformers <|startoftext|>/<|endoftext|>
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(tok, tok): i for tok, i in bpe.encoder.items()}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges))
    return folder


def build_tiny_clip_vision(folder: Path, image_size: int = 56, seed: int = 0) -> Path:
    """CLIPVisionModelWithProjection (CMMD's embedding network) at a tiny width, `image_size` input."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=14, projection_dim=24)
    model = CLIPVisionModelWithProjection(cfg)
    _spread_(model, seed)
    model.save_pretrained(folder)
    return folder


def build_tiny_dinov2(folder: Path, seed: int = 0, hidden: int = 16) -> Path:
    """Dinov2Model (FD-DINOv2's network) at a tiny width. Its position embeddings are for a 98 px
    input (7x7 patches), so the 224 px protocol interpolates them as the real 518 px model does."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    cfg = Dinov2Config(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                       image_size=98, patch_size=14)
    model = Dinov2Model(cfg)
    _spread_(model, seed)
    model.save_pretrained(folder)
    return folder


def build_tiny_pickscore(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """(model dir, processor dir) as PickScore_v1 and the laion ViT-H-14 processor are published:
    a CLIPModel saved with save_pretrained, and a CLIPProcessor (224 px image processor, CLIP BPE
    tokenizer) saved with save_pretrained."""
    import math

    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 224, "patch_size": 32},
        projection_dim=24, logit_scale_init_value=math.log(100.0))
    model = CLIPModel(cfg)
    _spread_(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # the published model's scale (exp = 100)
    model_dir, proc_dir = folder / "PickScore_v1", folder / "processor"
    model.save_pretrained(model_dir)
    bpe = clip_bpe_files(folder / "bpe")
    tokenizer = CLIPTokenizer(vocab=str(bpe / "vocab.json"), merges=str(bpe / "merges.txt"), model_max_length=77)
    if len(tokenizer) < 49408:  # older transformers spell the keywords vocab_file / merges_file
        tokenizer = CLIPTokenizer(str(bpe / "vocab.json"), str(bpe / "merges.txt"), model_max_length=77)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(proc_dir)
    return model_dir, proc_dir
