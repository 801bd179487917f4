"""K, the number of images per prompt, against a metric's official protocol (GenEval and DPG-Bench score 4).

K is the count declared by the run's protocol when it has one, else how often each prompt id occurs among
the records (1 when each occurs once). `policy="official"` rejects another K with one line before any
model loads; `policy="any"` accepts it, and the scorer records `k=<K>` in its version.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from t2ibench.errors import UserError
from t2ibench.metrics.base import PromptRecord

K_POLICIES = ("official", "any")


def count_images_per_prompt(records: Sequence[PromptRecord], declared: int | None = None) -> int:
    """K: the declared count, else how often each prompt id occurs (1 when each occurs once)."""
    if declared:
        return int(declared)
    counts = set(Counter(r.id for r in records).values())
    if len(counts) > 1:
        raise UserError(f"prompts occur an unequal number of times ({sorted(counts)}); every prompt needs "
                        "the same number of images")
    return counts.pop() if counts else 1


def check_k(metric: str, k: int, official: int, policy: str) -> None:
    if policy not in K_POLICIES:
        raise UserError(f"{metric}: k={policy!r}; choose one of {', '.join(K_POLICIES)}")
    if policy == "official" and k != official:
        raise UserError(f"{metric}: {k} image(s) per prompt, the official protocol scores {official}; generate "
                        f"{official} per prompt, or pass --option {metric}.k=any to score {k} (recorded as k={k}, "
                        "not comparable with published numbers)")
