"""`shapes-measure`: a VQA backend that answers shapes-world TIFA questions by measuring pixels.

It never sees a scene graph. For each image it
1. labels every pixel with the nearest palette colour (or background), leaving pixels farther than
   `max_color_dist` from every colour unlabelled (blurred edges, mixed colours, noise);
2. splits each colour into 8-connected components and drops those under `min_area_frac` of the image;
3. classifies each component's shape by template matching: the circle, square (sharp or with
   rounded corners, as blur leaves it) or upright triangle of the same area and centroid that
   overlaps the component best (IoU on 4x4-supersampled coverage; robust to blur and pixel noise);
4. answers the parsed question template (see `t2ibench.demo.questions`) from these objects, with
   bounding-box centres for spatial relations (left/right/above/below need a gap of `margin_frac`
   of the image side).

Documented behaviour: a blank image has no objects, so existence questions are "no", counts are 0
and map to the nearest choice ("1": counting choices never contain "0"), and multiple-choice
questions without evidence answer the first choice (chance level). Touching or overlapping objects
of one colour merge into one component (counted once, shape usually misread); of different colours
they stay separate, but an occluded object's shape may be misread. Every answer is one of the choices.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from t2ibench.demo.shapes import BACKGROUND, DEFAULT_COLORS, NUMBER_WORDS, PALETTE, SHAPES
from t2ibench.errors import UserError
from t2ibench.metrics.tifa.vqa import VQABackend

NUMBERS = {w: n for n, w in NUMBER_WORDS.items()}
_S = "|".join(SHAPES)
_C = "|".join(PALETTE)
_R = "to the left of|to the right of|above|below"
# (pattern, handler name); matched in order against the lower-cased question.
TEMPLATES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), h) for p, h in [
    (rf"^is there an? ({_S})\?$", "shape_exists"),
    (rf"^are there ({_S})s\?$", "shape_exists"),
    (rf"^is there an? ({_C}) ({_S})\?$", "object_exists"),
    (rf"^(?:is|are) the ({_S})s? ({_C})\?$", "shape_is_color"),
    (rf"^what colou?r (?:is|are) the ({_S})s?\?$", "color_of_shape"),
    (rf"^what shape (?:is|are) the ({_C}) objects?\?$", "shape_of_color"),
    (rf"^how many ({_S})s are there\?$", "count_shape"),
    (rf"^how many ({_C}) ({_S})s are there\?$", "count_object"),
    (rf"^are there (one|two|three|four) ({_C}) ({_S})s\?$", "has_count"),
    (rf"^is the ({_C}) ({_S}) ({_R}) the ({_C}) ({_S})\?$", "relation"),
]]


@dataclass(frozen=True)
class Blob:
    """One measured object: colour, shape, pixel area and bounding-box centre (x right, y down)."""

    color: str
    shape: str
    area: int
    cx: float
    cy: float


SUPERSAMPLE = 4  # template coverage is sampled 4x4 per pixel, so small objects compare fairly
ROUNDED_CORNER = 0.25  # a blurred square's corners round off; its template may too (radius / side)


def shape_templates(height: int, width: int, cy: float, cx: float, area: float) -> dict[str, np.ndarray]:
    """Pixel-coverage maps (0..1) of each shape with the given area and centroid (pixel coordinates).
    Squares come sharp and with rounded corners; the triangle points up (its centroid sits 2/3 down)."""
    ys = (np.arange(height * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    xs = (np.arange(width * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    inside: dict[str, np.ndarray] = {}
    for corner in (0.0, ROUNDED_CORNER):
        side = math.sqrt(area / (1 - (4 - math.pi) * corner * corner))
        radius = corner * side
        ex, ey = np.maximum(dx - (side / 2 - radius), 0), np.maximum(dy - (side / 2 - radius), 0)
        inside[f"square/{corner:g}"] = (dx <= side / 2) & (dy <= side / 2) & (ex * ex + ey * ey <= radius * radius)
    inside["circle"] = dx * dx + dy * dy <= area / math.pi
    size = math.sqrt(2 * area)  # base = height = size
    top = cy - 2 * size / 3
    inside["triangle"] = (yy >= top) & (yy <= top + size) & (dx <= (yy - top) / 2)
    return {k: v.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3)) for k, v in inside.items()}


def classify_shape(mask: np.ndarray) -> str:
    """Shape whose same-area, same-centroid template overlaps the component's mask best (IoU)."""
    padded = np.pad(mask.astype(np.float32), 4)
    yy, xx = np.indices(padded.shape)
    area = float(padded.sum())
    cy, cx = float((yy * padded).sum() / area), float((xx * padded).sum() / area)
    templates = shape_templates(*padded.shape, cy, cx, area)
    iou = {k: float(np.minimum(t, padded).sum() / np.maximum(t, padded).sum()) for k, t in templates.items()}
    return max(iou, key=iou.get).split("/")[0]


