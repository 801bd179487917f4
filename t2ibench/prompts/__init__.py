"""Prompt sets: registered benchmark sets (manifests in the repo's top-level `prompts/`) and user files.

    load_prompt_set("tifa-v1")                       # fetched at the pinned commit, sha256-checked
    load_prompt_set("coco-10k", local_dir="../shared/data/prompts")
    load_prompt_set("my_prompts.txt", limit=10)      # a user file: .txt, .csv, .tsv, .jsonl, .json
    resolve_file("tifa-v1", "questions")             # one file of a set (TIFA's question file)

`PromptSet.sha256` identifies the prompts: for a registered set the sha256 of its single file (the
manifest's number) or of its files' sha256s (and the draw, for COCO-10K) joined in manifest order; for a user file its own sha256.
`--limit` keeps the first N records and does not change `sha256` (the seed of record i stays i).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.deprecation import moved_names
from t2ibench.errors import UserError
from t2ibench.prompts import formats, sources
from t2ibench.prompts.record import PromptRecord
from t2ibench.prompts.sources import manifest_names, read_manifest

# The paper's prompt set per metric (DESIGN.md): TIFA and HPSv2 on TIFA v1.0, the rest on COCO-10K.
PAPER_PROMPT_SETS: dict[str, str] = {
    "tifa": "tifa-v1", "hpsv2": "tifa-v1", "hpsv2.1": "tifa-v1",
    "imagereward": "coco-10k", "clip": "coco-10k", "clip-x100": "coco-10k", "fid": "coco-10k",
    "vqascore": "genai-bench", "dpg": "dpg-bench", "geneval": "geneval",
}


@dataclass
class PromptSet:
    name: str
    sha256: str
    records: list[PromptRecord]
    source: str  # manifest name, or the user file's name (its sha256 identifies it, not where it lies)
    files: dict[str, str] = field(default_factory=dict)  # file key -> sha256
    total: int = 0  # records before --limit
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the COCO draw

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, index):
        return self.records[index]

    def describe(self) -> dict[str, Any]:
        """What a protocol manifest records about the set."""
        d = {"name": self.name, "sha256": self.sha256, "source": self.source, "n_total": self.total,
             "n_used": len(self.records)}
        if self.files:
            d["files"] = self.files
        d.update(self.extra)
        return d


# `prompts` sits below `metrics` and no longer imports it; the metric's default set is the metric's to say.
__getattr__ = moved_names(__name__, {"default_prompt_set": "t2ibench.metrics:default_prompt_set"})


def is_registered(name: str) -> bool:
    return name in manifest_names()


def _combine(digests: list[str]) -> str:
    return digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()


def load_prompt_set(name_or_path: str | os.PathLike[str], local_dir: str | os.PathLike[str] | None = None,
                    limit: int | None = None) -> PromptSet:
    """A registered set by name, or a user's prompt file by path; `limit` keeps the first N."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if not is_registered(text) and (path.suffix or os.sep in text or path.exists()):
        if not path.is_file():
            raise UserError(f"prompt file {path} does not exist")
        records = formats.user_file(path)
        digest = sources.content_sha256(path.read_bytes())
        pset = PromptSet(name=path.stem, sha256=digest, records=records, source=path.name,
                         files={path.name: digest}, total=len(records))
    else:
        manifest = read_manifest(text)
        paths, digests = {}, {}
        for key, spec in sources.file_specs(manifest).items():
            if key == "questions":  # scorer data, not prompts (see resolve_file)
                continue
            paths[key], digests[key] = sources.resolve_spec(text, spec, local_dir)
        parse = formats.FORMATS.get(manifest["format"])
        if parse is None:
            raise UserError(f"prompt set {text!r}: manifest format {manifest['format']!r} is unknown to this t2ibench")
        records = parse(paths, manifest)
        if manifest.get("count") is not None and len(records) != manifest["count"]:
            raise UserError(f"prompt set {text!r}: read {len(records)} prompts, the manifest says {manifest['count']}")
        extra = {"draw": manifest["draw"]} if "draw" in manifest else {}
        parts = list(digests.values())
        if "draw" in manifest:  # a drawn subset is a different set from the file it is drawn from
            parts.append(json.dumps(manifest["draw"], sort_keys=True))
        pset = PromptSet(name=text, sha256=_combine(parts), records=records, source=text,
                         files=digests, total=len(records), extra=extra)
    if limit is not None:
        pset.records = pset.records[:limit]
    return pset


def resolve_file(set_name: str, file_key: str, local_dir: str | os.PathLike[str] | None = None) -> Path:
    """The verified local path of one file of a registered set (fetched into the cache if needed)."""
    manifest = read_manifest(set_name)
    specs = sources.file_specs(manifest)
    if file_key not in specs:
        raise UserError(f"prompt set {set_name!r} has no file {file_key!r}; it has {', '.join(specs)}")
    path, _ = sources.resolve_spec(set_name, specs[file_key], local_dir)
    return path


def prompts_from_tifa_questions(path: str | os.PathLike[str], limit: int | None = None) -> PromptSet:
    """A custom TIFA question file brings its own prompts: the captions it asks about."""
    if limit is not None and limit < 1:  # a negative limit would slice from the end
        raise UserError(f"--limit must be at least 1, got {limit}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"TIFA question file not found: {path}")
    records = formats.tifa_question_prompts(path)
    digest = sources.content_sha256(path.read_bytes())
    pset = PromptSet(name=f"tifa-questions:{path.stem}", sha256=digest, records=records, source=path.name,
                     files={path.name: digest}, total=len(records))
    if limit is not None:
        pset.records = pset.records[:limit]
    return pset


__all__ = ["PAPER_PROMPT_SETS", "PromptRecord", "PromptSet", "is_registered",
           "load_prompt_set", "manifest_names", "prompts_from_tifa_questions", "read_manifest", "resolve_file"]
