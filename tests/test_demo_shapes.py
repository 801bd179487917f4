"""Shapes world (t2ibench.demo.shapes) and its TIFA-format questions (t2ibench.demo.questions)."""

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from t2ibench.demo.datasets import write_eval_set, write_training_set
from t2ibench.demo.questions import questions_for_spec
from t2ibench.demo.shapes import (
    PALETTE,
    RELATIONS,
    Group,
    SceneSpec,
    ShapesWorld,
    canonical_key,
    caption,
    eval_specs,
    training_scenes,
)
from t2ibench.errors import UserError
from t2ibench.metrics.tifa.questions import load_questions

TIFA_CATEGORIES = {"object", "color", "counting", "shape", "spatial"}


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_training_set_is_deterministic_and_seed_dependent(tmp_path):
    world = ShapesWorld()
    a = write_training_set(tmp_path / "a", world, n=40, seed=3)
    b = write_training_set(tmp_path / "b", world, n=40, seed=3)
    c = write_training_set(tmp_path / "c", world, n=40, seed=4)
    assert _tree_digest(a) == _tree_digest(b)
    digest_c = _tree_digest(c)
    assert digest_c.keys() == _tree_digest(a).keys()
    assert digest_c != _tree_digest(a)
    # image-folder format: <stem>.png + <stem>.txt caption, matching the scene graphs
    scenes = [json.loads(line) for line in (a / "scenes.jsonl").read_text().splitlines()]
    assert len(scenes) == 40 == len(list(a.glob("*.png"))) == len(list(a.glob("*.txt")))
    for scene in scenes:
        assert (a / f"{scene['stem']}.txt").read_text() == scene["caption"]


def test_eval_set_is_deterministic(tmp_path):
    world = ShapesWorld()
    a = write_eval_set(tmp_path / "a", world, n_prompts=12, seed=0)
    b = write_eval_set(tmp_path / "b", world, n_prompts=12, seed=0)
    c = write_eval_set(tmp_path / "c", world, n_prompts=12, seed=1)
    for key in ("questions", "text_inputs"):
        assert a[key].read_bytes() == b[key].read_bytes()
        assert a[key].read_bytes() != c[key].read_bytes()
    assert _tree_digest(a["reference"]) == _tree_digest(b["reference"])
    inputs = json.loads(a["text_inputs"].read_text())
    assert len(inputs) == 12 and len({x["caption"] for x in inputs}) == 12


