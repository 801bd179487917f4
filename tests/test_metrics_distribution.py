"""Distribution metrics on one feature cache: CMMD, FD-DINOv2, KID, precision/recall, density/coverage.

* Each equals its reference on the same tiny weights and images: CMMD the google-research formula
  written out below; FD-DINOv2 dgm-eval's computation (its torchvision transform, float64 statistics,
  scipy sqrtm), spelled out because dgm-eval is not on PyPI; KID and precision/recall
  `torch_fidelity.calculate_metrics` itself; density/coverage `prdc.compute_prdc`.
* The cache is shared: FID, then CMMD and FD-DINOv2 (then KID, precision, recall, density, coverage)
  on the same images run Inception once per image.
* Known answers: identical sets give 0, a shifted copy more; KID is unbiased.
* Bad input stops with one line before any feature is extracted.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from builders.distribution_models import build_tiny_clip_vision, build_tiny_dinov2
from t2ibench.errors import MissingWeightsError, UserError
from t2ibench.images import list_images, load_image
from t2ibench.metrics import PromptRecord, scorer_class
from t2ibench.metrics.features import EXTRACTED
from tiny_scorers import build_inception_weights, make_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 4  # Inception images per side (k=3 neighbours need 4) (each a full InceptionV3 pass on a CPU)
N_DINO = 24  # FD needs more images than the tiny DINOv2's 16 dimensions for a full-rank covariance


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    w = {"inception": build_inception_weights(root / "inception.pth"),
         "clip": build_tiny_clip_vision(root / "clip"), "dino": build_tiny_dinov2(root / "dino")}
    make_images(root / "gen", N, size=(64, 64), seed=1)
    make_images(root / "real", N, size=(64, 64), seed=2)
    make_images(root / "gen24", N_DINO, size=(48, 40), seed=3)
    make_images(root / "real24", N_DINO, size=(40, 48), seed=4)
    for name in ("gen", "gen24"):  # the same images, brighter: a shifted copy
        (root / f"{name}-shifted").mkdir()
        for p in list_images(root / name):
            arr = np.asarray(Image.open(p).convert("RGB")).astype(np.int16) + 60
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / f"{name}-shifted" / p.name)
    return root, w


def load(folder):
    return [load_image(p) for p in list_images(folder)]


def prompts(n):
    return [PromptRecord(str(i), "") for i in range(n)]


def scorer(name, weights, root, **options):
    key = {"clip": "clip-vit-l14-336", "dino": "dinov2-vit-l14", "inception": "inception"}
    wkey = {"cmmd": "clip", "fd-dinov2": "dino"}.get(name, "inception")
    return scorer_class(name)(weights={key[wkey]: weights[wkey]}, cache_dir=root / "cache", **options)


def score(s, folder, bs=4):
    images = load(folder)
    return s.score(images, prompts(len(images)), batch_size=bs)


# -- references --------------------------------------------------------------------------------------

def official_cmmd_embeddings(model_dir, folder):
    """google-research/cmmd: centre square crop + PIL bicubic to the model's size (io_util), /255,
    CLIP mean/std, then the CLIP image embedding, L2-normalised."""
    import torch
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(str(model_dir)).eval()
    size = model.config.image_size
    out = []
    for p in list_images(folder):
        im = Image.open(p)
        im.load()
        w, h = im.size
        side = min(w, h)
        top, left = (h - side) // 2, (w - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), resample=Image.BICUBIC)
        x = np.asarray(im).astype(np.float32) / 255.0
        x = (x - np.array([0.48145466, 0.4578275, 0.40821073])) / np.array([0.26862954, 0.26130258, 0.27577711])
        with torch.no_grad():
            e = model(pixel_values=torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]).image_embeds[0]
        out.append((e / e.norm()).numpy())
    return np.stack(out)


def official_mmd(x, y, sigma=10, scale=1000):
    """distance.mmd of google-research/cmmd, in numpy: the biased estimator, diagonals included."""
    x_sq, y_sq = np.diag(x @ x.T), np.diag(y @ y.T)
    gamma = 1 / (2 * sigma ** 2)
    k_xx = np.mean(np.exp(-gamma * (-2 * x @ x.T + x_sq[:, None] + x_sq[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * x @ y.T + x_sq[:, None] + y_sq[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * y @ y.T + y_sq[:, None] + y_sq[None, :])))
    return scale * (k_xx + k_yy - 2 * k_xy)


def dgm_eval_representations(model_dir, folder):
    """dgm-eval's DINOv2 path: torchvision Resize((224, 224), BICUBIC) + ToTensor + Normalize(ImageNet)
    on each PIL image, the model's CLS output, stored as float64."""
    import torch
    import torchvision.transforms as TF
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(str(model_dir)).eval()
    transform = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor(),
                            TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))])
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in list_images(folder)]).float()
    with torch.no_grad():
        reps = model(pixel_values=batch).pooler_output
    return reps.numpy().astype(np.float64)


