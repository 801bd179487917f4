"""TIFA's VQA backends on tiny randomly initialised checkpoints of the real architectures.

Each checkpoint is saved with save_pretrained (config, safetensors, processor and tokenizer files) and
loaded through the real backend and the real weight resolution, then answers questions of the official
TIFA sample on its real images.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from builders.tifa_models import build_tiny_blip_vqa, build_tiny_qwen25_vl
from t2ibench.metrics.base import PromptRecord
from t2ibench.metrics.tifa import TIFAScore
from t2ibench.metrics.tifa.blip import BlipVQACapfiltLarge
from t2ibench.metrics.tifa.qwen import Qwen25VL3B, match_choice

MINILM = "all-minilm-l6-v2"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sample(shared_data):
    root = shared_data / "prompts" / "tifa" / "sample"
    qa = json.loads((root / "sample_question_answers.json").read_text())
    texts = json.loads((root / "sample_text_inputs.json").read_text())
    images = {t["id"]: Image.open(root / f"{t['id']}.jpg").convert("RGB") for t in texts}
    return {"root": root, "qa": qa, "texts": texts, "images": images,
            "questions_file": root / "sample_question_answers.json"}


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    return build_tiny_blip_vqa(tmp_path_factory.mktemp("blip") / "blip-vqa-capfilt-large")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory, shared_data):
    texts = json.loads((shared_data / "prompts" / "tifa" / "tifa_v1.0_text_inputs.json").read_text())
    corpus = [t["caption"] for t in texts[:1500]] + ["yes", "no", "Choices", "Answer with exactly one"]
    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("qwen") / "qwen", corpus)


def test_blip_batched_answers_equal_library_generate(tiny_blip, sample):
    backend = BlipVQACapfiltLarge(weights=tiny_blip, batch_size=8)
    assert len(backend.processor.tokenizer) == 30524
    qa = sample["qa"]
    images = [sample["images"][e["id"]] for e in qa]
    batched = backend.answer(images, [e["question"] for e in qa], [e["choices"] for e in qa])
    # The official wrapper, one question at a time: processor(image, question) -> model.generate(max_length=50).
    for image, entry, answer in zip(images, qa, batched):
        inputs = backend.processor(images=image, text=entry["question"], return_tensors="pt")
        expected = backend.processor.batch_decode(backend.model.generate(**inputs, max_length=50),
                                                  skip_special_tokens=True)[0]
        assert answer == expected
    assert len(set(batched)) > 1  # the tiny model's answers depend on the input


def test_tifa_with_blip_end_to_end(tiny_blip, sample, monkeypatch):
    # Real resolution: the checkpoint found under $T2IBENCH_WEIGHTS/<repo id>/.
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tiny_blip.parent))
    (tiny_blip.parent / "Salesforce").mkdir(exist_ok=True)
    link = tiny_blip.parent / "Salesforce" / "blip-vqa-capfilt-large"
    if not link.exists():
        link.symlink_to(tiny_blip, target_is_directory=True)
    scorer = TIFAScore(questions=sample["questions_file"], mapper=MINILM)
    assert scorer.version.startswith("questions-sha256:") and "vqa=blip-vqa-capfilt-large@local" in scorer.version
    prompts = [PromptRecord(t["id"], t["caption"]) for t in sample["texts"]]
    result = scorer.score([sample["images"][p.id] for p in prompts], prompts)

    standalone = scorer.backend.answer([sample["images"][e["id"]] for e in sample["qa"]],
                                       [e["question"] for e in sample["qa"]], [e["choices"] for e in sample["qa"]])
    details = [d for it in result.per_item for d in it.details["questions"]]
    assert [d["free_form"] for d in details] == standalone
    for d, entry in zip(details, sample["qa"]):
        assert d["mapped"] in entry["choices"]
        assert d["score"] == int(d["mapped"] == entry["answer"])
    caption_means = [sum(d["score"] for d in it.details["questions"]) / len(it.details["questions"])
                     for it in result.per_item]
    assert result.value == pytest.approx(sum(caption_means) / len(caption_means))
    assert result.extra["n_questions"] == 19 and result.extra["complete"] is True


def test_blip_rejects_checkpoint_without_tokenizer(tiny_blip, tmp_path):
    broken = tmp_path / "no-tokenizer"
    broken.mkdir()
    for name in ("config.json", "model.safetensors", "processor_config.json", "generation_config.json"):
        (broken / name).symlink_to(tiny_blip / name)
    with pytest.raises(Exception, match="tokenizer"):
        BlipVQACapfiltLarge(weights=broken)


def test_qwen_batched_equals_one_at_a_time(tiny_qwen, sample):
    backend = Qwen25VL3B(weights=tiny_qwen, batch_size=6)
    assert len(backend.processor.tokenizer) >= 300
    qa = sample["qa"][8:14]  # both images, yes/no and multiple-choice questions of different lengths
    images = [sample["images"][e["id"]] for e in qa]
    args = (images, [e["question"] for e in qa], [e["choices"] for e in qa])
    batched = backend.answer(*args)
    backend.batch_size = 1
    assert backend.answer(*args) == batched
    prompt = backend.prompt("what color is the sky?", ["gray", "black"])
    assert "Choices: gray, black" in prompt and "<|image_pad|>" in prompt


def test_tifa_with_qwen_end_to_end(tiny_qwen, sample):
    scorer = TIFAScore(vqa="qwen2.5-vl-3b", weights={"vqa": tiny_qwen}, questions=sample["questions_file"],
                       mapper=MINILM, vqa_batch_size=19)
    assert "vqa=qwen2.5-vl-3b@local" in scorer.version
    prompts = [PromptRecord(t["id"], t["caption"]) for t in sample["texts"]]
    result = scorer.score([sample["images"][p.id] for p in prompts], prompts)
    details = [d for it in result.per_item for d in it.details["questions"]]
    assert len(details) == 19
    assert all(d["mapped"] in d["choices"] and d["score"] == int(d["mapped"] == d["answer"]) for d in details)
    assert 0.0 <= result.value <= 1.0


def test_match_choice():
    assert match_choice("Yes.", ["yes", "no"]) == "yes"
    assert match_choice(" Gray ", ["gray", "blue"]) == "gray"
    assert match_choice("a gray sky", ["gray", "blue"]) == "a gray sky"  # left to TIFA's answer mapping
