"""GenEval rules: recorded detections replayed through our rules and through the official code.

Each recorded image is a list of detections (class, box, confidence, the colour the CLIP classifier
gave that object). The expected verdicts are derived by hand from the official rules (comments say
which rule decides); with `$T2IBENCH_OFFICIAL_SRC` set (see tests/official_code.py), the official
`evaluate_image` and `summary_scores.py` also run on the same records and must agree image by image
and in every aggregate.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from official_code import official_file, official_functions
from t2ibench.metrics.geneval import rules
from t2ibench.metrics.geneval.detector import OBJECT_NAMES

DOG = {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"}
THREE_CATS = {"tag": "counting", "include": [{"class": "cat", "count": 3}], "exclude": [{"class": "cat", "count": 4}],
              "prompt": "a photo of three cats"}
RED_CAR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
CAT_RIGHT_OF_DOG = {"tag": "position", "include": [{"class": "dog", "count": 1},
                                                   {"class": "cat", "count": 1, "position": ["right of", 0]}],
                    "prompt": "a photo of a cat right of a dog"}
RED_DOG_BLUE_CAT = {"tag": "color_attr", "include": [{"class": "dog", "count": 1, "color": "red"},
                                                     {"class": "cat", "count": 1, "color": "blue"}],
                    "prompt": "a photo of a red dog and a blue cat"}

B = (0, 0, 10, 10)
# (prompt metadata, recorded detections [(class, box, score, colour)], expected verdict by hand)
CASES = [
    (DOG, [("dog", B, 0.95, "brown")], True),
    (DOG, [("dog", B, 0.25, "brown")], False),                      # below the 0.3 threshold
    (DOG, [("dog", B, 0.30, "brown")], False),                      # threshold is strict (> 0.3)
    (DOG, [("cat", B, 0.99, "black")], False),                      # wrong class
    (THREE_CATS, [("cat", (0, 0, 9, 9), 0.95, "white"), ("cat", (20, 0, 29, 9), 0.92, "white"),
                  ("cat", (40, 0, 49, 9), 0.91, "white")], True),
    (THREE_CATS, [("cat", (0, 0, 9, 9), 0.95, "white"), ("cat", (20, 0, 29, 9), 0.92, "white"),
                  ("cat", (40, 0, 49, 9), 0.85, "white")], False),  # counting threshold 0.9
    (THREE_CATS, [("cat", (i * 20, 0, i * 20 + 9, 9), 0.95, "white") for i in range(4)], False),  # exclude: 4 >= 4
    (THREE_CATS, [("cat", (0, 0, 9, 9), 0.95, "white"), ("cat", (20, 0, 29, 9), 0.92, "white"),
                  ("cat", (40, 0, 49, 9), 0.91, "white"), ("cat", (60, 0, 69, 9), 0.5, "white")], True),  # 0.5 dropped
    (RED_CAR, [("car", B, 0.9, "red")], True),
    (RED_CAR, [("car", B, 0.9, "blue"), ("car", (20, 0, 30, 10), 0.8, "red")], False),  # only the top-1 car judged
    (RED_CAR, [("car", B, 0.9, "red"), ("car", (20, 0, 30, 10), 0.9, "blue")], False),  # tie: numpy order puts
    # the second first (argsort [0, 1] reversed), and it is blue
    (CAT_RIGHT_OF_DOG, [("dog", (0, 0, 10, 10), 0.9, "brown"), ("cat", (50, 0, 60, 10), 0.9, "black")], True),
    (CAT_RIGHT_OF_DOG, [("dog", (0, 0, 10, 10), 0.9, "brown"), ("cat", (1, 0, 11, 10), 0.9, "black")], False),
    # centre offset 1 px < 0.1 * (10 + 10): no relation at all
    (CAT_RIGHT_OF_DOG, [("cat", (50, 0, 60, 10), 0.9, "black")], False),  # no dog: the target group failed
    (CAT_RIGHT_OF_DOG, [("dog", (0, 0, 10, 10), 0.9, "brown"), ("cat", (30, 30, 40, 40), 0.9, "black")], True),
    # diagonal: (28, 28) / 42.4 = 0.66 > 0.5 in both axes -> {right of, below}
    (RED_DOG_BLUE_CAT, [("dog", B, 0.9, "red"), ("cat", (30, 0, 40, 10), 0.9, "blue")], True),
    (RED_DOG_BLUE_CAT, [("dog", B, 0.9, "red"), ("cat", (30, 0, 40, 10), 0.9, "green")], False),
]
# By hand: single_object 1/4, counting 2/4, colors 1/3, position 2/4, color_attr 1/2.
EXPECTED_BY_TAG = {"single_object": 0.25, "counting": 0.5, "colors": 1 / 3, "position": 0.5, "color_attr": 0.5}
EXPECTED_OVERALL = (0.25 + 0.5 + 1 / 3 + 0.5 + 0.5) / 5


def colour_lookup(recorded):
    table = {(c, tuple(float(v) for v in box)): colour for c, box, _, colour in recorded}
    return lambda objs, classname: [table[(classname, tuple(float(v) for v in o.box[:4]))] for o in objs]


def ours(metadata, recorded):
    raw: dict[str, list[rules.Detection]] = {}
    for c, box, score, _ in recorded:
        raw.setdefault(c, []).append(rules.Detection(box=tuple(float(v) for v in box), score=score))
    kept = rules.keep_detections(raw, metadata["tag"])
    return rules.evaluate(kept, metadata, colour_lookup(recorded))[0]


def test_rules_match_hand_derived_verdicts():
    verdicts = [ours(meta, rec) for meta, rec, _ in CASES]
    assert verdicts == [expected for _, _, expected in CASES]
    summary = rules.summarize([(meta["prompt"], meta["tag"], ok) for (meta, _, _), ok in zip(CASES, verdicts)])
    assert summary.by_tag == pytest.approx(EXPECTED_BY_TAG)
    assert summary.overall == pytest.approx(EXPECTED_OVERALL)
    assert list(summary.by_tag) == ["single_object", "counting", "colors", "position", "color_attr"]


def test_keep_detections_caps_and_overlap():
    many = {"dog": [rules.Detection((i, 0, i + 5, 5), 0.5 + i / 100) for i in range(20)]}
    kept = rules.keep_detections(many, "single_object")["dog"]
    assert len(kept) == 16 and kept[0].score == pytest.approx(0.69)  # most confident first, 16 at most
    overlapping = {"dog": [rules.Detection((0, 0, 10, 10), 0.9), rules.Detection((1, 0, 11, 10), 0.8),
                           rules.Detection((50, 0, 60, 10), 0.7)]}
    th = rules.Thresholds(max_overlap=0.5)
    assert [d.score for d in rules.keep_detections(overlapping, "single_object", th)["dog"]] == [0.9, 0.7]
    assert th.tag() != rules.Thresholds().tag() == "official"


def _official_env(recorded_by_file: dict[str, list]) -> dict:
    from PIL import Image, ImageOps

    def inference_detector(_detector, filepath):  # the recorded detector output, in mmdet's layout
        bbox = [np.zeros((0, 5), dtype=np.float32) for _ in OBJECT_NAMES]
        for c, box, score, _ in recorded_by_file[filepath]:
            i = OBJECT_NAMES.index(c)
            bbox[i] = np.vstack([bbox[i], np.array([[*box, score]], dtype=np.float32)])
        return bbox

    def color_classification(_image, objs, classname):  # the recorded CLIP colours
        table = {(c, tuple(float(v) for v in box)): colour for c, box, _, colour in recorded_by_file[current[0]]}
        return [table[(classname, tuple(float(v) for v in o[0][:4]))] for o in objs]

    current = [None]
    env = {"np": np, "json": json, "Image": Image, "ImageOps": ImageOps, "object_detector": None,
           "inference_detector": inference_detector, "color_classification": color_classification,
           "classnames": list(OBJECT_NAMES), "COLORS": list(rules.COLORS), "THRESHOLD": 0.3,
           "COUNTING_THRESHOLD": 0.9, "MAX_OBJECTS": 16, "NMS_THRESHOLD": 1.0, "POSITION_THRESHOLD": 0.1}
    return env, current


def test_official_code_agrees_image_by_image_and_in_aggregate(tmp_path):
    from PIL import Image

    files = {}
    for i, (_, rec, _) in enumerate(CASES):
        path = tmp_path / f"{i:05d}.png"
        Image.new("RGB", (96, 64), "gray").save(path)
        files[str(path)] = rec
    env, current = _official_env(files)
    fns = official_functions("geneval/evaluation/evaluate_images.py",
                             ["compute_iou", "relative_position", "evaluate", "evaluate_image"], env)
    rows = []
    for (meta, rec, _), path in zip(CASES, files):
        current[0] = path
        # float32 boxes as the detector gives them: our side sees the same values
        rows.append(fns["evaluate_image"](path, meta))
    official = [r["correct"] for r in rows]
    assert official == [ours(meta, rec) for meta, rec, _ in CASES]

    import pandas as pd

    results = tmp_path / "results.jsonl"
    with open(results, "w") as fp:
        pd.DataFrame(rows).to_json(fp, orient="records", lines=True)
    script = official_file("geneval/evaluation/summary_scores.py")
    (tmp_path / "object_names.txt").write_text("\n".join(OBJECT_NAMES) + "\n")
    out = subprocess.run([sys.executable, str(script), str(results)], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    overall = float(out.rsplit("Overall score (avg. over tasks):", 1)[1])
    by_tag = {line.split("=")[0].strip(): float(line.split("=")[1].split("%")[0]) / 100
              for line in out.splitlines() if "%" in line and "=" in line and "(" in line}
    summary = rules.summarize([(meta["prompt"], meta["tag"], ok) for (meta, _, _), ok in zip(CASES, official)])
    assert overall == pytest.approx(summary.overall, abs=1e-5)
    assert by_tag == pytest.approx(summary.by_tag, abs=1e-4)  # printed as percentages with 2 decimals
