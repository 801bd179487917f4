"""VQAScore on a tiny random Qwen2.5-VL saved in the real format and loaded through the real code:
equal to t2v_metrics' own `Qwen2VLModel.forward` on the same weights and images, and batch 1 == batch 8."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from builders.tifa_models import build_tiny_qwen25_vl
from t2ibench.metrics.base import PromptRecord
from t2ibench.metrics.vqascore import VQAScore, skill_means

TEXTS = ["a red cube on a table", "two dogs", "a blue sky over the sea", "Yes, a cat", "a green tree",
         "three apples and a pear", "an old car", "a person riding a horse", "a red cube"]
CORPUS = TEXTS + ['Does this image show "x"? Yes No user assistant system'] * 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("vqascore")
    model_dir = build_tiny_qwen25_vl(root / "qwen", CORPUS, seed=3)
    # The real checkpoints' generation config carries a repetition penalty that t2v_metrics' scores include.
    cfg_path = model_dir / "generation_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["repetition_penalty"] = 1.05
    cfg_path.write_text(json.dumps(cfg))
    paths = []
    for i in range(len(TEXTS)):
        im = Image.effect_noise((40 + 12 * (i % 3), 36 + 8 * (i % 2)), 60 + 10 * i).convert("RGB")
        p = root / f"{i}.png"
        im.save(p)
        paths.append(p)
    return model_dir, paths


def t2v_metrics_qwen(model_dir: Path):
    """t2v_metrics' own Qwen2VLModel, imported without its package __init__ (which requires ffmpeg on
    PATH and imports every model family); its forward is executed unchanged."""
    import importlib.util

    spec = importlib.util.find_spec("t2v_metrics")  # locates the package without running its __init__
    if spec is None:
        pytest.skip("t2v-metrics not installed")
    root = Path(spec.submodule_search_locations[0])
    for name, sub in (("t2v_metrics", ""), ("t2v_metrics.models", "models"),
                      ("t2v_metrics.models.vqascore_models", "models/vqascore_models")):
        if name not in sys.modules or not hasattr(sys.modules[name], "__path__"):
            mod = types.ModuleType(name)
            mod.__path__ = [str(root / sub)]
            mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            mod.__spec__.submodule_search_locations = mod.__path__  # find_spec keeps working
            sys.modules[name] = mod
    qmod = importlib.import_module("t2v_metrics.models.vqascore_models.qwen2vl_model")
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    obj = qmod.Qwen2VLModel.__new__(qmod.Qwen2VLModel)  # their load_model reads the hub id; same objects here
    obj.model_name, obj.device = "qwen2.5-vl-3b", "cpu"
    obj.model_info = qmod.QWEN2_VL_MODELS["qwen2.5-vl-3b"]
    obj.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir).eval()
    obj.processor = AutoProcessor.from_pretrained(model_dir)
    return obj


def test_equals_t2v_metrics_and_batch_invariant(tiny, monkeypatch):
    from PIL import Image

    model_dir, paths = tiny
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("qwen_vl_utils")
    scorer = VQAScore(weights={"vqascore": model_dir}, model="qwen2.5-vl-3b")
    assert scorer.repetition_penalty == 1.05
    images = [Image.open(p).convert("RGB") for p in paths]
    records = [PromptRecord(str(i), t) for i, t in enumerate(TEXTS)]
    b1 = scorer.score(images, records, batch_size=1)
    b8 = scorer.score(images, records, batch_size=8)
    v1 = [it.value for it in b1.per_item]
    v8 = [it.value for it in b8.per_item]
    assert v8 == pytest.approx(v1, rel=1e-4)
    assert max(v1) - min(v1) > 1e-4  # the scores depend on the input

    theirs = t2v_metrics_qwen(model_dir).forward([str(p) for p in paths], TEXTS).tolist()
    assert v8 == pytest.approx(theirs, rel=1e-4)
    assert "q=Does this image show" in b1.version and "qwen2.5-vl-3b" in b1.version


def test_skill_means_follow_genai_bench():
    values = [("a", 1.0), ("a", 0.0), ("b", 0.25), ("c", 1.0), ("d", 0.0)]  # "a" has two images
    skills = {"a": ["basic", "attribute"], "b": ["advanced", "counting", "attribute"], "c": [], "d": ["basic"]}
    means = skill_means(values, skills)
    assert means == {"basic": 0.25, "attribute": 0.375, "advanced": 0.25, "counting": 0.25, "all": 0.25}
