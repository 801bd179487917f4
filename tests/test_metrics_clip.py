"""CLIP score: equals open_clip's own encode + cosine on a tiny open_clip checkpoint, in any batch size."""

from __future__ import annotations

import math

import pytest

from t2ibench.errors import MissingWeightsError, UserError
from t2ibench.images import load_image
from t2ibench.metrics import PromptRecord, scorer_class
from tiny_scorers import build_tiny_clip, make_images

TEXTS = ["a photo of a cat", "a red car on a street", "two dogs playing", "a bowl of fruit",
         "a man riding a horse", "an empty room", "a blue sky", "a plate of pasta", "snow on a mountain"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    arch, path = build_tiny_clip(folder)
    images = [load_image(p) for p in make_images(folder / "img", len(TEXTS), size=(80, 64))]
    prompts = [PromptRecord(f"p{i}", t) for i, t in enumerate(TEXTS)]
    return arch, path, images, prompts


def reference_cosines(arch, path, images, prompts):
    """open_clip's documented recipe, one image at a time."""
    import open_clip
    import torch

    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path))
    tokenizer = open_clip.get_tokenizer(arch)
    out = []
    with torch.no_grad():
        for im, p in zip(images, prompts):
            i = model.encode_image(preprocess(im).unsqueeze(0))
            t = model.encode_text(tokenizer([p.text]))
            i, t = i / i.norm(dim=-1, keepdim=True), t / t.norm(dim=-1, keepdim=True)
            out.append(float((i @ t.T)[0, 0]))
    return out


def test_clip_equals_open_clip_encode_cosine_in_any_batch_size(tiny_clip):
    arch, path, images, prompts = tiny_clip
    ref = reference_cosines(arch, path, images, prompts)
    scorer = scorer_class("clip")(weights={"clip": path}, arch=arch, pretrained="tiny")
    for bs in (1, 8):
        result = scorer.score(images, prompts, batch_size=bs)
        got = [it.value for it in result.per_item]
        assert [it.id for it in result.per_item] == [p.id for p in prompts]
        for g, r in zip(got, ref):
            assert g == pytest.approx(r, rel=1e-4, abs=1e-6)
        assert result.value == pytest.approx(sum(ref) / len(ref), rel=1e-4, abs=1e-6)
    assert len({round(v, 4) for v in ref}) > 3  # the tiny model's scores depend on the input
    assert scorer.version == f"clip/open_clip:{arch}/tiny/cosine"


def test_clip_x100_is_clipped_and_scaled_and_named_apart(tiny_clip):
    arch, path, images, prompts = tiny_clip
    ref = reference_cosines(arch, path, images, prompts)
    scorer = scorer_class("clip-x100")(weights={"clip": path}, arch=arch, pretrained="tiny")
    got = [it.value for it in scorer.score(images, prompts, batch_size=4).per_item]
    assert any(r < 0 for r in ref) and any(r > 0 for r in ref)  # both branches of max(cos, 0) exercised
    for g, r in zip(got, ref):
        assert g == pytest.approx(100 * max(r, 0.0), rel=1e-4, abs=1e-4)
    assert scorer.version.startswith("clip-x100/") and "100x" in scorer.version


def test_default_clip_model_is_openai_vit_l14_quickgelu():
    cls = scorer_class("clip")
    (wf,) = cls.weight_files()
    assert wf.repo_id == "timm/vit_large_patch14_clip_224.openai"
    assert cls.declared_version() == "clip/open_clip:ViT-L-14-quickgelu/openai/cosine"


def test_missing_clip_weights_name_file_and_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as exc:
        scorer_class("clip")()
    msg = str(exc.value)
    assert "open_clip_pytorch_model.bin" in msg and "t2ibench weights fetch --metrics clip" in msg
    assert "\n" not in msg


def test_unknown_weights_key_is_a_user_error(tiny_clip):
    arch, path, *_ = tiny_clip
    with pytest.raises(UserError, match="unknown weights key"):
        scorer_class("clip")(weights={"clip": path, "nope": path}, arch=arch, pretrained="tiny")


def test_unreadable_images_are_skipped_and_counted(tiny_clip):
    arch, path, images, prompts = tiny_clip
    scorer = scorer_class("clip")(weights={"clip": path}, arch=arch, pretrained="tiny")
    result = scorer.score([images[0], None, images[2]], prompts[:3], batch_size=2)
    assert result.n_skipped == 1 and result.n_items == 2
    assert [it.id for it in result.per_item] == ["p0", "p2"]
    assert not math.isnan(result.value)
