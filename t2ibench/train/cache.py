"""Precomputed frozen-encoder outputs (`data.cache=true`): the VAE posterior (mean, std) of every image
and the text embedding of every caption it can be trained with (alt-text and top-k synthetic), so a
training step runs the backbone only. The posterior is still SAMPLED every step with the position's
noise (see data.py), so the cached run trains on the same distribution as the uncached one.

    <cache_dir>/meta.json                  fingerprint, item count, skipped items and why
    <cache_dir>/empty.safetensors          embedding of "" (caption dropout)
    <cache_dir>/items/NNNNN/<item>.safetensors

Storage per item: latents 2 x C x h x w, pixel space the uint8 image, text (1 + top_k) x tokens x width
in the frozen encoders' dtype (bf16 when training in bf16 on a GPU). The cache is built once by all
processes together (item i by rank i mod W) and reused while its fingerprint matches.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from t2ibench.train.data import SampleIndex, SampleRules, choose_caption, load_item

BUILD_BATCH = 32


class EmbeddingCache:
    def __init__(self, directory: Path, bad: dict[int, str], empty: torch.Tensor):
        self.directory, self.bad, self.empty = directory, bad, empty

    def item_path(self, item: int) -> Path:
        return self.directory / "items" / f"{item // 1000:05d}" / f"{item:08d}.safetensors"

    def empty_context(self, n: int, device) -> torch.Tensor:
        return self.empty.to(device).expand(n, -1, -1)

    def example(self, item: int, example: dict[str, Any], draws: dict[str, Any], rules: SampleRules) -> dict[str, Any]:
        """The training example of a position from the cache (the same choices as the uncached path)."""
        from safetensors.torch import load_file

        if item in self.bad:
            return {"position": example["position"], "skip": self.bad[item]}
        stored = load_file(str(self.item_path(item)))
        n_syn = sum(1 for k in stored if k.startswith("text_syn"))
        alt = "alt" if "text_alt" in stored else None
        _, which = choose_caption(alt, ["syn"] * n_syn, draws["rng"], rules.alt_text_prob, rules.top_k)
        context = self.empty[0] if draws["drop"] else stored["text_alt" if which < 0 else f"text_syn{which}"]
        example["context"] = context
        if "pixels" in stored:
            example["pixels"] = stored["pixels"].float().div(127.5).sub(1.0)
        else:
            example["latent_mean"], example["latent_std"] = stored["latent_mean"], stored["latent_std"]
        return example

    @classmethod
    def build(cls, directory: Path, index: SampleIndex, rules: SampleRules, model, accelerator) -> "EmbeddingCache":
        from safetensors.torch import load_file, save_file

        fingerprint = _fingerprint(index, rules, model)
        meta_path = directory / "meta.json"
        ready = meta_path.is_file() and json.loads(meta_path.read_text()).get("fingerprint") == fingerprint
        if not ready:
            rank, world = accelerator.process_index, accelerator.num_processes
            if accelerator.is_main_process:
                directory.mkdir(parents=True, exist_ok=True)
                with torch.no_grad():
                    save_file({"empty": model.encode_text([""]).cpu().contiguous()}, str(directory / "empty.safetensors"))
            accelerator.wait_for_everyone()
            bad = _encode_items(cls(directory, {}, torch.zeros(0)), index, rules, model, range(rank, len(index), world))
            (directory / f"bad-rank{rank}.json").write_text(json.dumps(bad))
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                merged = {}
                for r in range(world):
                    merged.update(json.loads((directory / f"bad-rank{r}.json").read_text()))
                tmp = meta_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"fingerprint": fingerprint, "items": len(index), "bad": merged}))
                os.replace(tmp, meta_path)
            accelerator.wait_for_everyone()
        meta = json.loads(meta_path.read_text())
        empty = load_file(str(directory / "empty.safetensors"))["empty"]
        return cls(directory, {int(k): v for k, v in meta["bad"].items()}, empty)


def _encode_items(cache: EmbeddingCache, index: SampleIndex, rules: SampleRules, model, items) -> dict[str, str]:
    """Encode `items` in batches; returns {item: skip reason} for the unusable ones."""
    from safetensors.torch import save_file

    bad, pending = {}, []

    def flush():
        if not pending:
            return
        pixels = torch.stack([p for _, p, _, _ in pending])
        with torch.no_grad():
            if model.vae is not None:
                device = next(model.vae.parameters()).device
                dtype = next(model.vae.parameters()).dtype
                post = model.vae.encode(pixels.to(device, dtype)).latent_dist
                means, stds = post.mean.float().cpu(), post.std.float().cpu()
        for j, (item, px, alt, synthetic) in enumerate(pending):
            texts = ([("text_alt", alt)] if alt else []) + [(f"text_syn{i}", c) for i, c in enumerate(synthetic[:rules.top_k]) if c]
            with torch.no_grad():
                embedded = model.encode_text([t for _, t in texts]).cpu()
            tensors = {name: embedded[i].contiguous() for i, (name, _) in enumerate(texts)}
            if model.vae is None:
                tensors["pixels"] = px.add(1.0).mul(127.5).round().to(torch.uint8).contiguous()
            else:
                tensors["latent_mean"], tensors["latent_std"] = means[j].contiguous(), stds[j].contiguous()
            path = cache.item_path(item)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(path))
        pending.clear()

    for item in items:
        loaded = load_item(index, item, rules)
        if isinstance(loaded, str):
            bad[str(item)] = loaded
            continue
        pending.append((item, *loaded))
        if len(pending) == BUILD_BATCH:
            flush()
    flush()
    return bad


def _fingerprint(index: SampleIndex, rules: SampleRules, model) -> str:
    parts = [index.kind, str(index.root), len(index), index.describe(0)[:200], index.describe(len(index) - 1)[:200],
             rules.resolution, rules.min_side, rules.top_k, json.dumps(model.info.text_encoder, sort_keys=True, default=str),
             json.dumps(model.info.vae, sort_keys=True, default=str), str(next(model.text_encoder.parameters()).dtype)]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