class ShapesMeasureVQA(VQABackend):
    name = "shapes-measure"
    answers_are_choices = True

    def __init__(self, device: str = "cpu", weights: Any = None, colors: Sequence[str] = DEFAULT_COLORS,
                 min_area_frac: float = 0.01, max_color_dist: float | None = None,
                 margin_frac: float = 0.1, **options: Any):
        super().__init__(device=device, weights=weights, **options)
        if isinstance(colors, str):  # from a command line: "red,green,blue"
            colors = [c.strip() for c in colors.split(",") if c.strip()]
        unknown = [c for c in colors if c not in PALETTE]
        if unknown:
            raise UserError(f"shapes-measure: unknown colour(s) {unknown}; known: {', '.join(PALETTE)}")
        self.colors = tuple(colors)
        self.min_area_frac = min_area_frac
        self.margin_frac = margin_frac
        refs = np.array([BACKGROUND] + [PALETTE[c] for c in self.colors], dtype=np.float32)
        pairwise = np.linalg.norm(refs[:, None] - refs[None], axis=-1)
        # Half the closest pair's distance: a pixel this near a colour is nearer to it than to any other.
        self.max_color_dist = (max_color_dist if max_color_dist is not None
                               else float(pairwise[pairwise > 0].min()) / 2)
        self._refs = refs

    @property
    def version(self) -> str:
        extra = "" if self.colors == DEFAULT_COLORS else f"+colors={','.join(self.colors)}"
        return (f"shapes-measure-v1(area>={self.min_area_frac:g},dist<={self.max_color_dist:.0f},"
                f"margin={self.margin_frac:g}){extra}")

    # --- measuring ------------------------------------------------------------------------------
    def measure(self, image: Any) -> list[Blob]:
        """Objects found in one image (PIL image or HxWx3 uint8 array; None counts as blank)."""
        from scipy import ndimage

        if image is None:
            return []
        pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float32)
        h, w = pixels.shape[:2]
        dist = np.linalg.norm(pixels[:, :, None, :] - self._refs[None, None], axis=-1)  # H x W x (1+C)
        label = dist.argmin(axis=-1)
        label[dist.min(axis=-1) > self.max_color_dist] = -1  # unlabelled
        min_area = max(3, int(round(self.min_area_frac * h * w)))
        blobs = []
        for index, color in enumerate(self.colors, start=1):
            components, n = ndimage.label(label == index, structure=np.ones((3, 3), dtype=bool))
            if n == 0:
                continue
            for k, box in enumerate(ndimage.find_objects(components), start=1):
                mask = components[box] == k
                area = int(mask.sum())
                if area < min_area or min(mask.shape) < 3:
                    continue
                ys, xs = box
                blobs.append(Blob(color, classify_shape(mask), area,
                                  (xs.start + xs.stop - 1) / 2, (ys.start + ys.stop - 1) / 2))
        return blobs

    # --- answering ------------------------------------------------------------------------------
    def answer(self, images: Sequence[Any], questions: Sequence[str],
               choices: Sequence[Sequence[str]]) -> list[str]:
        if not len(images) == len(questions) == len(choices):
            raise ValueError("images, questions and choices must have the same length")
        # id(image) -> (image, blobs, side): each image is measured once; holding the image keeps its id.
        measured: dict[int, tuple[Any, list[Blob], int]] = {}
        answers = []
        for image, question, options in zip(images, questions, choices):
            key = id(image)
            if key not in measured:
                side = max(image.size) if hasattr(image, "size") and not isinstance(image, np.ndarray) \
                    else (max(np.asarray(image).shape[:2]) if image is not None else 1)
                measured[key] = (image, self.measure(image), side)
            _, blobs, side = measured[key]
            answers.append(self.answer_one(blobs, question, list(options), side))
        return answers

    def answer_one(self, blobs: list[Blob], question: str, choices: list[str], side: int = 32) -> str:
        text = " ".join(question.strip().lower().split())
        for pattern, handler in TEMPLATES:
            match = pattern.match(text)
            if match:
                result = getattr(self, f"_{handler}")(blobs, *match.groups(), side=side)
                return self._to_choice(result, choices)
        raise UserError(f"shapes-measure cannot parse question {question!r}; it answers only the "
                        "shapes world's templates (t2ibench.demo.questions)")

    @staticmethod
    def _to_choice(result: Any, choices: list[str]) -> str:
        """Map a measured result onto the choices: bool -> yes/no, int -> nearest number, str -> itself;
        None (no evidence) or a value not among the choices -> the first choice."""
        if isinstance(result, bool):
            result = "yes" if result else "no"
        elif isinstance(result, int):
            numeric = [c for c in choices if c.isdigit()]
            if numeric:
                return min(numeric, key=lambda c: (abs(int(c) - result), int(c)))
            result = str(result)
        return result if result in choices else choices[0]

    # Handlers: each returns a bool, an int, a choice string or None.
    def _shape_exists(self, blobs, shape, side):
        return any(b.shape == shape for b in blobs)

    def _object_exists(self, blobs, color, shape, side):
        return any(b.shape == shape and b.color == color for b in blobs)

    @staticmethod
    def _dominant(values: list[tuple[str, int]]) -> str | None:
        """Most frequent value; ties go to the larger total area."""
        if not values:
            return None
        count, area = Counter(v for v, _ in values), Counter()
        for v, a in values:
            area[v] += a
        return max(count, key=lambda v: (count[v], area[v]))

    def _shape_is_color(self, blobs, shape, color, side):
        return self._dominant([(b.color, b.area) for b in blobs if b.shape == shape]) == color

    def _color_of_shape(self, blobs, shape, side):
        return self._dominant([(b.color, b.area) for b in blobs if b.shape == shape])

    def _shape_of_color(self, blobs, color, side):
        return self._dominant([(b.shape, b.area) for b in blobs if b.color == color])

    def _count_shape(self, blobs, shape, side):
        return sum(b.shape == shape for b in blobs)

    def _count_object(self, blobs, color, shape, side):
        return sum(b.shape == shape and b.color == color for b in blobs)

    def _has_count(self, blobs, number, color, shape, side):
        return self._count_object(blobs, color, shape, side) == NUMBERS[number]

    def _relation(self, blobs, color_a, shape_a, relation, color_b, shape_b, side):
        margin = self.margin_frac * side
        tests = {"to the left of": lambda a, b: a.cx < b.cx - margin,
                 "to the right of": lambda a, b: a.cx > b.cx + margin,
                 "above": lambda a, b: a.cy < b.cy - margin,
                 "below": lambda a, b: a.cy > b.cy + margin}
        holds = tests[relation]
        first = [b for b in blobs if b.color == color_a and b.shape == shape_a]
        second = [b for b in blobs if b.color == color_b and b.shape == shape_b]
        return any(holds(a, b) for a in first for b in second if a is not b)
