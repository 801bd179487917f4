"""PickScore: the batched scorer equals the model card's scoring code on a tiny CLIPModel.

The model and processor are saved with save_pretrained, as `yuvalkirstain/PickScore_v1` and the laion
ViT-H-14 processor are published; the tokenizer is OpenAI CLIP's BPE (open_clip's shipped vocabulary).
"""

from __future__ import annotations

import pytest

from builders.distribution_models import build_tiny_pickscore
from t2ibench.errors import MissingWeightsError, UserError
from t2ibench.images import load_image
from t2ibench.metrics import PromptRecord, scorer_class
from tiny_scorers import make_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["a photo of a cat", "a red car on a street", "two dogs playing in the snow", "a bowl of fruit",
         "a man riding a horse", "an empty room with a very long description of the furniture in it"]


@pytest.fixture(scope="module")
def tiny_pickscore(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pickscore")
    model_dir, proc_dir = build_tiny_pickscore(folder / "w")
    sizes = [(96, 64), (64, 96), (300, 200)]
    paths = [p for i, s in enumerate(sizes) for p in make_images(folder / f"img{i}", 2, size=s, seed=20 + i)]
    images = [load_image(p) for p in paths]
    prompts = [PromptRecord(f"p{i}", t) for i, t in enumerate(TEXTS)]
    return model_dir, proc_dir, images, prompts


def model_card_scores(model_dir, proc_dir, images, prompts):
    """The PickScore model card's `calc_probs` up to the softmax, one (prompt, image) at a time.
    transformers 5 returns the projected embeddings as `pooler_output`; 4.x returned the tensor."""
    import torch
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(proc_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    out = []
    for image, prompt in zip(images, prompts):
        image_inputs = processor(images=[image], padding=True, truncation=True, max_length=77, return_tensors="pt")
        text_inputs = processor(text=prompt.text, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            image_embs = model.get_image_features(**image_inputs)
            image_embs = image_embs if torch.is_tensor(image_embs) else image_embs.pooler_output
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = model.get_text_features(**text_inputs)
            text_embs = text_embs if torch.is_tensor(text_embs) else text_embs.pooler_output
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
        out.append(float(scores[0]))
    return out


def test_pickscore_equals_model_card_code_in_any_batch_size(tiny_pickscore):
    model_dir, proc_dir, images, prompts = tiny_pickscore
    expected = model_card_scores(model_dir, proc_dir, images, prompts)
    scorer = scorer_class("pickscore")(weights={"model": model_dir, "processor": proc_dir})
    for bs in (1, 6):
        result = scorer.score(images, prompts, batch_size=bs)
        assert [it.id for it in result.per_item] == [p.id for p in prompts]
        for got, ref in zip([it.value for it in result.per_item], expected):
            assert got == pytest.approx(ref, rel=1e-4, abs=1e-4)
    assert len({round(v, 3) for v in expected}) == len(expected)  # scores depend on image and text
    assert scorer.version == ("pickscore/transformers:CLIPModel:yuvalkirstain/PickScore_v1/"
                              "processor:laion/CLIP-ViT-H-14-laion2B-s32B-b79K/logit-scale-cosine")


def test_pickscore_missing_weights_and_empty_tokenizer_are_one_line_errors(tiny_pickscore, tmp_path, monkeypatch):
    model_dir, proc_dir, *_ = tiny_pickscore
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as exc:
        scorer_class("pickscore")()
    assert "yuvalkirstain/PickScore_v1" in str(exc.value) and "\n" not in str(exc.value)
    empty = tmp_path / "proc"
    empty.mkdir()
    (empty / "preprocessor_config.json").write_text((proc_dir / "processor_config.json").read_text())
    with pytest.raises(UserError) as exc:
        scorer_class("pickscore")(weights={"model": model_dir, "processor": empty})
    assert "\n" not in str(exc.value)
