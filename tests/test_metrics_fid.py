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
from t2ibench.metrics.features import EXTRACTED
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


def library_features(folder, weights):
    """torch-fidelity's own folder pipeline (ImagesPathDataset -> extractor), features in file order."""
    from torch_fidelity.utils import create_feature_extractor, extract_featuresdict_from_input_id

    extractor = create_feature_extractor("inception-v3-compat", ["2048"], cuda=False,
                                         feature_extractor_weights_path=str(weights), verbose=False)
    return extract_featuresdict_from_input_id(1, extractor, input1=str(folder), cuda=False, batch_size=2,
                                              save_cpu_ram=True, verbose=False)["2048"]


def test_fid_equals_torch_fidelity_and_caches_the_real_side(fid_setup):
    # Each FID evaluates eigenvalues of a 2048x2048 product (~18 CPU s): two here, none elsewhere.
    root, weights, fake, real = fid_setup
    expected = library_fid(fake, real, weights)
    scorer = fid_scorer(weights, root, real_images=real, resize="torch-fidelity")
    result = score_folder(scorer, fake)
    assert expected > 1.0  # distinct features: a degenerate extractor would give 0
    assert result.value == pytest.approx(expected, rel=1e-4)
    assert result.n_items == N and result.extra["n_real"] == N
    assert result.version.endswith("/torch-fidelity")
    # its interval: a bootstrap over the generated features against the fixed real statistics
    interval = result.extra["interval"]
    assert interval["ci95"][0] <= result.value <= interval["ci95"][1] and interval["n"] == N
    assert interval["method"].startswith("percentile") and scorer.last_features.shape == (N, 2048)
    cached = list((root / "cache" / "features").glob("inception--torch-fidelity--*/lists/*.npz"))
    assert len(cached) == 1
    # A second request for the same real images reads the cache: nothing is encoded again.
    before = EXTRACTED["inception"]
    stats, n_real, skipped = scorer.real_statistics()
    assert EXTRACTED["inception"] == before and n_real == N and skipped == 0 and stats["sigma"].shape == (2048, 2048)


def test_pil_bicubic_protocol_equals_torch_fidelity_on_pre_resized_images(fid_setup, tmp_path):
    import torch

    root, weights, fake, real = fid_setup
    for p in list_images(fake):
        Image.open(p).convert("RGB").resize((299, 299), Image.BICUBIC).save(tmp_path / p.name)
    expected = library_features(tmp_path, weights)
    scorer = fid_scorer(weights, root, real_images=real, resize="pil-bicubic-299")
    got = scorer.features([load_image(p) for p in list_images(fake)])
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert "pil-bicubic-299" in scorer.version


def test_coco_ids_select_the_real_images_and_mixed_sizes_are_refused(fid_setup, tmp_path):
    import torch

    root, weights, fake, real = fid_setup
    coco = tmp_path / "coco"
    ids = [139, 285]
    make_images(coco, 2, size=(96, 72), seed=3, names=[f"COCO_val2014_{i:012d}" for i in ids], ext=".jpg")
    make_images(coco, 1, size=(50, 50), seed=4, names=["COCO_val2014_000000000999"], ext=".jpg")  # not asked for
    images = [load_image(p) for p in list_images(fake)] + [load_image(make_images(tmp_path / "odd", 1, (40, 70))[0])]
    prompts = [PromptRecord(str(i), "", meta={"coco_image_id": i}) for i in ids + [139]]
    scorer = fid_scorer(weights, root, coco_dir=coco, resize="torch-fidelity")
    before = EXTRACTED["inception"]
    with pytest.raises(UserError, match="mixed sizes .*40x70 and 64x64"):
        scorer.update(images, prompts)  # generated images of two sizes: refused before any extraction
    assert EXTRACTED["inception"] == before
    scorer.update(images[:2], prompts[:2])
    with pytest.raises(UserError, match="mixed sizes"):
        scorer.update(images[2:], prompts[2:])  # also across batches
    feats = scorer.features(images)  # real photographs may differ in size: grouped by size
    assert feats.shape == (3, 2048)
    alone = scorer.features(images[2:])  # the odd-sized image's features do not depend on its batch
    assert torch.allclose(feats[2:], alone, rtol=1e-4, atol=1e-5)
    assert [p.name for p in scorer.real_files()] == [f"COCO_val2014_{i:012d}.jpg" for i in ids[:2]]
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
