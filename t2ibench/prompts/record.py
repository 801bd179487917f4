"""The prompt record: one prompt of a prompt set, as every scorer and the generator receive it.

It lives here, below `metrics`, so that `prompts` never imports `metrics` (`metrics` imports `prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PromptRecord:
    """One prompt of a prompt set. `meta` carries what a metric needs beyond the text
    (e.g. a COCO image id for FID's real side, TIFA questions for this caption)."""

    id: str
    text: str
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
