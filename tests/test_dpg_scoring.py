"""DPG-Bench scoring: recorded VQA answers replayed through our rules and through the official code.

The question graphs are a small csv in the official schema; the answers are recorded per (prompt, crop
of the 2x2 grid, question). Expected numbers are derived by hand from the official rules (comments);
with `$T2IBENCH_OFFICIAL_SRC` set (tests/official_code.py), the official `compute_dpg_bench.py` itself runs
end to end (its `main`, with its mPLUG class replaced by a replay of the same answers) on a folder of grid
images and must print the same per-prompt, category and overall numbers.
"""

from __future__ import annotations

import csv
import io
import re
import sys

import pytest

from official_code import official_module
from t2ibench.metrics.dpg.graph import parse_question_graphs, score_prompt, summarize

ROWS = [  # item_id, text, proposition_id, dependency, tuple, question
    ("first", "a cat on a mat", 1, "0", "entity - whole (cat)", "Is there a cat?"),  # skipped officially (i == 0)
    ("first", "a cat on a mat", 2, "1", "entity - whole (mat)", "Is there a mat?"),  # parent 1 gone: item fails
    ("b", "a red cat left of a dog", 1, "0", "entity - whole (cat)", "Is there a cat?"),
    ("b", "a red cat left of a dog", 2, "1", "attribute - color (cat, red)", "Is the cat red?"),
    ("b", "a red cat left of a dog", 3, "1,2", "relation - spatial (cat, dog, left of)", "Is the cat left of the dog?"),
    ("b", "a red cat left of a dog", 4, "0", "entity - whole (dog)", "Is there a dog?"),
    ("c", "a wooden brown table", 1, "0", "entity - whole (table)", "Is there a table?"),
    ("c", "a wooden brown table", 2, "3", "attribute - texture (table, wooden)", "Is the table wooden?"),
    ("c", "a wooden brown table", 3, "1", "attribute - color (table, brown)", "Is the table brown?"),
    ("d", "three ripe apples", 1, "0", "other - count (apple, ==3)", "Are there three apples?"),
    ("d", "three ripe apples", 2, "1,9", "entity - state (apple, ripe)", "Are the apples ripe?"),
]
# Recorded answers: (item, crop, qid) -> answer; anything not listed answered "yes".
ANSWERS = {
    ("b", 1, 1): "no",                  # crop 1: q2 and q3 zeroed by their parent q1 -> 1/4
    ("b", 2, 2): "no",                  # crop 2: q3 zeroed by q2 -> 2/4
    ("b", 3, 4): "Yes",                 # crop 3: only exactly "yes" counts -> 3/4
    **{("c", k, 1): "no" for k in range(4)},  # q2 kept (its parent q3 comes later and is still 1), q3 zeroed: 1/3
    **{("d", k, 1): "no" for k in range(4)},  # q2 zeroed by q1 before its missing parent 9 is looked up: 0
}
EXPECTED_PROMPT = {"b": (1 + 0.25 + 0.5 + 0.75) / 4, "c": 1 / 3, "d": 0.0}  # "first" fails and is left out
EXPECTED_SCORE = sum(EXPECTED_PROMPT.values()) / 3
# categories: raw answers of each prompt's last crop (b crop 3: q4 "Yes" -> 0; c, d: q1 "no")
EXPECTED_L2 = {"entity - whole": 1 / 3, "attribute - color": 1.0, "relation - spatial": 1.0,
               "attribute - texture": 1.0, "other - count": 0.0, "entity - state": 1.0}
EXPECTED_L1 = {"entity": 0.5, "attribute": 1.0, "relation": 1.0, "other": 0.0}
CROP_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # grid quarters, official crop order


def csv_text() -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
                "category_detailed", "tuple", "question_natural_language"])
    for item, text, qid, dep, tup, q in ROWS:
        broad, detailed = (s.strip() for s in tup.split("(")[0].split("-", 1))
        w.writerow([item, text, "", qid, dep, broad, detailed, tup, q])
    return out.getvalue()


def recorded(item: str, crop: int, qid: int) -> str:
    return ANSWERS.get((item, crop, qid), "yes")


def ours():
    graphs = parse_question_graphs(csv_text())
    scored = {item: score_prompt(g, [{q: recorded(item, k, q) for q in g.questions} for k in range(4)])
              for item, g in graphs.items()}
    return graphs, scored, summarize([(graphs[i], o) for i, o in scored.items()])


def test_official_first_row_quirk_and_dependency_rule():
    graphs, scored, summary = ours()
    assert list(graphs["first"].questions) == [2]  # the csv's first data row is skipped, as officially
    assert scored["first"].score is None and "depends on 1" in scored["first"].failed
    assert {i: o.score for i, o in scored.items() if o.score is not None} == pytest.approx(EXPECTED_PROMPT)
    assert scored["b"].image_scores == [1.0, 0.25, 0.5, 0.75]
    assert summary.score == pytest.approx(EXPECTED_SCORE)
    assert summary.l2 == pytest.approx(EXPECTED_L2) and summary.l1 == pytest.approx(EXPECTED_L1)
    assert summary.n_failed == 1
    keep_all = parse_question_graphs(csv_text(), official_first_row=False)
    assert list(keep_all["first"].questions) == [1, 2]


