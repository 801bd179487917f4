"""Tiny randomly initialised diffusers text-to-image pipelines of every family `--ckpt` takes, built from
small configs the way diffusers' own pipeline tests build them (get_dummy_components), with tokenizers
made offline from a character vocabulary, and saved with `save_pretrained` (the real directory format).

    directory = build_pipeline_dir("sdxl", tmp_path / "sdxl")     # -> tmp_path/sdxl/model_index.json
    pipe = build_pipeline("flux-dev")                           # in memory, eval mode

Families: sd, sdxl, pixart-alpha, pixart-sigma, sd3, flux, flux-dev (guidance-distilled), sana.
Every pipeline makes 16 px images (`RESOLUTION`); outputs are spread (`_spread_`) so images vary
visibly with the seed (random init at these widths gives near-constant images otherwise).
"""

from __future__ import annotations

from pathlib import Path

import torch

RESOLUTION = 16
FAMILIES = ("sd", "sdxl", "pixart-alpha", "pixart-sigma", "sd3", "flux", "flux-dev", "sana")
_CHARS = [chr(c) for c in range(32, 127)]


def clip_tokenizer(max_length: int = 77):
    """A CLIP BPE tokenizer over single characters (no merges): every ASCII prompt tokenises."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _CHARS[1:]:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length, pad_token="<|endoftext|>")


def t5_tokenizer(max_length: int = 512):
    """A T5 (sentencepiece Unigram) tokenizer over single characters, built without any download."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in _CHARS[1:]] + [("\u2581" + c, -1.5) for c in _CHARS[1:]]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def gemma_tokenizer(max_length: int = 64):
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for ch in ["\u2581", *_CHARS[1:]]:
        vocab.setdefault(ch, len(vocab))
    tok = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)
    return tok


def _clip_config(vocab_size: int, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
                          layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size,
                          hidden_act="gelu", projection_dim=32, max_position_embeddings=77, **extra)


def _t5(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2,
                                   relative_attention_num_buckets=8, dropout_rate=0.0))


def _sd_vae(levels: int = 2, latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(8, 16)[:levels] if levels > 1
                         else (8,), latent_channels=latent_channels, layers_per_block=1, norm_num_groups=4 if levels > 1
                         else 1, sample_size=RESOLUTION, **extra)


def _ddpm_betas():
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def build_pipeline(family: str, seed: int = 0):
    """The in-memory pipeline, in eval mode (as `from_pretrained` gives it)."""
    torch.manual_seed(seed)
    pipe = _BUILDERS[family]()
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    _spread_(denoiser, seed)
    return pipe


def build_pipeline_dir(family: str, directory: Path, seed: int = 0) -> Path:
    directory = Path(directory)
    build_pipeline(family, seed).save_pretrained(directory)
    return directory


def _spread_(denoiser, seed: int) -> None:
    """Scale the last projection so the model's output (hence the image) varies with its input."""
    g = torch.Generator().manual_seed(seed + 7)
    last = getattr(denoiser, "conv_out", None) or denoiser.proj_out
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 0.3)


def _sd():
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tok = clip_tokenizer()
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=4)
    return StableDiffusionPipeline(vae=_sd_vae(), text_encoder=CLIPTextModel(_clip_config(len(tok))), tokenizer=tok,
                                   unet=unet, scheduler=DDIMScheduler(clip_sample=False, set_alpha_to_one=False,
                                                                      steps_offset=1, **_ddpm_betas()),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _sdxl():
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = clip_tokenizer()
    # diffusers' test config: pooled (32) + 6 time ids x 8 = 80 inputs to the added embedding
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                                transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
                                cross_attention_dim=64, norm_num_groups=4)
    scheduler = EulerDiscreteScheduler(steps_offset=1, timestep_spacing="leading", **_ddpm_betas())
    return StableDiffusionXLPipeline(vae=_sd_vae(force_upcast=True), text_encoder=CLIPTextModel(_clip_config(len(tok))),
                                     text_encoder_2=CLIPTextModelWithProjection(_clip_config(len(tok))), tokenizer=tok,
                                     tokenizer_2=clip_tokenizer(), unet=unet, scheduler=scheduler)


def _pixart(sigma: bool):
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    tok = t5_tokenizer(max_length=120 if not sigma else 300)
    transformer = PixArtTransformer2DModel(sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8,
                                           num_attention_heads=3, caption_channels=32, in_channels=4,
                                           cross_attention_dim=24, out_channels=8, attention_bias=True,
                                           activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                           norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    # PixArt ships a DPM-Solver config over the linear DDPM betas; the protocol samples it with DDIM
    scheduler = DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    return cls(tokenizer=tok, text_encoder=_t5(len(tok)), vae=_sd_vae(), transformer=transformer, scheduler=scheduler)


def _sd3():
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    tok, tok3 = clip_tokenizer(), t5_tokenizer()
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                        pooled_projection_dim=64, out_channels=4)
    vae = _sd_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=vae, text_encoder=CLIPTextModelWithProjection(_clip_config(len(tok))),
                                    text_encoder_2=CLIPTextModelWithProjection(_clip_config(len(tok))),
                                    text_encoder_3=_t5(len(tok3)), tokenizer=tok, tokenizer_2=clip_tokenizer(),
                                    tokenizer_3=tok3)


def _flux(guidance_embeds: bool):
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel

    tok, tok2 = clip_tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
                                         guidance_embeds=guidance_embeds)
    vae = _sd_vae(latent_channels=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                  scaling_factor=1.5035)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256,
                                                base_shift=0.5, max_shift=1.15)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=CLIPTextModel(_clip_config(len(tok))),
                        tokenizer=tok, text_encoder_2=_t5(len(tok2)), tokenizer_2=tok2, transformer=transformer)


def _sana():
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    tok = gemma_tokenizer()
    transformer = SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_attention_heads=2,
                                         attention_head_dim=4, num_cross_attention_heads=2, cross_attention_head_dim=4,
                                         cross_attention_dim=8, caption_channels=8, sample_size=8)
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                        encoder_block_types=("ResBlock", "EfficientViTBlock"),
                        decoder_block_types=("ResBlock", "EfficientViTBlock"), encoder_block_out_channels=(8, 8),
                        decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)),
                        decoder_qkv_multiscales=((), (5,)), encoder_layers_per_block=(1, 1),
                        decoder_layers_per_block=[1, 1], downsample_block_type="conv", upsample_block_type="interpolate",
                        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407)
    # Sana ships a flow-prediction DPM-Solver config; the protocol samples it with flow-matching Euler
    scheduler = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    text_encoder = Gemma2Model(Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=64,
                                            max_position_embeddings=8192, num_attention_heads=2, num_hidden_layers=1,
                                            num_key_value_heads=2, vocab_size=len(tok), pad_token_id=0, eos_token_id=1,
                                            bos_token_id=2))
    return SanaPipeline(tokenizer=tok, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)


_BUILDERS = {
    "sd": _sd, "sdxl": _sdxl, "pixart-alpha": lambda: _pixart(False), "pixart-sigma": lambda: _pixart(True),
    "sd3": _sd3, "flux": lambda: _flux(False), "flux-dev": lambda: _flux(True), "sana": _sana,
}
