"""The shapes world: a deterministic generator of captioned scenes of coloured shapes, rendered with PIL.

A scene is a *spec* (what the caption says: groups of identical objects and at most one spatial
relation; this is the scene graph TIFA questions come from) plus a *layout* (grid cell of every
object, only needed to render a training image). Captions are templated and a function of the spec,
so a caption fully describes its scene (closed world: nothing else is in the picture).

The world is kept simple on purpose so that a tiny pixel-space UNet trained for minutes on a CPU learns
it partially: big flat-coloured objects on a coarse grid, a black background, colours at the corners
of the RGB cube (still distinguishable after a diffusion model's blur), no anti-aliasing.

Held-out evaluation: every multi-object spec has a canonical key (a relation and its mirror, "A left
of B" / "B right of A", share one); a salted sha256 of the key puts ~`heldout_frac` of them in the
evaluation split. Training scenes are drawn only from the rest, so no evaluation caption, nor its
mirrored phrasing, ever occurs in training. Single objects ("a red circle") are the vocabulary and
always train.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from t2ibench.deprecation import moved_names
from t2ibench.errors import UserError

# Colour name -> RGB. The default six sit near corners of the RGB cube (min pairwise distance ~160 of
# 441); cyan and orange are optional extras (orange is close to red/yellow: harder after blur).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 70, 235),
    "yellow": (245, 225, 30),
    "purple": (200, 50, 220),
    "white": (245, 245, 245),
    "cyan": (30, 210, 220),
    "orange": (250, 140, 20),
}
DEFAULT_COLORS = ("red", "green", "blue", "yellow", "purple", "white")
BACKGROUND = (0, 0, 0)
SHAPES = ("circle", "square", "triangle")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
# Relation phrase as it appears in captions and questions -> its mirror (A r B  <=>  B mirror(r) A).
RELATIONS = {"to the left of": "to the right of", "to the right of": "to the left of",
             "above": "below", "below": "above"}
KINDS = ("single", "count", "relation", "pair", "count_pair")
MAX_OBJECTS = 4  # TIFA's counting choices are "1".."4"


@dataclass(frozen=True)
class Group:
    """`count` identical objects of one colour and shape."""

    color: str
    shape: str
    count: int = 1


@dataclass(frozen=True)
class SceneSpec:
    """What a caption says. `relation` holds between groups[0] and groups[1] (both of count 1)."""

    kind: str
    groups: tuple[Group, ...]
    relation: str | None = None

    @property
    def n_objects(self) -> int:
        return sum(g.count for g in self.groups)


@dataclass(frozen=True)
class PlacedObject:
    color: str
    shape: str
    row: int
    col: int
    dx: int = 0  # jitter in pixels inside the cell
    dy: int = 0


@dataclass(frozen=True)
class Scene:
    spec: SceneSpec
    objects: tuple[PlacedObject, ...]

    @property
    def caption(self) -> str:
        return caption(self.spec)

    def scene_graph(self) -> dict[str, Any]:
        """JSON-able scene graph: objects with grid cells and the captioned relation."""
        graph: dict[str, Any] = {
            "caption": self.caption, "kind": self.spec.kind,
            "groups": [asdict(g) for g in self.spec.groups],
            "objects": [asdict(o) for o in self.objects], "relations": [],
        }
        if self.spec.relation:  # objects[0] and objects[1] are the related pair (see layout)
            graph["relations"].append({"subject": 0, "predicate": self.spec.relation, "object": 1})
        return graph


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(group: Group) -> str:
    if group.count == 1:
        return f"{_article(group.color)} {group.color} {group.shape}"
    return f"{NUMBER_WORDS[group.count]} {group.color} {group.shape}s"


def caption(spec: SceneSpec) -> str:
    if spec.kind == "relation":
        a, b = spec.groups
        return f"{noun_phrase(a)} {spec.relation} {noun_phrase(b)}"
    return " and ".join(noun_phrase(g) for g in spec.groups)


def alt_text(spec: SceneSpec, rng: random.Random) -> str:
    """A web-style alt-text: it names only one of the scene's groups (chosen by `rng`) and no relation,
    the way alt-texts mention the salient object and leave the rest out (paper Sec. 4.3). A single
    group's scene is named whole."""
    return noun_phrase(spec.groups[rng.randrange(len(spec.groups))])


