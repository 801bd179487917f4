"""TIFA question files: load, validate, group by caption.

The schema is the official TIFA v1.0 one (Yushi-Hu/tifa, `tifa_v1.0/tifa_v1.0_question_answers.json`):
a JSON list of objects with `id` (caption id, matching the text-inputs file), `caption`, `question`,
`choices` (list of strings), `answer` (one of the choices), `element_type`, `element` and optionally
`coco_val_id`. Any file in this schema works, so users can bring their own prompts and questions.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError

# What the official scoring code reads (tifa_score_benchmark); `caption` and `element` are descriptive.
REQUIRED_KEYS = ("id", "question", "choices", "answer", "element_type")
OPTIONAL_STRING_KEYS = ("caption", "element", "coco_val_id")


@dataclass(frozen=True)
class TifaQuestion:
    caption_id: str
    question: str
    choices: tuple[str, ...]
    answer: str
    element_type: str
    element: str = ""
    caption: str = ""


# `git hash-object` of tifa_v1.0/tifa_v1.0_question_answers.json at Yushi-Hu/tifa@8e37050f (the pinned
# commit's tree): a file with this blob id is the official TIFA v1.0 question file.
TIFA_V1_QUESTIONS_GIT_BLOB = "6a563f9c157e5b2a24b9f4936edd3934a8a70add"


def git_blob_sha1(raw: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


@dataclass
class QuestionSet:
    """Questions grouped by caption id, in file order (duplicates kept: the official code scores each)."""

    source: str
    sha256: str
    by_caption: dict[str, list[TifaQuestion]] = field(default_factory=dict)
    official_v1: bool = False  # byte-identical to the pinned TIFA v1.0 question file

    @property
    def n_questions(self) -> int:
        return sum(len(qs) for qs in self.by_caption.values())

    @property
    def n_captions(self) -> int:
        return len(self.by_caption)

    def duplicate_questions(self) -> int:
        """Extra occurrences of a (caption id, question text) pair beyond the first."""
        counts = Counter((q.caption_id, q.question) for qs in self.by_caption.values() for q in qs)
        return sum(n - 1 for n in counts.values())

    def element_types(self) -> list[str]:
        return sorted({q.element_type for qs in self.by_caption.values() for q in qs})


def _entry_error(source: str, index: int, entry: Any, message: str) -> UserError:
    cid = entry.get("id") if isinstance(entry, dict) else None
    where = f"entry {index}" + (f" (id {cid!r})" if cid is not None else "")
    return UserError(f"TIFA question file {source}: {where}: {message}")


def parse_question(entry: Any, index: int, source: str) -> TifaQuestion:
    if not isinstance(entry, dict):
        raise _entry_error(source, index, entry, f"expected an object, got {type(entry).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise _entry_error(source, index, entry, f"missing key(s) {', '.join(missing)} "
                                                 f"(required: {', '.join(REQUIRED_KEYS)})")
    cid = entry["id"]
    if not isinstance(cid, (str, int)) or isinstance(cid, bool) or str(cid) == "":
        raise _entry_error(source, index, entry, "'id' must be a non-empty string")
    for key in ("question", "answer", "element_type"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise _entry_error(source, index, entry, f"{key!r} must be a non-empty string")
    for key in OPTIONAL_STRING_KEYS:
        if key in entry and entry[key] is not None and not isinstance(entry[key], (str, int)):
            raise _entry_error(source, index, entry, f"{key!r} must be a string")
    choices = entry["choices"]
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise _entry_error(source, index, entry, "'choices' must be a non-empty list of strings")
    if entry["answer"] not in choices:
        raise _entry_error(source, index, entry,
                           f"answer {entry['answer']!r} is not one of its choices {choices}")
    return TifaQuestion(caption_id=str(cid), question=entry["question"], choices=tuple(choices),
                        answer=entry["answer"], element_type=entry["element_type"],
                        element=str(entry.get("element") or ""), caption=str(entry.get("caption") or ""))


def parse_questions(data: Any, source: str, sha256: str = "") -> QuestionSet:
    if not isinstance(data, list):
        raise UserError(f"TIFA question file {source}: expected a JSON list of question objects, "
                        f"got {type(data).__name__}")
    if not data:
        raise UserError(f"TIFA question file {source}: contains no questions")
    qset = QuestionSet(source=source, sha256=sha256)
    for i, entry in enumerate(data):
        q = parse_question(entry, i, source)
        qset.by_caption.setdefault(q.caption_id, []).append(q)
    return qset


def load_questions(path: str | Path) -> QuestionSet:
    """Read and validate a TIFA-format question file; every problem is a one-line UserError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"TIFA question file not found: {path}")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"TIFA question file {path}: not valid JSON ({exc})") from None
    qset = parse_questions(data, str(path), hashlib.sha256(raw).hexdigest())
    qset.official_v1 = git_blob_sha1(raw) == TIFA_V1_QUESTIONS_GIT_BLOB
    return qset


def default_questions_path(prompts_dir: str | Path | None = None) -> Path:
    """The pinned TIFA v1.0 question file, through the prompt-set layer (fetched or local)."""
    try:
        from t2ibench.prompts import resolve_file
    except ImportError as exc:
        raise UserError("the TIFA v1.0 question file cannot be resolved (prompt-set layer unavailable: "
                        f"{exc}); pass one with --tifa-questions FILE") from None
    return Path(resolve_file("tifa-v1", "questions", prompts_dir))
