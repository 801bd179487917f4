"""Tiny randomly initialised models of the real architectures, saved in the real on-disk formats, and
small datasets in the three dataset kinds: for the tests and the benchmark, which load them through
the same code as the real weights. Nothing here is used by the commands themselves."""

from __future__ import annotations

import io
import json
from pathlib import Path

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
TOKENIZER_WORDS = ("a photo of the cat dog sitting on red blue green couch table man woman child tree car "
                   "street house with and in two three small large picture painting view").split()


def make_open_clip_dir(path: Path, embed_dim: int = 32, image_size: int = 32, seed: int = 0) -> Path:
    """An open_clip model folder as on the hub (open_clip_config.json + open_clip_model.safetensors)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    model_cfg = {"embed_dim": embed_dim, "quick_gelu": True,
                 "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)}}
    (path / "open_clip_config.json").write_text(json.dumps(config, indent=1))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**{k: v for k, v in model_cfg.items()}, cast_dtype=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    return path


def make_aesthetic_head(path: Path, kind: str = "mlp", dim: int = 32, seed: int = 0) -> Path:
    """An aesthetic head state dict saved with torch.save, keys as upstream (layers.N.* / weight, bias)."""
    import torch

    from t2ibench.data.aesthetic import build_head

    torch.manual_seed(seed)
    head = build_head(kind, dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), path)
    return path


def make_nsfw_dir(path: Path, seed: int = 0) -> Path:
    """A ViTForImageClassification with labels normal/nsfw and its image processor (save_pretrained)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=2, id2label={0: "normal", 1: "nsfw"},
                       label2id={"normal": 0, "nsfw": 1})
    model = ViTForImageClassification(config)
    with torch.no_grad():  # a random head gives probabilities near 0.5; spread them so thresholds bite
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def make_opt_tokenizer(path: Path):
    """A byte-level BPE tokenizer in OPT's format (vocab.json + merges.txt, specials <s> <pad> </s> <unk>),
    trained offline on a few words."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer

    path.mkdir(parents=True, exist_ok=True)
    words = list(TOKENIZER_WORDS)
    texts = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 10
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.save_model(str(path))
    # transformers 5 ignores vocab_file=/merges_file= here (an empty tokenizer): the keywords are vocab/merges
    tok = GPT2Tokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"), bos_token="</s>",
                        eos_token="</s>", unk_token="</s>", pad_token="<pad>")
    if len(tok) < 256:
        raise RuntimeError(f"tiny tokenizer came out empty ({len(tok)} tokens)")
    return tok


def make_blip2_dir(path: Path, seed: int = 0, num_query_tokens: int = 4) -> Path:
    """A BLIP-2 (ViT + Q-Former + OPT) with its Blip2Processor, saved with save_pretrained."""
    import tempfile

    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    with tempfile.TemporaryDirectory() as src:
        tok = make_opt_tokenizer(Path(src))
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                               tokenizer=tok, num_query_tokens=num_query_tokens)
    image_token = tok.convert_tokens_to_ids("<image>")
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            encoder_hidden_size=32),
        text_config=dict(model_type="opt", vocab_size=len(tok) + 4, hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64,
                         bos_token_id=2, eos_token_id=2, pad_token_id=1),
        num_query_tokens=num_query_tokens, image_token_index=image_token)
    torch.manual_seed(seed)
    Blip2ForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------------------------
# images and datasets

def noise_image(seed: int, size=(64, 48)):
    """A smooth random RGB image: distinct seeds give perceptual hashes far apart."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = (rng.random((6, 6, 3)) * 255).astype("uint8")
    return Image.fromarray(small).resize(size, Image.BICUBIC)


