"""GenEval's rules (Ghosh et al., NeurIPS 2023), written here from the official code.

Mirrors djghosh13/geneval at af4902f24d3ca90ebbb446dd9891a59e0f82725f (the commit the `geneval` prompt
manifest pins); each function names the official function it follows:

* `keep_detections`   <- `evaluate_image`, evaluation/evaluate_images.py lines 223-244 (confidence
  threshold 0.3, or 0.9 for the `counting` tag, strictly greater; most confident first; at most 16 per
  class; greedy overlap suppression only when max_overlap < 1, which the official run never sets);
* `box_iou`           <- `compute_iou`, lines 130-137 (inclusive pixel boxes, the "+1" convention);
* `relative_position` <- `relative_position`, lines 140-157 (offsets of box centres shrunk by
  0.1 x the summed box sizes, normalised by the centre distance, 0.5 cut-offs);
* `evaluate`          <- `evaluate`, lines 160-220 (include clauses with AND, exclude with OR; colour
  and position judged on the `count` most confident objects only; a position clause against a group
  that failed fails);
* `summarize`         <- evaluation/summary_scores.py (per tag: mean over images; overall: mean of the
  per-tag means, tags in order of first appearance).

Detections are `Detection`s (box `x1, y1, x2, y2`, score, optional mask); colours come from a
callable, so the rules are independent of the detector and colour classifier that produced them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")


@dataclass(frozen=True)
class Thresholds:
    """The official defaults (`--options` of evaluate_images.py); other values are another version."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_threshold: float = 0.1

    def tag(self) -> str:
        return ("official" if self == Thresholds() else
                f"t{self.threshold}-c{self.counting_threshold}-n{self.max_objects}-o{self.max_overlap}"
                f"-p{self.position_threshold}")


@dataclass
class Detection:
    box: tuple[float, float, float, float]
    score: float
    mask: Any = None  # boolean HxW array, or None


# classname -> detections kept for it, most confident first
Detections = dict[str, list[Detection]]
ColorFn = Callable[[Sequence[Detection], str], list[str]]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    def area(x1: float, y1: float, x2: float, y2: float) -> float:
        return max(x2 - x1 + 1, 0) * max(y2 - y1 + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a[:4]) + area(*b[:4]) - inter
    return inter / union if union else 0


def keep_detections(raw: Mapping[str, Sequence[Detection]], tag: str, th: Thresholds = Thresholds()) -> Detections:
    """Per class: above the tag's confidence threshold, most confident first, capped, de-overlapped."""
    cut = th.counting_threshold if tag == "counting" else th.threshold
    kept: Detections = {}
    for classname, dets in raw.items():
        if not dets:
            continue
        scores = np.asarray([d.score for d in dets], dtype=np.float64)
        order = np.argsort(scores)[::-1]  # numpy's order, so ties fall as they do officially
        order = [int(i) for i in order if scores[i] > cut][:th.max_objects]
        out = []
        while order:
            best = order.pop(0)
            out.append(dets[best])
            if th.max_overlap != 1:
                order = [i for i in order if box_iou(dets[best].box, dets[i].box) < th.max_overlap]
        if out:
            kept[classname] = out
    return kept


def relative_position(a: Detection, b: Detection, position_threshold: float = 0.1) -> set[str]:
    """Where `a` lies relative to `b`: a subset of {left of, right of, above, below}."""
    ax1, ay1, ax2, ay2 = a.box[:4]
    bx1, by1, bx2, by2 = b.box[:4]
    offset = np.array([(ax1 + ax2) / 2 - (bx1 + bx2) / 2, (ay1 + ay2) / 2 - (by1 + by2) / 2], dtype=np.float64)
    size = np.array([abs(ax2 - ax1) + abs(bx2 - bx1), abs(ay2 - ay1) + abs(by2 - by1)], dtype=np.float64)
    shrunk = np.maximum(np.abs(offset) - position_threshold * size, 0) * np.sign(offset)
    if np.all(np.abs(shrunk) < 1e-3):
        return set()
    dx, dy = shrunk / np.linalg.norm(offset)
    rel = set()
    if dx < -0.5:
        rel.add("left of")
    if dx > 0.5:
        rel.add("right of")
    if dy < -0.5:
        rel.add("above")
    if dy > 0.5:
        rel.add("below")
    return rel


def evaluate(objects: Detections, metadata: Mapping[str, Any], colors_of: ColorFn,
             position_threshold: float = 0.1) -> tuple[bool, str]:
    """(correct, reason) of one image's kept detections against one prompt's metadata."""
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        name, count = req["class"], req["count"]
        found = objects.get(name, [])[:count]
        ok = True
        if len(found) < count:
            ok = False
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = colors_of(found, name)
                n_right = colors.count(req["color"])
                if n_right < count:
                    ok = False
                    reasons.append(f"expected {req['color']} {name}>={count}, found {n_right} {req['color']}; and "
                                   + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors))
            if "position" in req and ok:
                relation, target = req["position"]
                if groups[target] is None:
                    ok = False
                    reasons.append(f"no target for {name} to be {relation}")
                else:
                    for obj in found:
                        for other in groups[target]:
                            actual = relative_position(obj, other, position_threshold)
                            if relation not in actual:
                                ok = False
                                reasons.append(f"expected {name} {relation} target, found "
                                               f"{' and '.join(actual)} target")
                                break
                        if not ok:
                            break
        correct = correct and ok
        groups.append(found if ok else None)
    for req in metadata.get("exclude", []):
        name = req["class"]
        if len(objects.get(name, [])) >= req["count"]:
            correct = False
            reasons.append(f"expected {name}<{req['count']}, found {len(objects[name])}")
    return correct, "\n".join(reasons)


@dataclass
class GenEvalSummary:
    overall: float
    by_tag: dict[str, float]
    n_images: int
    n_prompts: int
    correct_images: float
    correct_prompts: float  # a prompt counts when any of its images is correct


def summarize(rows: Sequence[tuple[str, str, bool]]) -> GenEvalSummary:
    """rows: (prompt id, tag, correct) per image, in image order."""
    if not rows:
        raise ValueError("no GenEval image to summarize")
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[str, list[bool]] = {}
    for pid, tag, ok in rows:
        by_tag.setdefault(tag, []).append(bool(ok))
        by_prompt.setdefault(pid, []).append(bool(ok))
    tag_means = {t: float(np.mean(v)) for t, v in by_tag.items()}
    return GenEvalSummary(overall=float(np.mean(list(tag_means.values()))), by_tag=tag_means,
                          n_images=len(rows), n_prompts=len(by_prompt),
                          correct_images=float(np.mean([ok for _, _, ok in rows])),
                          correct_prompts=float(np.mean([any(v) for v in by_prompt.values()])))
