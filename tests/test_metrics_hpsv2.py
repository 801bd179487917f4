"""HPSv2: the batched scorer equals `hpsv2.img_score.score(..., cp=path)` on the same checkpoint.

`hpsv2.img_score` builds ViT-H-14 with the laion weights (a 3.9 GB download) once into its module
cache `model_dict`, then loads the HPS checkpoint given as `cp` into it on every call. The test
puts a tiny CLIP built by hpsv2's own `create_model_and_transforms` (same arguments as its
`initialize_model`, an architecture registered in both open_clips) into that cache; everything else
(checkpoint loading, preprocessing, tokenizer, forward, score) is the library's code.
"""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from t2ibench.compat.hpsv2_turtle import ensure_turtle_importable
from t2ibench.errors import UserError
from t2ibench.images import load_image
from t2ibench.metrics import PromptRecord, scorer_class
from tiny_scorers import build_tiny_hps, make_images

TEXTS = ["a photo of a cat", "a red car on a street", "two dogs playing", "a bowl of fruit",
         "a man riding a horse", "an empty room", "a blue sky", "a plate of pasta"]


@pytest.fixture(scope="module")
def tiny_hps(tmp_path_factory):
    import hpsv2.img_score as img_score
    from hpsv2.src.open_clip import create_model_and_transforms

    folder = tmp_path_factory.mktemp("hps")
    arch, cp = build_tiny_hps(folder / "w")
    sizes = [(96, 64), (64, 96), (256, 256), (300, 200)]
    paths = [p for i, s in enumerate(sizes) for p in make_images(folder / f"img{i}", 2, size=s, seed=10 + i)]
    images = [load_image(p) for p in paths]
    prompts = [PromptRecord(f"p{i}", t) for i, t in enumerate(TEXTS)]
    model, _, preprocess_val = create_model_and_transforms(
        arch, None, precision="amp", device="cpu", jit=False, force_quick_gelu=False, force_custom_text=False,
        force_patch_dropout=False, force_image_size=None, pretrained_image=False, image_mean=None, image_std=None,
        light_augmentation=True, aug_cfg={}, output_dict=True, with_score_predictor=False,
        with_region_predictor=False)
    saved = dict(img_score.model_dict)
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)
    yield arch, cp, images, prompts, img_score
    img_score.model_dict.clear()
    img_score.model_dict.update(saved)


def test_hpsv2_equals_library_score_in_any_batch_size(tiny_hps):
    arch, cp, images, prompts, img_score = tiny_hps
    library = [float(img_score.score(im, p.text, cp=str(cp))[0]) for im, p in zip(images, prompts)]
    scorer = scorer_class("hpsv2")(weights={"hps": cp}, arch=arch)
    for bs in (1, 8):
        got = [it.value for it in scorer.score(images, prompts, batch_size=bs).per_item]
        for g, r in zip(got, library):
            assert g == pytest.approx(r, rel=1e-4, abs=1e-6)
    assert len({round(v, 4) for v in library}) == len(library)
    assert scorer.version == f"hpsv2/hps-v2.0:HPS_v2_compressed/open_clip:{arch}/pad-square"


def test_long_side_already_224_is_padded_not_crashed(tiny_hps, tmp_path):
    arch, cp, images, prompts, img_score = tiny_hps
    narrow = images[0].resize((160, 224))
    with pytest.raises(RuntimeError):  # the library skips padding at scale 1 and the model rejects 224x160
        img_score.score(narrow, prompts[0].text, cp=str(cp))
    padded = Image.new("RGB", (224, 224))
    padded.paste(narrow, ((224 - 160) // 2, 0))
    expected = float(img_score.score(padded, prompts[0].text, cp=str(cp))[0])
    scorer = scorer_class("hpsv2")(weights={"hps": cp}, arch=arch)
    assert scorer.score([narrow], prompts[:1]).value == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_v2_and_v21_are_distinct_and_never_mixed(tiny_hps, tmp_path):
    arch, cp, *_ = tiny_hps
    v20, v21 = scorer_class("hpsv2"), scorer_class("hpsv2.1")
    assert v20.weight_files()[0].filename == "HPS_v2_compressed.pt"
    assert v21.weight_files()[0].filename == "HPS_v2.1_compressed.pt"
    assert v20.declared_version() != v21.declared_version()
    with pytest.raises(UserError, match="hpsv2.1"):
        v20(weights={"hps": cp.with_name("HPS_v2.1_compressed.pt").write_bytes(cp.read_bytes()) and
                     cp.with_name("HPS_v2.1_compressed.pt")}, arch=arch)
    with pytest.raises(UserError, match="is HPS v2.0"):
        v21(weights={"hps": cp}, arch=arch)


def test_checkpoint_of_another_architecture_is_a_user_error(tiny_hps):
    _, cp, *_ = tiny_hps
    with pytest.raises(UserError, match="does not fit open_clip ViT-B-32"):
        scorer_class("hpsv2")(weights={"hps": cp}, arch="ViT-B-32")


def test_turtle_stand_in_only_when_turtle_cannot_import(monkeypatch):
    monkeypatch.delitem(sys.modules, "turtle", raising=False)
    real_available = True
    try:
        import turtle  # noqa: F401
    except ImportError:
        real_available = False
    if real_available:
        assert ensure_turtle_importable() is False
        assert "stand-in" not in (sys.modules["turtle"].__doc__ or "")
    monkeypatch.setitem(sys.modules, "turtle", None)  # what a Python without tkinter looks like to import
    monkeypatch.setitem(sys.modules, "tkinter", None)
    assert ensure_turtle_importable() is True
    from turtle import forward  # hpsv2's vendored factory.py does exactly this

    with pytest.raises(RuntimeError, match="tkinter"):
        forward(10)
