"""FID: equals torch_fidelity.calculate_metrics on the same folders and Inception weights.

torch-fidelity's InceptionV3 has a fixed size (~0.4 s per image on a CPU), so the folders hold a
handful of images; its convolutions are re-initialised (kaiming) so features differ between images.
"""

from __future__ import annotations

import pytest
from PIL import Image

from t2ibench.errors import UserError
from t2ibench.images import list_images, load_image
from t2ibench.metrics import PromptRecord, scorer_class
from tiny_scorers import build_inception_weights, make_images

N = 2  # FID's minimum; each image costs a full InceptionV3 pass


@pytest.fixture(scope="module")
def fid_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    weights = build_inception_weights(root / "inception.pth")
    fake = root / "fake"
    real = root / "real"
    make_images(fake, N, size=(64, 64), seed=1)
    make_images(real, N, size=(64, 64), seed=2)
    return root, weights, fake, real


def fid_scorer(weights, root, **options):
    return scorer_class("fid")(weights={"inception": weights}, cache_dir=root / "cache", **options)


def score_folder(scorer, folder):
    images = [load_image(p) for p in list_images(folder)]
    return scorer.score(images, [PromptRecord(str(i), "") for i in range(len(images))], batch_size=2)


def library_fid(a, b, weights):
    import torch_fidelity

    return torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), fid=True, cuda=False, verbose=False,
                                            feature_extractor_weights_path=str(weights), batch_size=2,
                                            save_cpu_ram=True, cache=False)["frechet_inception_distance"]


def test_fid_equals_torch_fidelity_and_caches_the_real_side(fid_setup):
    root, weights, fake, real = fid_setup
    expected = library_fid(fake, real, weights)
    scorer = fid_scorer(weights, root, real_images=real, resize="torch-fidelity")
    result = score_folder(scorer, fake)
    assert expected > 1.0  # distinct features: a degenerate extractor would give 0
    assert result.value == pytest.approx(expected, rel=1e-4)
    assert result.n_items == N and result.extra["n_real"] == N
    assert result.version.endswith("/torch-fidelity")
    cached = list((root / "cache" / "fid").glob("real-*.npz"))
    assert len(cached) == 1
    # The second pass reads the real side from the cache (same key) and gives the same number.
    scorer.extractor_calls = 0
    original = scorer.features

    def counting(images, batch_size=None):
        scorer.extractor_calls += len(images)
        return original(images, batch_size)

    scorer.features = counting
    again = score_folder(scorer, fake)
    assert again.value == pytest.approx(result.value, rel=1e-9)
    assert scorer.extractor_calls == N  # only the generated images were encoded


def test_pil_bicubic_protocol_equals_torch_fidelity_on_pre_resized_images(fid_setup, tmp_path):
    root, weights, fake, real = fid_setup
    for src in (fake, real):
        for p in list_images(src):
            (tmp_path / src.name).mkdir(exist_ok=True)
            Image.open(p).convert("RGB").resize((299, 299), Image.BICUBIC).save(tmp_path / src.name / p.name)
    expected = library_fid(tmp_path / "fake", tmp_path / "real", weights)
    result = score_folder(fid_scorer(weights, root, real_images=real, resize="pil-bicubic-299"), fake)
    assert result.value == pytest.approx(expected, rel=1e-4)
    assert "pil-bicubic-299" in result.version


def test_coco_ids_select_the_real_images_and_mixed_sizes_are_handled(fid_setup, tmp_path):
    root, weights, fake, real = fid_setup
    coco = tmp_path / "coco"
    ids = [139, 285]
    make_images(coco, 2, size=(96, 72), seed=3, names=[f"COCO_val2014_{i:012d}" for i in ids], ext=".jpg")
    make_images(coco, 1, size=(50, 50), seed=4, names=["COCO_val2014_000000000999"], ext=".jpg")  # not asked for
    images = [load_image(p) for p in list_images(fake)] + [load_image(make_images(tmp_path / "odd", 1, (40, 70))[0])]
    prompts = [PromptRecord(str(i), "", meta={"coco_image_id": i}) for i in ids + [139]]
    scorer = fid_scorer(weights, root, coco_dir=coco, resize="center-crop-32")
    scorer._coco_ids = [p.meta["coco_image_id"] for p in prompts]
    assert [p.name for p in scorer.real_files()] == [f"COCO_val2014_{i:012d}.jpg" for i in ids]
    scorer.reset()
    result = scorer.score(images, prompts, batch_size=8)  # 64x64 and 40x70 generated images in one run
    assert result.extra["n_real"] == 2 and result.n_items == 3 and result.value > 0
    missing = fid_scorer(weights, root, coco_dir=coco)
    missing._coco_ids = [12345]
    with pytest.raises(UserError, match="COCO images not found"):
        missing.real_files()


def test_fid_needs_two_images_and_a_real_side(fid_setup):
    root, weights, fake, real = fid_setup
    one = [load_image(list_images(fake)[0])]
    with pytest.raises(UserError, match="at least 2"):
        fid_scorer(weights, root, real_images=real).score(one, [PromptRecord("0", "")])
    with pytest.raises(UserError, match="real images"):
        fid_scorer(weights, root)
    with pytest.raises(UserError, match="resize protocol"):
        fid_scorer(weights, root, real_images=real, resize="bilinear-7")


def test_fid_refuses_pickled_non_tensor_weights(fid_setup, tmp_path):
    import torch

    root, *_ = fid_setup
    bad = tmp_path / "evil.pth"
    torch.save({"x": object()}, bad)
    with pytest.raises(UserError, match="not a plain state_dict"):
        fid_scorer(bad, root, real_images=root)