def synthetic_captions(spec: SceneSpec) -> list[str]:
    """Five captions that each describe the whole scene, best first (a captioner's top-5): the
    template, its mirrored phrasing (relations; reversed group order otherwise; a one-group scene has
    none and repeats the template), and framed variants.
    Mirrored phrasings are the same canonical spec, so none leaks a held-out scene."""
    text = caption(spec)
    if spec.kind == "relation":
        a, b = spec.groups
        mirrored = f"{noun_phrase(b)} {RELATIONS[spec.relation]} {noun_phrase(a)}"
    else:
        mirrored = " and ".join(noun_phrase(g) for g in reversed(spec.groups))
    return [text, mirrored, f"an image of {text}", f"{mirrored} on a black background",
            f"a picture showing {text}"]


def canonical_key(spec: SceneSpec) -> str:
    """Phrasing-independent identity of a spec: mirrored relations and group order collapse."""
    groups = list(spec.groups)
    relation = spec.relation
    if relation in ("to the right of", "below"):
        groups.reverse()
        relation = RELATIONS[relation]
    if relation is None:
        groups.sort(key=lambda g: (g.color, g.shape, g.count))
    parts = [f"{g.count}:{g.color}:{g.shape}" for g in groups]
    return f"{spec.kind}|{'|'.join(parts)}|{relation or ''}"


