"""Reading a folder of images and pairing it with a prompt set.

Naming convention (`t2ibench eval --images DIR`):
  * `<prompt id>.<ext>` (e.g. `coco_000123.png`): matched to the prompt with that id; or
  * `<index>.<ext>` with a zero-padded or plain integer index (e.g. `00000.png`): matched to the
    prompt at that position of the prompt set (0-based), used when the names are not prompt ids.
Extensions: png, jpg, jpeg, webp, bmp. Other files are ignored. Prompts that have no image are not
scored (their count is reported); an image that matches no prompt is an error, because it means the
folder and the prompt set do not belong together.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError
from t2ibench.metrics.base import PromptRecord

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def list_images(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist or is not a directory")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def load_image(path: Path | str):
    """The image as RGB PIL, fully decoded; None when it cannot be read (the caller counts it)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:  # truncated, not an image, permission: all mean "unreadable"
        log.warning("skipping unreadable image %s (%s)", path, type(exc).__name__)
        return None


@dataclass
class ImageMatch:
    """Images paired with their prompts, in prompt-set order."""

    paths: list[Path]
    prompts: list[PromptRecord]
    by: str  # "id" or "index"
    prompts_without_image: int = 0
    unmatched_images: list[str] = field(default_factory=list)


def match_images(folder: Path | str, prompts: Sequence[PromptRecord]) -> ImageMatch:
    """Pair the images of `folder` with `prompts` by prompt id, else by integer index."""
    files = list_images(folder)
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_EXTS)}) in {folder}")
    if not prompts:
        raise UserError("the prompt set is empty")
    by_stem = {p.stem: p for p in files}
    ids = {str(p.id): i for i, p in enumerate(prompts)}
    if all(stem in ids for stem in by_stem):
        order = sorted(by_stem, key=lambda s: ids[s])
        pairs = [(by_stem[s], prompts[ids[s]]) for s in order]
        by = "id"
    elif all(stem.isdigit() for stem in by_stem):
        too_far = [s for s in by_stem if int(s) >= len(prompts)]
        if too_far:
            raise UserError(f"{len(too_far)} image(s) in {folder} have an index beyond the {len(prompts)} prompts "
                            f"(e.g. {by_stem[sorted(too_far)[0]].name}); is this the right prompt set?")
        order = sorted(by_stem, key=int)
        if len({int(s) for s in order}) != len(order):
            raise UserError(f"two images in {folder} have the same index (e.g. 0.png and 00000.png)")
        pairs = [(by_stem[s], prompts[int(s)]) for s in order]
        by = "index"
    else:
        strays = sorted(s for s in by_stem if s not in ids)
        raise UserError(
            f"{len(strays)} of {len(files)} images in {folder} match no prompt id (e.g. {by_stem[strays[0]].name}); "
            f"name images <prompt id>.png or <index>.png (00000.png = first prompt)")
    return ImageMatch(paths=[p for p, _ in pairs], prompts=[r for _, r in pairs], by=by,
                      prompts_without_image=len(prompts) - len(pairs))


# -- a minimal prompt-file reader (used when t2ibench.prompts is not available) --------------------

_TEXT_KEYS = ("prompt", "text", "caption")
_ID_KEYS = ("id", "prompt_id", "key")


def _record(i: int, row: dict[str, Any]) -> PromptRecord:
    text = next((row[k] for k in _TEXT_KEYS if row.get(k) not in (None, "")), None)
    if text is None:
        raise UserError(f"prompt record {i} has none of the fields {', '.join(_TEXT_KEYS)}")
    pid = next((row[k] for k in _ID_KEYS if row.get(k) not in (None, "")), None)
    meta = {k: v for k, v in row.items() if k not in _TEXT_KEYS + _ID_KEYS + ("category",)}
    if "image_id" in meta and "coco_image_id" not in meta:
        meta["coco_image_id"] = meta["image_id"]
    return PromptRecord(id=str(pid) if pid is not None else f"{i:05d}", text=str(text),
                        category=row.get("category") or None, meta=meta)


def read_prompt_file(path: Path | str, limit: int | None = None) -> list[PromptRecord]:
    """Prompts from a .txt (one per line), .csv/.tsv (a prompt/text/caption column), .jsonl or .json file.

    Records without an id get their 0-based index, zero-padded to 5 digits, as id.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file {path} not found")
    suffix = path.suffix.lower()
    rows: list[dict[str, Any]]
    try:
        if suffix == ".txt":
            rows = [{"prompt": line.strip()} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data if isinstance(data, list) else [dict(v, id=k) if isinstance(v, dict) else {"id": k, "prompt": v}
                                                        for k, v in data.items()]
            rows = [r if isinstance(r, dict) else {"prompt": r} for r in rows]
        else:
            raise UserError(f"unsupported prompt file {path.name}: use .txt, .csv, .tsv, .jsonl or .json")
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"cannot parse prompt file {path}: {exc}") from None
    records = [_record(i, row) for i, row in enumerate(rows)]
    return records[:limit] if limit else records


def load_prompts(name_or_path: str, limit: int | None = None) -> list[PromptRecord]:
    """A named prompt set (via t2ibench.prompts when present) or a prompt file."""
    if Path(name_or_path).is_file():
        try:
            from t2ibench.prompts import load_prompt_set
        except ImportError:
            return read_prompt_file(name_or_path, limit=limit)
        return list(load_prompt_set(name_or_path, limit=limit))
    try:
        from t2ibench.prompts import load_prompt_set
    except ImportError:
        raise UserError(f"prompt file {name_or_path} not found (named prompt sets need t2ibench.prompts)") from None
    return list(load_prompt_set(name_or_path, limit=limit))
