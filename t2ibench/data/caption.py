"""`t2ibench data caption`: N synthetic captions per image, ranked by the captioner's confidence.

Captioner: BLIP-2 through transformers (Blip2ForConditionalGeneration + Blip2Processor; default
Salesforce/blip2-opt-2.7b). ``beam`` (default): beam search with ``num_beams >= N`` and
``num_return_sequences = N``; the confidence is transformers' ``sequences_scores`` (sum of token
log-probabilities / length**length_penalty, length_penalty 1). ``sample``: nucleus sampling (top-p 0.9)
N times; the confidence is the mean token log-probability of each sample. Captions are sorted best
first; empty and repeated captions are dropped, so a record may hold fewer than N.

Output (the sidecar format agreed with t2ibench/train/data.py, also in docs/data.md):
``{"captions": [...], "scores": [...], "model": ..., "method": ..., "version": 1}``
- folder: ``<stem>.syn.json`` beside each image, or with ``--out`` a mirrored copy of the folder (images,
  caption sidecars) with the records; resume unit: the image (an existing record is kept unless
  ``--overwrite``).
- webdataset: ``OUT/<shard>.tar`` with every original member plus ``<key>.syn.json``; resume unit: shard.
- parquet: ``OUT/<file>.parquet`` with the original columns plus ``syn_captions`` (JSON text); resume
  unit: file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from t2ibench.data.curation_weights import BLIP2_OPT_2_7B, resolve_model
from t2ibench.data.progress import shard_progress
from t2ibench.data.readers import (
    SYN_COLUMN,
    SYN_EXT,
    SYN_FORMAT_VERSION,
    Shard,
    ShardStats,
    atomic_write_bytes,
    atomic_write_json,
    decode_image,
    open_dataset,
)
from t2ibench.errors import UserError

METHODS = ("beam", "sample")


@dataclass
class CaptionConfig:
    data: str
    out: Path | None = None
    kind: str | None = None
    chunk_size: int = 1000
    weights: str | None = None
    num_captions: int = 5
    method: str = "beam"
    num_beams: int = 5
    max_new_tokens: int = 30
    top_p: float = 0.9
    prompt: str | None = None
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "auto"  # auto = float16 on CUDA, float32 elsewhere
    seed: int = 0
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}")
        if self.num_captions < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise UserError("--num-captions, --batch-size and --max-new-tokens must be >= 1")


class Captioner:
    def __init__(self, model, processor, cfg: CaptionConfig, name: str):
        self.model, self.processor, self.cfg, self.name = model, processor, cfg, name

    @classmethod
    def load(cls, cfg: CaptionConfig) -> "Captioner":
        import torch
        from transformers import Blip2ForConditionalGeneration, Blip2Processor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        path = resolve_model(BLIP2_OPT_2_7B, cfg.weights, "--captioner-weights")
        dtype = {"auto": torch.float16 if cfg.device.startswith("cuda") else torch.float32,
                 "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(cfg.dtype)
        if dtype is None:
            raise UserError("--dtype must be auto, float16, bfloat16 or float32")
        try:
            processor = Blip2Processor.from_pretrained(path)
            model = Blip2ForConditionalGeneration.from_pretrained(path, dtype=dtype).eval().to(cfg.device)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: cannot load the BLIP-2 captioner ({str(exc).splitlines()[0][:200]})") from None
        tok = processor.tokenizer
        # transformers 5 builds an empty tokenizer instead of failing when its files are missing.
        probe = tok("a photo of a cat", add_special_tokens=False).input_ids
        if len(tok) < 100 or not probe or all(i == tok.unk_token_id for i in probe):
            raise UserError(f"{path}: the captioner's tokenizer is empty or broken (tokenizer files missing?)")
        if processor.num_query_tokens is None:
            processor.num_query_tokens = model.config.num_query_tokens
        return cls(model, processor, cfg, cfg.weights or BLIP2_OPT_2_7B.repo_id)

    def caption(self, images) -> list[dict | None]:
        """One ranked record per image (None when the model produced no usable caption)."""
        import torch

        cfg, n = self.cfg, self.cfg.num_captions
        prompt = [cfg.prompt] * len(images) if cfg.prompt else None
        inputs = self.processor(images=images, text=prompt, return_tensors="pt").to(cfg.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        kwargs = dict(max_new_tokens=cfg.max_new_tokens, num_return_sequences=n, output_scores=True,
                      return_dict_in_generate=True)
        if cfg.method == "beam":
            kwargs.update(num_beams=max(cfg.num_beams, n), do_sample=False, length_penalty=1.0)
        else:
            torch.manual_seed(cfg.seed)
            kwargs.update(do_sample=True, top_p=cfg.top_p, top_k=0, num_beams=1)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        steps = len(out.scores)
        generated = out.sequences[:, -steps:] if steps else out.sequences[:, :0]
        if cfg.method == "beam":
            scores = out.sequences_scores.float().cpu().tolist()
        else:
            scores = self._mean_logprob(out, generated)
        texts = self.processor.tokenizer.batch_decode(generated, skip_special_tokens=True)
        records = []
        for i in range(len(images)):
            ranked = sorted(zip(scores[i * n:(i + 1) * n], texts[i * n:(i + 1) * n]), key=lambda x: -x[0])
            caps, caps_scores, seen = [], [], set()
            for score, text in ranked:
                text = " ".join(((cfg.prompt or "") + " " + text).split())
                if text and text not in seen:
                    seen.add(text)
                    caps.append(text)
                    caps_scores.append(round(float(score), 6))
            records.append({"captions": caps, "scores": caps_scores, "model": self.name, "method": cfg.method,
                            "version": SYN_FORMAT_VERSION} if caps else None)
        return records

    def _mean_logprob(self, out, generated) -> list[float]:
        import torch

        logprobs = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        is_eos = torch.isin(generated, torch.tensor([e for e in eos if e is not None], device=generated.device))
        # count tokens up to and including the first end-of-sequence token
        valid = (is_eos.long().cumsum(-1) - is_eos.long()) == 0
        logprobs = torch.where(valid, logprobs.float(), torch.zeros_like(logprobs.float()))
        return (logprobs.sum(-1) / valid.sum(-1).clamp(min=1)).cpu().tolist()


def _batched(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _caption_items(captioner, items, counts, bar) -> list[dict | None]:
    """Records for (sample, image) items; images that do not decode get None and are counted."""
    records: list[dict | None] = [None] * len(items)
    decoded = [(i, decode_image(s.image)) for i, s in enumerate(items)]
    counts["unreadable"] += sum(im is None for _, im in decoded)
    good = [(i, im) for i, im in decoded if im is not None]
    for chunk in _batched(good, captioner.cfg.batch_size):
        for (i, _), rec in zip(chunk, captioner.caption([im for _, im in chunk])):
            records[i] = rec
            counts["captioned" if rec else "no_caption"] += 1
        bar.add_samples(len(chunk))
    return records


def _copy_folder_sample(sample, out: Path) -> None:
    """Mirror an image and its caption sidecars under --out, so the output is a complete dataset."""
    stem = out / sample.key
    stem.parent.mkdir(parents=True, exist_ok=True)
    image = Path(f"{stem}.{sample.ext}")
    if not image.exists() and sample.image is not None:
        atomic_write_bytes(image, sample.image)
    if sample.caption is not None and not Path(f"{stem}.txt").exists():
        atomic_write_bytes(Path(f"{stem}.txt"), sample.caption.encode())
    if sample.record and not Path(f"{stem}.json").exists():
        atomic_write_bytes(Path(f"{stem}.json"), json.dumps(sample.record).encode())


def _folder_shard(shard: Shard, cfg: CaptionConfig, get_captioner, counts, bar) -> None:
    stats, todo, targets = ShardStats(), [], []
    for sample in shard.samples(stats):
        counts["in"] += 1
        if cfg.out is not None:
            _copy_folder_sample(sample, cfg.out)
        target = (cfg.out or shard.source) / f"{sample.key}.{SYN_EXT}"
        if (target.exists() or sample.syn is not None) and not cfg.overwrite:
            if not target.exists():  # a record inside the .json, or a sidecar of the input folder
                atomic_write_bytes(target, json.dumps(sample.syn).encode())
            counts["already_captioned"] += 1
            bar.add_samples()
            continue
        todo.append(sample)
        targets.append(target)
    for items, paths in zip(_batched(todo, cfg.batch_size), _batched(targets, cfg.batch_size)):
        for rec, path in zip(_caption_items(get_captioner(), items, counts, bar), paths):
            if rec is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, json.dumps(rec).encode())


def _tar_shard(shard: Shard, cfg: CaptionConfig, get_captioner, counts, bar) -> dict:
    import webdataset as wds

    stats, samples = ShardStats(), []
    local = Counter()
    out_tar = cfg.out / f"{shard.name}.tar"
    tmp = out_tar.with_name(out_tar.name + ".tmp")
    with wds.TarWriter(str(tmp), encoder=False) as writer:
        # a shard is captioned in windows of samples so memory stays bounded
        def flush():
            need = [s for s in samples if s.syn is None or cfg.overwrite]
            local["already_captioned"] += len(samples) - len(need)
            bar.add_samples(len(samples) - len(need))
            recs = dict(zip(map(id, need), _caption_items(get_captioner(), need, local, bar))) if need else {}
            for s in samples:
                obj = {"__key__": s.key, **s.extra}
                if s.image is not None:
                    obj[s.ext] = s.image
                if s.caption is not None:
                    obj["txt"] = s.caption.encode()
                if s.record:
                    obj["json"] = json.dumps(s.record).encode()
                syn = recs.get(id(s), s.syn)
                if syn is not None:
                    obj[SYN_EXT] = json.dumps(syn).encode()
                writer.write(obj)
            samples.clear()

        for sample in shard.samples(stats):
            local["in"] += 1
            samples.append(sample)
            if len(samples) >= cfg.batch_size * 8:
                flush()
        flush()
    tmp.replace(out_tar)
    counts.update(local)
    return {"shard": shard.name, "counts": dict(local), "bad_shard": stats.bad_shard, "error": stats.error}


def _parquet_file(source: Path, shards: list[Shard], cfg: CaptionConfig, get_captioner, counts, bar) -> list:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad, tables = [], []
    for shard in shards:
        stats = ShardStats()
        samples = list(shard.samples(stats))
        if stats.bad_shard:
            bad.append({"shard": shard.name, "error": stats.error})
            continue
        counts["in"] += len(samples)
        table = pq.ParquetFile(source).read_row_group(shard.members[0])
        need = [s for s in samples if s.syn is None or cfg.overwrite]
        counts["already_captioned"] += len(samples) - len(need)
        recs = dict(zip(map(id, need), _caption_items(get_captioner(), need, counts, bar))) if need else {}
        column = [None if (r := recs.get(id(s), s.syn)) is None else json.dumps(r) for s in samples]
        if SYN_COLUMN in table.column_names:
            table = table.drop_columns([SYN_COLUMN])
        tables.append(table.append_column(SYN_COLUMN, pa.array(column, type=pa.string())))
    if tables:
        tmp = cfg.out / f"{source.name}.tmp"
        pq.write_table(pa.concat_tables(tables, promote_options="default"), tmp)
        os.replace(tmp, cfg.out / source.name)
    return bad


def run_caption(cfg: CaptionConfig) -> dict:
    cfg.check()
    dataset = open_dataset(cfg.data, cfg.kind, cfg.chunk_size)
    if dataset.kind != "folder" and cfg.out is None:
        raise UserError(f"captioning a {dataset.kind} dataset writes a new copy: give --out DIR")
    if cfg.out is not None:
        if cfg.out.resolve() == dataset.root.resolve() and dataset.kind != "folder":
            raise UserError("--out must differ from the input directory (shards are rewritten)")
        cfg.out.mkdir(parents=True, exist_ok=True)
    holder: list[Captioner] = []

    def get_captioner() -> Captioner:  # loaded on first need: a finished run loads nothing
        if not holder:
            holder.append(Captioner.load(cfg))
        return holder[0]

    counts, bad, resumed = Counter(), [], 0
    units = _units(dataset)
    with shard_progress("caption", len(units), cfg.progress) as bar:
        for name, shards in units:
            if dataset.kind == "folder":
                _folder_shard(shards[0], cfg, get_captioner, counts, bar)
            elif dataset.kind == "webdataset":
                marker = cfg.out / "_done" / f"{name}.json"
                if marker.exists() and not cfg.overwrite:
                    result = json.loads(marker.read_text())
                    counts.update(result["counts"])
                    resumed += 1
                else:
                    result = _tar_shard(shards[0], cfg, get_captioner, counts, bar)
                    marker.parent.mkdir(exist_ok=True)
                    atomic_write_json(marker, result)
                if result["bad_shard"]:
                    bad.append({"shard": name, "error": result["error"]})
            else:
                if (cfg.out / name).exists() and not cfg.overwrite:
                    resumed += 1
                else:
                    bad += _parquet_file(shards[0].source, shards, cfg, get_captioner, counts, bar)
            bar.shard_done()
    report = {"input": str(cfg.data), "input_kind": dataset.kind, "output": str(cfg.out or dataset.root),
              "model": cfg.weights or BLIP2_OPT_2_7B.repo_id, "method": cfg.method, "num_captions": cfg.num_captions,
              "counts": dict(counts), "bad_shards": bad, "units": {"total": len(units), "resumed": resumed}}
    if cfg.out is not None:
        atomic_write_json(cfg.out / "caption_report.json", report)
    return report


def _units(dataset) -> list[tuple[str, list[Shard]]]:
    if dataset.kind != "parquet":
        return [(s.name, [s]) for s in dataset.shards]
    by_file: dict[str, list[Shard]] = {}
    for s in dataset.shards:
        by_file.setdefault(s.source.name, []).append(s)
    return list(by_file.items())
