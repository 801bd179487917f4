"""Tiny randomly initialised text-to-image models in the real formats, for generation/eval tests.

* `tiny_model(vae=False)`: a registered UNet variant (SDXL topology) scaled down, an open_clip text
  tower at width 16, pixel space (16x16) or a 2-level AutoencoderKL (16x16 pixels, 8x8 latents);
  save with `.save(dir)` to get a real t2ibench checkpoint.
* `tiny_sd_pipeline_dir(dir)`: a diffusers StableDiffusionPipeline directory (UNet, AutoencoderKL,
  CLIPTextModel + CLIPTokenizer with a small vocabulary, DDIM scheduler).
"""

from __future__ import annotations

import json
from pathlib import Path

TEXT_WIDTH = 16


def tiny_text_encoder(width: int = TEXT_WIDTH, seed: int = 0):
    import torch

    from t2ibench.model import OpenClipTextEncoder

    torch.manual_seed(seed)
    return OpenClipTextEncoder("tiny", {"context_length": 77, "vocab_size": 49408, "width": width, "heads": 2,
                                        "layers": 2}, width)


def tiny_vae(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                         layers_per_block=1, norm_num_groups=4, sample_size=16, scaling_factor=0.5)


def tiny_spec(in_channels: int, sample_size: int, context_dim: int = TEXT_WIDTH):
    from t2ibench.variants import get_variant

    return get_variant("sdxl").scaled(channels=8, channel_mult=(1, 2), res_blocks=1, transformer_depth=(0, 1),
                                      norm_groups=4, head_dim=8, in_channels=in_channels, sample_size=sample_size,
                                      context_dim=context_dim)


def tiny_model(vae: bool = False, seed: int = 0):
    """A TextToImageModel with random weights: 16x16 images, pixel space or a tiny VAE."""
    import torch

    from t2ibench.model import build_model

    te = tiny_text_encoder(seed=seed)
    autoencoder = tiny_vae(seed) if vae else None
    spec = tiny_spec(4 if vae else 3, 8 if vae else 16)
    torch.manual_seed(seed + 1)
    model = build_model(spec, text_encoder=te, vae=autoencoder, resolution=16)
    _spread_(model.backbone, seed)
    return model


def _spread_(module, seed: int) -> None:
    """diffusers zero-initialises nothing that would make outputs constant, but its default init gives
    tiny outputs at these widths; scale the output conv so images vary visibly with prompt and seed."""
    import torch

    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        conv = module.conv_out
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.2)


def tiny_sd_pipeline_dir(directory: Path, seed: int = 0) -> Path:
    """A StableDiffusionPipeline saved with save_pretrained (the real diffusers directory format)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory = Path(directory)
    tok_dir = directory.parent / f".{directory.name}-tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    # a byte-level BPE vocabulary of single characters: every prompt tokenises, no merges needed
    chars = [chr(c) for c in range(33, 127)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=TEXT_WIDTH, intermediate_size=32,
                                                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1))
    spec = tiny_spec(4, 8)
    unet = UNet2DConditionModel(**spec.diffusers_config())
    _spread_(unet, seed)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=tiny_vae(seed), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(directory)
    return directory


def write_question_file(path: Path, captions: dict[str, str]) -> Path:
    """A TIFA-format question file in the demo's shapes-world templates: two questions per caption."""
    rows = []
    for cid, caption in captions.items():
        for q, a in (("is there a circle?", "yes"), ("is there a red square?", "no")):
            rows.append({"id": cid, "caption": caption, "question": q, "choices": ["yes", "no"], "answer": a,
                         "element_type": "object", "element": "shape"})
    path.write_text(json.dumps(rows))
    return path
