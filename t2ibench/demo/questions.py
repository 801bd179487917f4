"""TIFA-format questions from a shapes-world scene spec (the caption's scene graph).

Like TIFA v1.0, every question is about an element the caption mentions, in TIFA's element
categories: object, color, shape, counting, spatial; yes/no questions have choices ["yes", "no"],
multiple-choice colour questions have 4 choices, counting choices are "1".."4" (TIFA's quirk: never
"0"). Unlike TIFA v1.0, whose yes/no answers are all "yes", each caption also gets a few negative
questions (an absent shape, a wrong colour, the mirrored relation), so that a model that draws
nothing, or an answerer that always says "yes", does not score high. The world is closed (a caption
describes its whole scene), which is what makes negatives well defined.

Questions depend only on the spec, never on a layout, so they apply to any image generated from the
caption. They are a deterministic function of the caption (distractors are drawn from a generator
seeded with the caption text).

Templates (the measuring backend parses exactly these):
  object    is there a {shape}? / are there {shape}s?
  color     is the {shape} {color}? / are the {shape}s {color}? / what color is the {shape}? /
            what color are the {shape}s? / is there a {color} {shape}?
  shape     what shape is the {color} object? / what shape are the {color} objects?
  counting  how many {shape}s are there? / how many {color} {shape}s are there? /
            are there {number} {color} {shape}s?
  spatial   is the {color} {shape} {relation} the {color} {shape}?
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from t2ibench.demo.shapes import NUMBER_WORDS, RELATIONS, SceneSpec, ShapesWorld, caption

YES_NO = ("yes", "no")
COUNT_CHOICES = ("1", "2", "3", "4")
N_COLOR_CHOICES = 4


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def questions_for_spec(spec: SceneSpec, caption_id: str, world: ShapesWorld) -> list[dict[str, Any]]:
    """The caption's questions as TIFA question-answer entries (a JSON-able list of dicts)."""
    text = caption(spec)
    rng = random.Random(f"questions|{text}")
    out: list[dict[str, Any]] = []

    def add(question: str, choices: tuple[str, ...] | list[str], answer: str, element_type: str,
            element: str) -> None:
        assert answer in choices, (question, choices, answer)
        out.append({"id": caption_id, "caption": text, "question": question, "choices": list(choices),
                    "answer": answer, "element_type": element_type, "element": element})

    def color_choices(answer: str) -> list[str]:
        others = [c for c in world.colors if c != answer]
        picked = [answer] + rng.sample(others, min(N_COLOR_CHOICES - 1, len(others)))
        rng.shuffle(picked)
        return picked

    groups = spec.groups
    objects_of_shape = Counter()
    for g in groups:
        objects_of_shape[g.shape] += g.count
    groups_of_shape = Counter(g.shape for g in groups)
    groups_of_color = Counter(g.color for g in groups)

    # object: every mentioned shape exists; one absent shape does not.
    for shape in dict.fromkeys(g.shape for g in groups):
        q = f"is there {_a(shape)} {shape}?" if objects_of_shape[shape] == 1 else f"are there {shape}s?"
        add(q, YES_NO, "yes", "object", shape)
    absent = [s for s in world.shapes if s not in objects_of_shape]
    if absent:
        shape = rng.choice(absent)
        add(f"is there {_a(shape)} {shape}?", YES_NO, "no", "object", shape)

    # color: the colour of each shape that identifies one group; one wrong colour per caption.
    negative_asked = False
    for g in groups:
        if groups_of_shape[g.shape] == 1:
            verb, the = ("is", f"the {g.shape}") if g.count == 1 else ("are", f"the {g.shape}s")
            add(f"{verb} {the} {g.color}?", YES_NO, "yes", "color", g.color)
            add(f"what color {verb} {the}?", color_choices(g.color), g.color, "color", g.color)
            if not negative_asked:
                wrong = rng.choice([c for c in world.colors if c != g.color])
                add(f"{verb} {the} {wrong}?", YES_NO, "no", "color", wrong)
                negative_asked = True
        else:
            add(f"is there {_a(g.color)} {g.color} {g.shape}?", YES_NO, "yes", "color", g.color)

    # shape: the shape of each colour that identifies one group.
    shape_choices = list(world.shapes)
    for g in groups:
        if groups_of_color[g.color] == 1:
            q = (f"what shape is the {g.color} object?" if g.count == 1
                 else f"what shape are the {g.color} objects?")
            choices = shape_choices[:]
            rng.shuffle(choices)
            add(q, choices, g.shape, "shape", g.shape)

    # counting: only for numbers the caption states (as TIFA asks "how many" for "three cats").
    for g in groups:
        if g.count >= 2:
            word = NUMBER_WORDS[g.count]
            q = (f"how many {g.shape}s are there?" if groups_of_shape[g.shape] == 1
                 else f"how many {g.color} {g.shape}s are there?")
            add(q, COUNT_CHOICES, str(g.count), "counting", word)
            add(f"are there {word} {g.color} {g.shape}s?", YES_NO, "yes", "counting", word)

    # spatial: the relation, its mirror, and the opposite (false in every layout that fits).
    if spec.relation:
        a, b = groups
        mirror = RELATIONS[spec.relation]
        pa, pb = f"the {a.color} {a.shape}", f"the {b.color} {b.shape}"
        add(f"is {pa} {spec.relation} {pb}?", YES_NO, "yes", "spatial", spec.relation)
        add(f"is {pb} {mirror} {pa}?", YES_NO, "yes", "spatial", mirror)
        add(f"is {pa} {mirror} {pb}?", YES_NO, "no", "spatial", mirror)
    return out
