"""The measuring VQA backend `shapes-measure` (t2ibench.demo.measure_vqa): accuracy on clean renders,
documented failure cases, and the real TIFA scorer driving it."""

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from t2ibench.demo.datasets import write_eval_set
from t2ibench.demo.measure_vqa import ShapesMeasureVQA, classify_shape
from t2ibench.demo.questions import questions_for_spec
from t2ibench.demo.shapes import PALETTE, SHAPES, PlacedObject, ShapesWorld, draw_shape
from t2ibench.errors import UserError
from t2ibench.metrics.tifa.vqa import VQABackend, vqa_backend_class


@pytest.fixture(scope="module")
def backend():
    return ShapesMeasureVQA()


def _accuracy(backend, world, n_scenes, seed, degrade=None):
    rng, noise_rng = random.Random(seed), np.random.default_rng(seed)
    right = total = 0
    for _ in range(n_scenes):
        spec = world.sample_spec(rng)
        image = world.render(world.layout(spec, rng))
        if degrade:
            image = degrade(image, noise_rng)
        questions = questions_for_spec(spec, "x", world)
        answers = backend.answer([image] * len(questions), [q["question"] for q in questions],
                                 [q["choices"] for q in questions])
        assert all(a in q["choices"] for a, q in zip(answers, questions))
        right += sum(a == q["answer"] for a, q in zip(answers, questions))
        total += len(questions)
    return right / total, total


def test_registered_as_a_tifa_backend():
    cls = vqa_backend_class("shapes-measure")
    assert cls is ShapesMeasureVQA and issubclass(cls, VQABackend) and cls.answers_are_choices
    assert ShapesMeasureVQA().version.startswith("shapes-measure-v1")
    assert ShapesMeasureVQA(colors=("red", "cyan")).version != ShapesMeasureVQA().version
    assert ShapesMeasureVQA(colors="red, cyan").colors == ("red", "cyan")


@pytest.mark.parametrize("world", [
    ShapesWorld(max_objects=4),                                  # the default 32 px, 2x2 grid
    ShapesWorld(resolution=16, max_objects=4),                   # t2ibench demo's world: 6 px objects
    ShapesWorld(resolution=32, grid=3, max_objects=4),           # 8 px objects
    ShapesWorld(resolution=64, grid=3, max_objects=4, jitter=2),
], ids=["32px-grid2", "16px-grid2", "32px-grid3", "64px-grid3-jitter"])
def test_accurate_on_clean_renders(backend, world):
    accuracy, n = _accuracy(backend, world, n_scenes=250, seed=11)
    assert n > 2000
    assert accuracy >= 0.98


def test_tolerates_blur_and_pixel_noise(backend):
    def degrade(image, rng):  # roughly what a sampled image looks like: soft edges, grainy colour
        pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float64)
        pixels = pixels + rng.normal(0, 15, pixels.shape)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    accuracy, _ = _accuracy(backend, ShapesWorld(max_objects=4), n_scenes=120, seed=5, degrade=degrade)
    assert accuracy >= 0.95


def test_blank_image_answers_as_documented(backend):
    world = ShapesWorld()
    blank = Image.new("RGB", (32, 32))
    cases = [("is there a circle?", ["yes", "no"], "no"),
             ("are there squares?", ["yes", "no"], "no"),
             ("is the triangle red?", ["yes", "no"], "no"),
             ("is the red circle to the left of the blue square?", ["yes", "no"], "no"),
             ("how many circles are there?", ["1", "2", "3", "4"], "1"),  # 0 -> nearest choice
             ("what color is the circle?", ["blue", "red", "green", "white"], "blue"),  # first choice
             ("what shape is the red object?", ["square", "circle", "triangle"], "square")]
    for image in (blank, None):
        answers = backend.answer([image] * len(cases), [c[0] for c in cases], [c[1] for c in cases])
        assert answers == [c[2] for c in cases]
    assert backend.measure(blank) == [] and world.render(()).getextrema() == ((0, 0),) * 3