@dataclass(frozen=True)
class ShapesWorld:
    """Knobs of the world. Defaults: 32 px, 2x2 grid, up to 3 objects, six colours, 20% held out."""

    resolution: int = 32
    grid: int = 2
    object_frac: float = 0.75  # object size as a fraction of a grid cell
    jitter: int = 0  # max random offset in pixels inside the cell
    max_objects: int = 3
    colors: tuple[str, ...] = DEFAULT_COLORS
    shapes: tuple[str, ...] = SHAPES
    kind_weights: tuple[tuple[str, float], ...] = (
        ("single", 0.2), ("count", 0.2), ("relation", 0.35), ("pair", 0.1), ("count_pair", 0.15))
    heldout_frac: float = 0.2
    heldout_salt: str = "shapes-v1"
    relations: tuple[str, ...] = field(default=tuple(RELATIONS))

    def __post_init__(self) -> None:
        if not 1 <= self.max_objects <= MAX_OBJECTS:
            raise UserError(f"shapes world: max_objects must be 1..{MAX_OBJECTS}, got {self.max_objects}")
        if self.grid * self.grid < self.max_objects:
            raise UserError(f"shapes world: a {self.grid}x{self.grid} grid cannot hold {self.max_objects} objects")
        if self.object_size < 6:
            raise UserError(f"shapes world: objects of {self.object_size} px are too small to tell apart; "
                            "raise resolution or lower grid")
        unknown = [c for c in self.colors if c not in PALETTE]
        if unknown or len(self.colors) < 2:
            raise UserError(f"shapes world: colours must be >= 2 of {', '.join(PALETTE)}; got {list(self.colors)}")
        if any(s not in SHAPES for s in self.shapes) or len(self.shapes) < 2:
            raise UserError(f"shapes world: shapes must be >= 2 of {', '.join(SHAPES)}")
        if not 0.0 < self.heldout_frac < 1.0:
            raise UserError("shapes world: heldout_frac must be in (0, 1)")
        if self.jitter < 0 or self.jitter > (self.cell - self.object_size) // 2:
            raise UserError(f"shapes world: jitter must be 0..{(self.cell - self.object_size) // 2} px")

    @property
    def cell(self) -> float:
        return self.resolution / self.grid

    @property
    def object_size(self) -> int:
        return int(round(self.cell * self.object_frac))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # --- specs -------------------------------------------------------------------------------
    def _kinds(self) -> list[tuple[str, float]]:
        """Kinds possible under max_objects (counts need 2 objects, count_pair 3)."""
        need = {"single": 1, "count": 2, "relation": 2, "pair": 2, "count_pair": 3}
        return [(k, w) for k, w in self.kind_weights if w > 0 and need[k] <= self.max_objects]

    def sample_spec(self, rng: random.Random) -> SceneSpec:
        kinds, weights = zip(*self._kinds())
        kind = rng.choices(kinds, weights=weights)[0]
        objects = [(c, s) for c in self.colors for s in self.shapes]
        if kind == "single":
            return SceneSpec(kind, (Group(*rng.choice(objects)),))
        if kind == "count":
            return SceneSpec(kind, (Group(*rng.choice(objects), rng.randint(2, self.max_objects)),))
        a, b = rng.sample(objects, 2)  # two distinct colour-shape pairs
        if kind == "relation":
            return SceneSpec(kind, (Group(*a), Group(*b)), rng.choice(self.relations))
        if kind == "pair":
            return SceneSpec(kind, tuple(sorted((Group(*a), Group(*b)), key=_group_order)))
        n_a = rng.randint(2, self.max_objects - 1)
        n_b = rng.randint(1, self.max_objects - n_a)
        return SceneSpec(kind, tuple(sorted((Group(*a, n_a), Group(*b, n_b)), key=_group_order)))

    def is_heldout(self, spec: SceneSpec) -> bool:
        if spec.kind == "single":
            return False
        digest = hashlib.sha256(f"{self.heldout_salt}|{canonical_key(spec)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.heldout_frac

    def sample_spec_in(self, rng: random.Random, split: str) -> SceneSpec:
        """Rejection-sample a spec from the 'train' or 'eval' split."""
        want_heldout = {"train": False, "eval": True}[split]
        for _ in range(10_000):
            spec = self.sample_spec(rng)
            if self.is_heldout(spec) == want_heldout:
                return spec
        raise UserError(f"shapes world: no {split} scene found; check kind_weights / heldout_frac")

    # --- layout and rendering ------------------------------------------------------------------
    def layout(self, spec: SceneSpec, rng: random.Random) -> tuple[PlacedObject, ...]:
        cells = [(r, c) for r in range(self.grid) for c in range(self.grid)]
        if spec.relation:
            pairs = [(p, q) for p in cells for q in cells if p != q and _holds(spec.relation, p, q)]
            first, second = rng.choice(pairs)
            rest = [x for x in cells if x not in (first, second)]
            chosen = [first, second] + rng.sample(rest, spec.n_objects - 2)
        else:
            chosen = rng.sample(cells, spec.n_objects)
        kinds = [(g.color, g.shape) for g in spec.groups for _ in range(g.count)]
        placed = []
        for (color, shape), (row, col) in zip(kinds, chosen):
            dx = rng.randint(-self.jitter, self.jitter) if self.jitter else 0
            dy = rng.randint(-self.jitter, self.jitter) if self.jitter else 0
            placed.append(PlacedObject(color, shape, row, col, dx, dy))
        return tuple(placed)

    def object_box(self, obj: PlacedObject) -> tuple[int, int, int, int]:
        """Inclusive pixel box (x0, y0, x1, y1) of an object."""
        size = self.object_size
        x0 = int(round(obj.col * self.cell + (self.cell - size) / 2)) + obj.dx
        y0 = int(round(obj.row * self.cell + (self.cell - size) / 2)) + obj.dy
        return x0, y0, x0 + size - 1, y0 + size - 1

    def render(self, scene: Scene | tuple[PlacedObject, ...]) -> Image.Image:
        objects = scene.objects if isinstance(scene, Scene) else scene
        image = Image.new("RGB", (self.resolution, self.resolution), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for obj in objects:
            draw_shape(draw, obj.shape, self.object_box(obj), PALETTE[obj.color])
        return image

    def sample_scene(self, rng: random.Random, split: str | None = "train") -> Scene:
        spec = self.sample_spec(rng) if split is None else self.sample_spec_in(rng, split)
        return Scene(spec, self.layout(spec, rng))


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int],
               rgb: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    elif shape == "triangle":  # apex up, base on the box's bottom edge
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _holds(relation: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Does `relation` hold from cell a=(row, col) to cell b? Diagonals satisfy two relations."""
    (ra, ca), (rb, cb) = a, b
    return {"to the left of": ca < cb, "to the right of": ca > cb,
            "above": ra < rb, "below": ra > rb}[relation]


def _group_order(g: Group) -> tuple[int, int, int]:
    """Canonical order for unordered groups: larger counts first, then palette and shape order."""
    return (-g.count, list(PALETTE).index(g.color), SHAPES.index(g.shape))


# --- data sets ------------------------------------------------------------------------------------

def training_scenes(world: ShapesWorld, n: int, seed: int) -> list[Scene]:
    rng = random.Random(f"train|{seed}")
    return [world.sample_scene(rng, "train") for _ in range(n)]


def eval_specs(world: ShapesWorld, n: int, seed: int) -> list[SceneSpec]:
    """Up to `n` held-out specs with distinct captions (fewer if the split has fewer)."""
    rng = random.Random(f"eval|{seed}")
    seen: dict[str, SceneSpec] = {}
    misses = 0
    while len(seen) < n and misses < 2000:  # 2000 draws in a row without a new caption: split exhausted
        spec = world.sample_spec_in(rng, "eval")
        text = caption(spec)
        misses = misses + 1 if text in seen else 0
        seen.setdefault(text, spec)
    return list(seen.values())


# The dataset writers moved to t2ibench.demo.datasets (they need the questions, which need this module).
__getattr__ = moved_names(__name__, {"write_training_set": "t2ibench.demo.datasets:write_training_set",
                                     "write_eval_set": "t2ibench.demo.datasets:write_eval_set"})

