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

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.errors import UserError
from t2ibench.prompts.record import PromptRecord

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


def load_prompts(name_or_path: str, limit: int | None = None):
    """A registered prompt set by name, or a prompt file (.txt/.csv/.tsv/.jsonl/.json): a `PromptSet`."""
    from t2ibench.prompts import load_prompt_set

    return load_prompt_set(name_or_path, limit=limit)