def test_answers_come_from_pixels_not_captions(backend):
    world = ShapesWorld()
    red_circle = world.render((PlacedObject("red", "circle", 0, 0),))
    blue_square = world.render((PlacedObject("blue", "square", 1, 1),))
    question, choices = "what color is the circle?", ["red", "blue", "green", "white"]
    assert backend.answer([red_circle, blue_square], [question] * 2, [choices] * 2) == ["red", "red"]
    assert backend.answer([red_circle, blue_square], ["is there a square?"] * 2, [["yes", "no"]] * 2) \
        == ["no", "yes"]
    (blob,) = backend.measure(blue_square)
    assert (blob.color, blob.shape) == ("blue", "square") and blob.cx > 16 and blob.cy > 16


def test_overlapping_shapes(backend):
    """Documented: different colours stay separate objects even when one covers part of the other;
    touching objects of one colour merge into one component and are counted once."""
    image = Image.new("RGB", (64, 64))
    draw = ImageDraw.Draw(image)
    draw_shape(draw, "circle", (8, 8, 35, 35), PALETTE["blue"])
    draw_shape(draw, "square", (26, 26, 53, 53), PALETTE["yellow"])  # on top, covers the circle's corner
    found = {(b.color, b.shape) for b in backend.measure(image)}
    assert ("yellow", "square") in found and {b[0] for b in found} == {"blue", "yellow"}
    q = ["is the yellow square below the blue circle?", "is there a yellow square?", "how many squares are there?"]
    assert backend.answer([image] * 3, q, [["yes", "no"]] * 2 + [["1", "2", "3", "4"]]) == ["yes", "yes", "1"]

    same = Image.new("RGB", (64, 64))
    draw = ImageDraw.Draw(same)
    draw_shape(draw, "square", (8, 8, 31, 31), PALETTE["red"])
    draw_shape(draw, "square", (20, 20, 43, 43), PALETTE["red"])
    assert len(backend.measure(same)) == 1
    assert backend.answer([same], ["how many red squares are there?"], [["1", "2", "3", "4"]]) == ["1"]


def test_shape_classifier_by_hand():
    """Ideal masks drawn directly with numpy, and a square with corners rounded by blur."""
    yy, xx = np.mgrid[0:20, 0:20]
    assert classify_shape(np.ones((14, 14), bool)) == "square"
    assert classify_shape((yy - 9.5) ** 2 + (xx - 9.5) ** 2 <= 81) == "circle"
    assert classify_shape(np.abs(xx - 9.5) <= yy / 2) == "triangle"
    rounded = np.ones((12, 12), bool)
    for y, x in [(0, 0), (0, 1), (1, 0), (0, 10), (0, 11), (1, 11), (10, 0), (11, 0), (11, 1),
                 (10, 11), (11, 10), (11, 11)]:
        rounded[y, x] = False
    assert classify_shape(rounded) == "square"
    assert set(SHAPES) == {"circle", "square", "triangle"}


def test_unknown_question_is_a_user_error(backend):
    with pytest.raises(UserError, match="cannot parse"):
        backend.answer([Image.new("RGB", (32, 32))], ["is this a surfer?"], [["yes", "no"]])


def test_tifa_scorer_with_measuring_backend(tmp_path):
    """The real TIFA path: ground-truth renders score near 1, noise and blank images near chance."""
    from t2ibench.metrics.base import PromptRecord
    from t2ibench.metrics.tifa.scorer import TIFAScore

    world = ShapesWorld(max_objects=4)
    paths = write_eval_set(tmp_path, world, n_prompts=40, seed=0)
    scorer = TIFAScore(vqa="shapes-measure", questions=paths["questions"])
    assert "vqa=shapes-measure-v1" in scorer.version and scorer.version.endswith("map=none")
    ids = sorted(scorer.questions.by_caption)
    prompts = [PromptRecord(i, scorer.questions.by_caption[i][0].caption) for i in ids]
    reference = [Image.open(paths["reference"] / f"{i}.png").convert("RGB") for i in ids]
    truth = scorer.score(reference, prompts)
    assert truth.value >= 0.98 and truth.extra["complete"]
    assert set(truth.categories) == {"object", "color", "counting", "shape", "spatial"}

    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in ids]
    noise_score = scorer.score(noise, prompts).value
    blank_score = scorer.score([Image.new("RGB", (32, 32)) for _ in ids], prompts).value
    # chance: a uniform guess over each question's choices, averaged like TIFA
    chance = np.mean([np.mean([1 / len(q.choices) for q in scorer.questions.by_caption[i]]) for i in ids])
    for score in (noise_score, blank_score):
        assert abs(score - chance) < 0.15 and score < truth.value - 0.5