def dgm_eval_fd(reps1, reps2, eps=1e-6):
    """dgm_eval.metrics.fd.compute_FD_with_reps, step by step."""
    from scipy import linalg

    mu1, sigma1 = np.mean(reps1, axis=0), np.cov(reps1, rowvar=False)
    mu2, sigma2 = np.mean(reps2, axis=0), np.cov(reps2, rowvar=False)
    covmean = linalg.sqrtm(sigma1.dot(sigma2))  # dgm-eval: disp=False (deprecated in SciPy 1.17), same matrix
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


# -- the shared cache, and equality with torch-fidelity and prdc ------------------------------------

def test_fid_then_cmmd_and_fd_dinov2_extract_inception_once(setup):
    import torch_fidelity
    from prdc import compute_prdc

    root, w = setup
    start = Counter(EXTRACTED)
    fid = score(scorer("fid", w, root, real_images=root / "real", resize="torch-fidelity"), root / "gen")
    assert fid.value > 0 and EXTRACTED["inception"] - start["inception"] == 2 * N
    cmmd = score(scorer("cmmd", w, root, real_images=root / "real"), root / "gen")
    fd = score(scorer("fd-dinov2", w, root, real_images=root / "real"), root / "gen")
    assert cmmd.value > 0 and np.isfinite(fd.value)
    assert EXTRACTED["clip-vit-l14-336"] - start["clip-vit-l14-336"] == 2 * N
    assert EXTRACTED["dinov2-vit-l14"] - start["dinov2-vit-l14"] == 2 * N
    # KID, precision, recall, density, coverage read the Inception features FID cached
    opts = {"real_images": root / "real", "resize": "torch-fidelity"}
    kid = score(scorer("kid", w, root, subsets=10, subset_size=4, **opts), root / "gen")
    k = {"precision": 3, "recall": 3, "density": 2, "coverage": 2}  # prdc needs k + 2 images per side
    got = {m: score(scorer(m, w, root, k=k[m], **opts), root / "gen") for m in k}
    assert EXTRACTED["inception"] - start["inception"] == 2 * N  # nothing extracted again
    assert {got[m].extra["extractor"] for m in got} == {kid.extra["extractor"], fid.extra["extractor"]}
    assert "poly3-10x4" in kid.version and got["density"].version.endswith("/k2")

    # torch-fidelity's own numbers on the same folders and weights (its own extraction pipeline)
    lib = torch_fidelity.calculate_metrics(
        input1=str(root / "gen"), input2=str(root / "real"), kid=True, prc=True, cuda=False, verbose=False,
        feature_extractor="inception-v3-compat", feature_layer_kid="2048", feature_layer_prc="2048",
        feature_extractor_weights_path=str(w["inception"]), batch_size=4, cache=False, kid_subsets=10,
        kid_subset_size=4, prc_neighborhood=3, save_cpu_ram=True)
    assert kid.value == pytest.approx(lib["kernel_inception_distance_mean"], rel=1e-4, abs=1e-7)
    assert kid.extra["kid_std"] == pytest.approx(lib["kernel_inception_distance_std"], rel=1e-4, abs=1e-7)
    assert got["precision"].value == lib["precision"] and got["recall"].value == lib["recall"]
    # prdc on the same features (torch-fidelity's, as the KID and precision/recall equalities show)
    fid_scorer = scorer("fid", w, root, **opts)
    feats = {k: fid_scorer.features(load(root / k)).numpy() for k in ("gen", "real")}
    ref = compute_prdc(real_features=feats["real"], fake_features=feats["gen"], nearest_k=2)
    assert EXTRACTED["inception"] - start["inception"] == 2 * N
    assert got["density"].value == pytest.approx(ref["density"], rel=1e-6)
    assert got["coverage"].value == pytest.approx(ref["coverage"], rel=1e-6)

    # a fresh scorer (another process: no model loaded) on the same images reads everything from disk
    from t2ibench.metrics import features

    features._LOADED.clear()
    before = Counter(EXTRACTED)
    again = score(scorer("cmmd", w, root, real_images=root / "real"), root / "gen")
    assert again.value == cmmd.value and EXTRACTED == before and not features._LOADED