def test_official_code_agrees(tmp_path, monkeypatch, capsys):
    from PIL import Image

    official = official_module("ELLA/dpg_bench/compute_dpg_bench.py", "official_compute_dpg_bench")
    r = 8
    images = tmp_path / "images"
    images.mkdir()
    for item in {row[0] for row in ROWS}:
        grid = Image.new("RGB", (2 * r, 2 * r))
        for k, (x, y) in enumerate([(0, 0), (r, 0), (0, r), (r, r)]):
            grid.paste(CROP_COLOURS[k], (x, y, x + r, y + r))
        grid.save(images / f"{item}.png")
    questions = {(item, q): qid for item, _, qid, _, _, q in ROWS}

    class ReplayVQA:  # stands in for the mPLUG pipeline: answers recorded per (crop, question)
        def __init__(self, device=None):
            pass

        def vqa(self, image, question):
            crop = CROP_COLOURS.index(image.convert("RGB").getpixel((0, 0)))
            item = current[0]
            return recorded(item, crop, questions[(item, question)])

    current = [None]
    one_sample = official.compute_dpg_one_sample

    def tracking(args, question_dict, image_path, vqa_model, resolution):
        current[0] = image_path.rsplit("/", 1)[-1].split(".")[0]
        return one_sample(args, question_dict, image_path, vqa_model, resolution)

    monkeypatch.setattr(official, "MPLUG", ReplayVQA)
    monkeypatch.setattr(official, "compute_dpg_one_sample", tracking)
    monkeypatch.setattr(official.time, "sleep", lambda s: None)
    (tmp_path / "q.csv").write_text(csv_text())
    res = tmp_path / "res.txt"
    monkeypatch.setattr(sys, "argv", ["compute_dpg_bench.py", "--image-root-path", str(images), "--resolution",
                                      str(r), "--csv", str(tmp_path / "q.csv"), "--res-path", str(res),
                                      "--pic-num", "4"])
    official.main()
    out = capsys.readouterr().out
    _, scored, summary = ours()
    per_prompt = {}
    for line in res.read_text().splitlines():
        parts = line.split(", ")
        if parts[0].endswith(".png"):
            per_prompt[parts[0].rsplit("/", 1)[-1][:-4]] = [float(v) for v in parts[1:]]
    assert set(per_prompt) == {i for i, o in scored.items() if o.score is not None}  # "first" failed there too
    for item, values in per_prompt.items():
        assert values[:-1] == scored[item].image_scores and values[-1] == scored[item].score
    assert float(re.search(r"DPG-Bench score: ([0-9.e-]+)", out).group(1)) == pytest.approx(100 * summary.score,
                                                                                           abs=1e-9)
    printed = dict(re.findall(r"\t([^:\n]+): ([0-9.e-]+)", out.split("Image path:")[0]))
    expected = {**{k: 100 * v for k, v in summary.l1.items()}, **{k: 100 * v for k, v in summary.l2.items()}}
    assert {k: float(v) for k, v in printed.items()} == pytest.approx(expected, abs=1e-9)


def test_scorer_replays_through_the_backend_interface(monkeypatch):
    """The scorer end to end (prompt-set format -> grid crops -> VQA backend -> official scoring), with a
    VQA backend registered at run time that replays the recorded answers by crop colour."""
    from PIL import Image

    from t2ibench.metrics.dpg import DPGBenchScore
    from t2ibench.metrics.tifa import vqa
    from t2ibench.prompts import formats

    questions = {q: qid for _, _, qid, _, _, q in ROWS}

    class ReplayBackend(vqa.VQABackend):
        name = "replay"

        @property
        def version(self):
            return "replay"

        def answer(self, images, qs, choices):
            assert all(tuple(c) == ("yes", "no") for c in choices)
            out = []
            for im, q in zip(images, qs):
                crop = CROP_COLOURS.index(im.getpixel((0, 0)))
                item = self.item_of(q)
                out.append(recorded(item, crop, questions[q]))
            return out

        @staticmethod
        def item_of(q):
            return next(i for i, _, _, _, _, qq in ROWS if qq == q and i != "first")

    monkeypatch.setitem(vqa.VQA_BACKENDS, "replay", ReplayBackend)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "g.csv").write_text(csv_text())
        records = [r for r in formats.dpg_bench_csv({"graphs": Path(d) / "g.csv"}, {}) if r.id != "first"]
    r = 8
    grid = Image.new("RGB", (2 * r, 2 * r))
    for k, (x, y) in enumerate([(0, 0), (r, 0), (0, r), (r, r)]):
        grid.paste(CROP_COLOURS[k], (x, y, x + r, y + r))
    scorer = DPGBenchScore(vqa="replay", grid="2x2")
    result = scorer.score([grid] * len(records), records, batch_size=2)
    assert {it.id: it.value for it in result.per_item} == pytest.approx(EXPECTED_PROMPT)
    assert result.value == pytest.approx(EXPECTED_SCORE)
    assert result.extra["images_per_prompt"] == 4 and result.version.endswith("/k=4")