def encode(image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_dataset(root: Path, kind: str, shards: list[list[dict]]) -> Path:
    """Write samples ({key, image: bytes|None, ext, caption, json, syn}) as `kind`, one shard per list."""
    root.mkdir(parents=True, exist_ok=True)
    if kind == "webdataset":
        import webdataset as wds

        for i, samples in enumerate(shards):
            with wds.TarWriter(str(root / f"shard-{i:05d}.tar"), encoder=False) as w:
                for s in samples:
                    obj = {"__key__": s["key"]}
                    if s.get("image") is not None:
                        obj[s.get("ext", "png")] = s["image"]
                    if s.get("caption") is not None:
                        obj["txt"] = s["caption"].encode()
                    if s.get("json") is not None:
                        obj["json"] = json.dumps(s["json"]).encode()
                    if s.get("syn") is not None:
                        obj["syn.json"] = json.dumps(s["syn"]).encode()
                    w.write(obj)
    elif kind == "folder":
        for samples in shards:
            for s in samples:
                stem = root / s["key"]
                stem.parent.mkdir(parents=True, exist_ok=True)
                Path(f"{stem}.{s.get('ext', 'png')}").write_bytes(s.get("image") or b"")
                if s.get("caption") is not None:
                    Path(f"{stem}.txt").write_text(s["caption"])
                if s.get("json") is not None:
                    Path(f"{stem}.json").write_text(json.dumps(s["json"]))
                if s.get("syn") is not None:
                    Path(f"{stem}.syn.json").write_text(json.dumps(s["syn"]))
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for i, samples in enumerate(shards):
            table = pa.table({
                "key": [s["key"] for s in samples],
                "image": [s.get("image") for s in samples],
                "caption": [s.get("caption") or (s.get("json") or {}).get("caption") for s in samples],
                "syn_captions": [json.dumps(s["syn"]) if s.get("syn") else None for s in samples],
                **({"aesthetic": [s["json"]["aesthetic"] for s in samples]}
                   if all("aesthetic" in (s.get("json") or {}) for s in samples) else {}),
            }, schema=None)
            pq.write_table(table, root / f"part-{i:05d}.parquet")
    else:
        raise ValueError(kind)
    return root


DEMO_CAPTIONS = {
    "s00": "A dog and two cats sitting on a red couch.",
    "s01": "Photo of a man riding a bicycle down the street.",
    "s03": "A dog and two cats sitting on a red couch.",
    "s10": "Green trees around a small house.",
    "s11": "A tiny icon.",
    "s12": "A man on a bike.",
    "s20": "A panorama banner.",
    "s21": "Painting of a woman holding an umbrella.",
}


def demo_samples() -> tuple[list[list[dict]], dict]:
    """Three shards of samples covering every filter, and what a filter run with min_size=16,
    max_aspect=4, dedup=phash (distance 4) must remove. s01's caption is in a .json record only,
    s22 has no caption, s21 has a synthetic-caption record."""
    png = encode(noise_image(4))
    syn = {"captions": ["a woman with an umbrella", "a painting of a lady", "woman in the rain",
                        "an umbrella", "a portrait"], "scores": [-0.5, -0.6, -0.7, -0.8, -0.9],
           "model": "hand-written", "method": "beam", "version": 1}
    s00 = encode(noise_image(0))
    shards = [
        [{"key": "s00", "image": s00, "ext": "png"},
         {"key": "s01", "image": encode(noise_image(1), "JPEG", quality=95), "ext": "jpg", "caption": None,
          "json": {"caption": DEMO_CAPTIONS["s01"]}},
         {"key": "s02", "image": b"this is not an image", "ext": "jpg"},
         {"key": "s03", "image": s00, "ext": "png"}],
        [{"key": "s10", "image": encode(noise_image(2)), "ext": "png"},
         {"key": "s11", "image": encode(noise_image(3, (8, 8))), "ext": "png"},
         {"key": "s12", "image": encode(noise_image(1, (66, 50)), "JPEG", quality=80), "ext": "jpg"},
         {"key": "s13", "image": png[: len(png) // 2], "ext": "png"}],
        [{"key": "s20", "image": encode(noise_image(5, (200, 20))), "ext": "png"},
         {"key": "s21", "image": encode(noise_image(6)), "ext": "png", "syn": syn},
         {"key": "s22", "image": encode(noise_image(7), "WEBP"), "ext": "webp", "caption": None}],
    ]
    for shard in shards:
        for s in shard:
            s.setdefault("caption", DEMO_CAPTIONS.get(s["key"]))
    expected = {"in": 11, "unreadable": 2, "too_small": 1, "bad_aspect": 1, "duplicate": 2,
                "kept": ["s00", "s01", "s10", "s21", "s22"]}
    return shards, expected