# -- CMMD ------------------------------------------------------------------------------------------

def test_cmmd_equals_the_official_formula_zero_on_itself_larger_when_shifted(setup):
    root, w = setup
    got = score(scorer("cmmd", w, root, real_images=root / "real"), root / "gen", bs=2)
    x = official_cmmd_embeddings(w["clip"], root / "real")
    y = official_cmmd_embeddings(w["clip"], root / "gen")
    expected = official_mmd(x, y)
    assert expected > 0.01
    assert got.value == pytest.approx(expected, rel=1e-4)
    assert got.version == ("cmmd/transformers:CLIPVisionModelWithProjection:openai/clip-vit-large-patch14-336/"
                           "center-crop-pil-bicubic/rbf-sigma10-x1000")
    itself = score(scorer("cmmd", w, root, real_images=root / "gen"), root / "gen").value
    shifted = score(scorer("cmmd", w, root, real_images=root / "gen"), root / "gen-shifted").value
    assert itself == pytest.approx(0.0, abs=1e-9)
    assert shifted > 1e-3 > itself


# -- FD-DINOv2 -------------------------------------------------------------------------------------

def test_fd_dinov2_equals_dgm_eval_zero_on_itself_larger_when_shifted(setup):
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    root, w = setup
    got = score(scorer("fd-dinov2", w, root, real_images=root / "real24"), root / "gen24", bs=8)
    reps_real = dgm_eval_representations(w["dino"], root / "real24")
    reps_gen = dgm_eval_representations(w["dino"], root / "gen24")
    expected = dgm_eval_fd(reps_real, reps_gen)
    assert expected > 0.01
    assert got.value == pytest.approx(expected, rel=1e-5)
    # torch-fidelity's eigenvalue route to the same distance agrees (another algorithm, same number)
    stats = [{"mu": r.mean(0), "sigma": np.cov(r, rowvar=False)} for r in (reps_real, reps_gen)]
    assert fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"] == pytest.approx(expected, rel=1e-4)
    assert got.version == "fd-dinov2/transformers:Dinov2Model:facebook/dinov2-large/resize-bicubic-224/dgm-eval-fd"
    itself = score(scorer("fd-dinov2", w, root, real_images=root / "gen24"), root / "gen24").value
    shifted = score(scorer("fd-dinov2", w, root, real_images=root / "gen24"), root / "gen24-shifted").value
    assert abs(itself) < 1e-6 * expected
    assert shifted > 100 * abs(itself) and shifted > 0.01


# -- KID is unbiased ---------------------------------------------------------------------------------

def test_kid_is_unbiased_on_resampled_same_distribution_sets(setup):
    import torch

    root, w = setup
    kid = scorer("kid", w, root, real_images=root / "gen24", subsets=5, subset_size=5)
    g = torch.Generator().manual_seed(0)
    same, shifted = [], []
    for _ in range(40):
        a, b = torch.randn(40, 32, generator=g), torch.randn(40, 32, generator=g)
        same.append(kid.distance(a, b)[0])
        shifted.append(kid.distance(a + 0.5, b)[0])
    mean, se = np.mean(same), np.std(same, ddof=1) / np.sqrt(len(same))
    assert abs(mean) < 3 * se  # expectation 0: no positive bias
    assert min(same) < 0 < max(same)  # the unbiased estimate goes below zero; a biased one never does
    assert np.mean(shifted) > mean + 10 * se