def test_render_matches_scene_graph():
    world = ShapesWorld(resolution=64, grid=3, max_objects=4, jitter=1)
    rng = random.Random(0)
    for _ in range(50):
        scene = world.sample_scene(rng, split=None)
        pixels = np.asarray(world.render(scene))
        painted = pixels.any(axis=-1).sum()
        for obj in scene.objects:
            x0, y0, x1, y1 = world.object_box(obj)
            # the box's lower-middle pixel is inside every shape (the triangle's base is at the bottom)
            assert tuple(pixels[(y0 + 2 * y1) // 3, (x0 + x1) // 2]) == PALETTE[obj.color]
            assert 0 <= x0 and x1 < 64 and 0 <= y0 and y1 < 64
        assert painted > 0
        if scene.spec.relation:  # the captioned relation holds between objects 0 and 1 of the layout
            a, b = scene.objects[:2]
            assert {"to the left of": a.col < b.col, "to the right of": a.col > b.col,
                    "above": a.row < b.row, "below": a.row > b.row}[scene.spec.relation]
        cells = [(o.row, o.col) for o in scene.objects]
        assert len(set(cells)) == len(cells)  # one object per grid cell: no overlaps


def test_heldout_prompts_never_occur_in_training():
    world = ShapesWorld(max_objects=4)
    train = training_scenes(world, 3000, seed=0)
    evals = eval_specs(world, 200, seed=0)
    assert len(evals) == 200
    train_captions = {s.caption for s in train}
    train_keys = {canonical_key(s.spec) for s in train}
    assert not train_captions & {caption(s) for s in evals}
    assert not train_keys & {canonical_key(s) for s in evals}
    # the mirrored phrasing of a held-out relation is held out too
    for spec in evals:
        if spec.relation:
            mirrored = SceneSpec("relation", spec.groups[::-1], RELATIONS[spec.relation])
            assert caption(mirrored) not in train_captions and world.is_heldout(mirrored)
    # singles are the vocabulary: all of them train
    assert {s.spec.kind for s in train} == {"single", "count", "relation", "pair", "count_pair"}
    assert all(s.kind != "single" for s in evals)


def test_question_file_matches_tifa_schema(tmp_path):
    world = ShapesWorld(max_objects=4)
    paths = write_eval_set(tmp_path, world, n_prompts=60, seed=0, reference_images=False)
    qset = load_questions(paths["questions"])  # the TIFA scorer's own validator
    ids = {x["id"] for x in json.loads(paths["text_inputs"].read_text())}
    assert set(qset.by_caption) == ids and qset.duplicate_questions() == 0
    entries = json.loads(paths["questions"].read_text())
    assert {q["element_type"] for q in entries} == TIFA_CATEGORIES
    for q in entries:
        assert q["answer"] in q["choices"] and len(set(q["choices"])) == len(q["choices"])
        if q["element_type"] == "counting" and q["question"].startswith("how many"):
            assert q["choices"] == ["1", "2", "3", "4"]  # TIFA quirk: never "0"
    yes_no = [q["answer"] for q in entries if q["choices"] == ["yes", "no"]]
    assert 0.2 < yes_no.count("no") / len(yes_no) < 0.5  # negatives exist; "always yes" cannot ace it


def test_questions_for_a_relation_caption_by_hand():
    world = ShapesWorld()
    spec = SceneSpec("relation", (Group("red", "circle"), Group("blue", "square")), "to the left of")
    questions = questions_for_spec(spec, "c0", world)
    assert {q["caption"] for q in questions} == {"a red circle to the left of a blue square"}
    got = {(q["element_type"], q["question"], q["answer"]) for q in questions}
    expected = {
        ("object", "is there a circle?", "yes"), ("object", "is there a square?", "yes"),
        ("object", "is there a triangle?", "no"),
        ("color", "is the circle red?", "yes"), ("color", "what color is the circle?", "red"),
        ("color", "is the square blue?", "yes"), ("color", "what color is the square?", "blue"),
        ("shape", "what shape is the red object?", "circle"),
        ("shape", "what shape is the blue object?", "square"),
        ("spatial", "is the red circle to the left of the blue square?", "yes"),
        ("spatial", "is the blue square to the right of the red circle?", "yes"),
        ("spatial", "is the red circle to the right of the blue square?", "no"),
    }
    assert expected <= got
    (negative,) = got - expected  # plus exactly one wrong-colour question
    assert negative[0] == "color" and negative[1].startswith("is the circle ") and negative[2] == "no"
    assert negative[1] != "is the circle red?"


def test_counting_questions_by_hand():
    world = ShapesWorld(max_objects=4)
    spec = SceneSpec("count_pair", (Group("green", "triangle", 3), Group("green", "square", 1)))
    assert caption(spec) == "three green triangles and a green square"
    by_question = {q["question"]: q for q in questions_for_spec(spec, "c1", world)}
    count = by_question["how many triangles are there?"]
    assert count["answer"] == "3" and count["element"] == "three" and count["element_type"] == "counting"
    assert by_question["are there three green triangles?"]["answer"] == "yes"
    assert by_question["is there a circle?"]["answer"] == "no"
    # one colour shared by both groups: "what shape is the green object?" would be ambiguous
    assert not any(q.startswith("what shape") for q in by_question)


@pytest.mark.parametrize("kwargs", [dict(max_objects=5), dict(grid=1, max_objects=2),
                                    dict(colors=("red", "teal")), dict(resolution=16, grid=3),
                                    dict(jitter=5)])
def test_bad_world_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        ShapesWorld(**kwargs)


def test_training_set_resumes_and_refuses_other_settings(tmp_path):
    world = ShapesWorld()
    out = write_training_set(tmp_path / "d", world, n=12, seed=0)
    first = _tree_digest(out)
    (out / "train_000003.png").unlink()  # an interrupted run: the missing image is written again
    write_training_set(out, world, n=12, seed=0)
    assert _tree_digest(out) == first
    write_training_set(out, world, n=5, seed=0)  # shrinking drops the extra pairs
    assert len(list(out.glob("*.png"))) == 5 == len(list(out.glob("*.txt")))
    assert all(_tree_digest(out)[k] == first[k] for k in _tree_digest(out) if k.startswith("train_"))
    with pytest.raises(UserError, match="other world settings"):
        write_training_set(out, world, n=5, seed=1)


def test_alt_texts_and_synthetic_captions_for_the_trainers_caption_mixing(tmp_path):
    """captions="alt+synthetic": <stem>.txt names one group only, <stem>.syn.json holds five whole-scene
    captions read by the trainer's own reader; no synthetic phrasing is a held-out evaluation caption."""
    import numpy as np

    from t2ibench.data.readers import ShardStats, open_dataset
    from t2ibench.demo.shapes import alt_text, synthetic_captions
    from t2ibench.train.data import choose_caption

    world = ShapesWorld()
    out = write_training_set(tmp_path / "mixed", world, n=60, seed=0, captions="alt+synthetic")
    scenes = [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]
    held_out = {caption(s) for s in eval_specs(world, 400, 0)}
    samples = {Path(s.key).name: s for shard in open_dataset(out).shards for s in shard.samples(ShardStats())}
    for scene in scenes:
        alt = (out / f"{scene['stem']}.txt").read_text()
        syn = json.loads((out / f"{scene['stem']}.syn.json").read_text())["captions"]
        assert syn[0] == scene["caption"] and len(syn) == 5
        assert len(set(syn)) == (5 if len(scene["groups"]) > 1 else 4)  # one group: no other order to mirror
        assert not held_out & set(syn)
        named = [g for g in scene["groups"] if alt.endswith(f"{g['color']} {g['shape']}" + ("s" if g["count"] > 1 else ""))]
        assert len(named) == 1  # exactly one group of the scene, and no relation phrase
        assert not any(r in alt for r in RELATIONS)
        sample = samples[scene["stem"]]
        assert sample.caption == alt and sample.syn["captions"] == syn
    # the trainer's mixing picks the alt-text with probability alt_text_prob, else one of the top-5
    rng = np.random.default_rng(0)
    picks = [choose_caption("alt", ["s1", "s2", "s3", "s4", "s5"], rng, 0.5)[1] for _ in range(4000)]
    assert abs(np.mean([p == -1 for p in picks]) - 0.5) < 0.03 and set(picks) == {-1, 0, 1, 2, 3, 4}
    # a mirrored phrasing is the same spec (canonical key), so a training scene never leaks a held-out one
    spec = SceneSpec("relation", (Group("red", "circle"), Group("blue", "square")), "to the left of")
    assert synthetic_captions(spec)[1] == "a blue square to the right of a red circle"
    assert alt_text(spec, random.Random(0)) in ("a red circle", "a blue square")
    with pytest.raises(UserError):
        write_training_set(tmp_path / "mixed", world, n=60, seed=0, captions="full")  # other captions, same folder