# -- bad input ---------------------------------------------------------------------------------------

def test_too_few_images_mixed_sizes_and_missing_weights_stop_before_extraction(setup, tmp_path, monkeypatch):
    root, w = setup
    before = Counter(EXTRACTED)
    one = load(root / "gen")[:1]
    with pytest.raises(UserError, match="cmmd needs at least 2 generated images; got 1"):
        scorer("cmmd", w, root, real_images=root / "real").score(one, prompts(1))
    with pytest.raises(UserError, match="kid needs at least 10 generated images; got 4"):
        score(scorer("kid", w, root, real_images=root / "gen24", subset_size=10), root / "gen")
    with pytest.raises(UserError, match="kid needs at least 10 real images"):
        scorer("kid", w, root, real_images=root / "real", subset_size=10)
    mixed = load(root / "gen")[:2] + load(root / "gen24")[:1]
    with pytest.raises(UserError, match="mixed sizes"):
        scorer("fd-dinov2", w, root, real_images=root / "real24").score(mixed, prompts(3))
    with pytest.raises(UserError, match="not a transformers model folder"):
        scorer_class("cmmd")(weights={"clip-vit-l14-336": tmp_path}, real_images=root / "real")
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for name, repo in (("cmmd", "openai/clip-vit-large-patch14-336"), ("fd-dinov2", "facebook/dinov2-large")):
        with pytest.raises(MissingWeightsError) as exc:
            scorer_class(name)(real_images=root / "real")
        assert repo in str(exc.value) and f"weights fetch --metrics {name}" in str(exc.value)
        assert "\n" not in str(exc.value)
    assert EXTRACTED == before


# -- t2ibench features build ---------------------------------------------------------------------------

def test_features_build_fills_the_cache_scorers_read(setup, tmp_path, capsys):
    from t2ibench.cli import main

    root, w = setup
    cache = tmp_path / "cache"
    args = ["features", "build", "--images", str(root / "real"), "--metrics", "cmmd",
            "--weights", f"clip-vit-l14-336={w['clip']}", "--cache-dir", str(cache), "--format", "json"]
    before = EXTRACTED["clip-vit-l14-336"]
    assert main(args) == 0
    assert f'"extracted": {N}' in capsys.readouterr().out and EXTRACTED["clip-vit-l14-336"] == before + N
    s = scorer_class("cmmd")(weights={"clip-vit-l14-336": w["clip"]}, real_images=root / "real", cache_dir=cache)
    images = load(root / "gen")
    s.score(images, prompts(N))
    assert EXTRACTED["clip-vit-l14-336"] == before + 2 * N  # only the generated side was new
    assert main(args) == 0 and '"extracted": 0' in capsys.readouterr().out
    assert main(["features", "build", "--images", str(root / "real"), "--extractors", "nope"]) == 2
    assert "unknown feature extractor 'nope'" in capsys.readouterr().err


def test_feature_benchmark_dry_run_checks_equality_and_reports(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_features.py"
    spec = importlib.util.spec_from_file_location("bench_features", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--dry-run", "--extractors", "clip-vit-l14-336,dinov2-vit-l14"]) == 0
    out = capsys.readouterr().out
    for name in ("clip-vit-l14-336", "dinov2-vit-l14"):
        line = next(x for x in out.splitlines() if x.startswith(name))
        assert "reference" in line and "warm cache" in line and "max rel diff" in line


def test_leaderboard_direction_matches_every_scorer():
    from t2ibench.leaderboard.analysis import LOWER_IS_BETTER
    from t2ibench.metrics import SCORERS

    lower = {name for name in SCORERS if not scorer_class(name).higher_is_better}
    assert lower == set(LOWER_IS_BETTER) & set(SCORERS)
    assert {"kid", "cmmd", "fd-dinov2"} <= lower
