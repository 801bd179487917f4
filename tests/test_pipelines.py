"""`--ckpt DIR` for every diffusers text-to-image family t2ibench samples (tiny random pipelines saved with
save_pretrained): images equal the pipeline's own call with the same seeds at batch 1 and 4 and with 1
and 2 processes, `t2ibench eval` end to end, the manifest, precision, native size and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from builders.pipelines import FAMILIES, build_pipeline_dir
from t2ibench.cli import main
from t2ibench.generate import Protocol, T2IModelSampler, generate, sample_batch
from t2ibench.prompts import load_prompt_set
from tiny_t2i import tiny_model, write_question_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 2
PROMPTS = ["a red circle above a blue square", "two green triangles", "a yellow star on black", "an orange cube"]
CAPTIONS = {f"c{i}": p for i, p in enumerate(PROMPTS)}
PIPELINE_CLASS = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                  "pixart-alpha": "PixArtAlphaPipeline", "pixart-sigma": "PixArtSigmaPipeline",
                  "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline", "flux-dev": "FluxPipeline",
                  "sana": "SanaPipeline"}
FLOW = {"sd3", "flux", "flux-dev", "sana"}


def resolution(family: str) -> int:
    return 32 if family == "sana" else 16  # Sana's pipeline makes multiples of 32 px


@pytest.fixture(scope="module")
def pipeline_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {f: build_pipeline_dir(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    return write_question_file(tmp_path_factory.mktemp("q") / "questions.json", CAPTIONS)


def reference_images(directory: Path, family: str, scheduler: dict, seeds, res: int, dtype=torch.float32) -> np.ndarray:
    """Diffusers' own call, one prompt at a time: pipe(prompt_i, generator=Generator().manual_seed(seed_i))."""
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(directory, dtype=dtype)
    pipe.scheduler = getattr(diffusers, scheduler["class"]).from_config(scheduler["config"])
    pipe.set_progress_bar_config(disable=True)
    kw = {"num_inference_steps": STEPS, "height": res, "width": res, "output_type": "np"}
    if family.startswith("pixart") or family == "sana":
        kw.update(use_resolution_binning=False, clean_caption=False)
    if family == "flux":  # no guidance embedding: true CFG against an empty negative prompt
        kw.update(true_cfg_scale=7.5, negative_prompt="")
    elif family != "flux-dev":  # FLUX.1-dev: its embedded guidance at the pipeline's default
        kw["guidance_scale"] = 7.5
    out = [pipe(p, generator=torch.Generator("cpu").manual_seed(s), **kw).images[0] for p, s in zip(PROMPTS, seeds)]
    return (np.stack(out) * 255).round().astype("uint8")


def _pixels(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in paths])


def _by_seed(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"), key=lambda p: int(p.name.rsplit(".s", 1)[1][:-4]))


def _close(a: np.ndarray, b: np.ndarray, levels: int = 2) -> None:
    assert a.shape == b.shape
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= levels, f"max |diff| {diff.max()} levels"


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_and_batches_match_the_pipelines_own_call(family, pipeline_dirs, questions, tmp_path, capsys):
    directory, res = pipeline_dirs[family], resolution(family)
    out = tmp_path / "eval"
    code = main(["eval", "--ckpt", str(directory), "--metrics", "tifa", "--tifa-vqa", "shapes-measure",
                 "--tifa-questions", str(questions), "--steps", str(STEPS), "--resolution", str(res),
                 "--gen-batch-size", "4", "--device", "cpu", "--no-store", "--format", "json", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["tifa"]["n_items"] == len(PROMPTS)
    sampling = results["manifest"]["protocol"]["sampling"]
    assert results["metrics"]["tifa"]["manifest"]["protocol"]["sampling"] == sampling
    assert sampling["pipeline"] == PIPELINE_CLASS[family] and sampling["dtype"] == "fp32"
    assert results["manifest"]["protocol"]["dtype"] == "fp32"
    assert sampling["scheduler"]["class"] == ("FlowMatchEulerDiscreteScheduler" if family in FLOW else "DDIMScheduler")
    assert sampling["guidance"] == ({"kind": "distilled", "scale": 3.5} if family == "flux-dev" else
                                    {"kind": "true-cfg" if family == "flux" else "cfg", "scale": 7.5})
    assert sampling["resolution"] == [res, res] and sampling["steps"] == STEPS
    batch4 = _pixels(_by_seed(out / "images"))

    from t2ibench.generate import load_sampleable

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    model = load_sampleable(directory)
    batch1 = _pixels(generate(model, load_prompt_set(prompt_file), Protocol(steps=STEPS, resolution=res),
                              tmp_path / "b1", batch_size=1, progress=False))
    theirs = reference_images(directory, family, sampling["scheduler"], range(len(PROMPTS)), res)
    _close(batch4, theirs)
    _close(batch1, theirs)
    # the check can fail: the seed matters (a near-constant image would match anything)
    assert np.abs(theirs[0].astype(int) - theirs[1].astype(int)).mean() > 5


def test_two_processes_match_the_pipelines_own_call(pipeline_dirs, tmp_path):
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS[:3]) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    targets = [f"{pipeline_dirs[f]}:{resolution(f)}" for f in FAMILIES]
    # a port of its own: another test file may run a 2-process job at the same time (pytest -n 2)
    run = subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--main_process_port", "29567",
                          "--mixed_precision", "no", "--dynamo_backend", "no",
                          str(Path(__file__).parent / "pipelines_dist_worker.py"), str(prompt_file),
                          str(tmp_path / "out"), str(STEPS), "2", *targets], env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    from t2ibench.generate import load_sampleable

    for family in FAMILIES:
        images = _by_seed(tmp_path / "out" / family)
        assert [p.name.rsplit(".s", 1)[1] for p in images] == ["0.png", "1.png", "2.png"]
        record = load_sampleable(pipeline_dirs[family]).sampling(Protocol(steps=STEPS, resolution=resolution(family)))
        theirs = reference_images(pipeline_dirs[family], family, record["scheduler"], range(3), resolution(family))
        _close(_pixels(images), theirs[:3])


def test_bf16_runs_on_the_cpu_and_stays_close_to_fp32(pipeline_dirs, tmp_path):
    """bf16 images of a pipeline and of t2ibench's own model: another cache entry, near the fp32 images.
    (The per-family difference is measured in benchmarks/bench_generate.py, docs/pipelines.md.)"""
    from t2ibench.generate import load_sampleable

    for family in ("sdxl", "flux-dev"):
        res = resolution(family)
        fp32 = load_sampleable(pipeline_dirs[family])
        bf16 = load_sampleable(pipeline_dirs[family], dtype="bf16")
        assert bf16.pipe.unet.dtype == torch.bfloat16 if family == "sdxl" else bf16.pipe.transformer.dtype == torch.bfloat16
        p32, p16 = Protocol(steps=STEPS, resolution=res), Protocol(steps=STEPS, resolution=res, dtype="bf16")
        a, b = sample_batch(fp32, PROMPTS[:2], [0, 1], p32), sample_batch(bf16, PROMPTS[:2], [0, 1], p16)
        assert bf16.sampling(p16)["dtype"] == "bf16"
        diff = np.abs(a.astype(int) - b.astype(int))
        assert 0 < diff.mean() < 25, diff.mean()
    own = T2IModelSampler(tiny_model(vae=True))
    p32, p16 = Protocol(steps=STEPS, resolution=16), Protocol(steps=STEPS, resolution=16, dtype="bf16")
    a, b = sample_batch(own, PROMPTS[:2], [0, 1], p32), sample_batch(own, PROMPTS[:2], [0, 1], p16)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 25 and not np.array_equal(a, b)
    from t2ibench.generate import settings_key

    assert settings_key(p32, own) != settings_key(p16, own)
    compiled = Protocol(steps=STEPS, resolution=16, compile=True)
    assert settings_key(compiled, own) != settings_key(p32, own) and own.sampling(compiled)["compile"] is True


def test_native_resolution_is_the_pipelines_own_default(pipeline_dirs):
    from diffusers import DiffusionPipeline

    from t2ibench.pipelines import inspect_pipeline_dir

    for family in ("sd", "sdxl", "pixart-alpha", "sd3", "flux"):
        pipe = DiffusionPipeline.from_pretrained(pipeline_dirs[family])
        pipe.set_progress_bar_config(disable=True)
        kw = {"use_resolution_binning": False} if family.startswith("pixart") else {}
        image = pipe("a cat", num_inference_steps=2, output_type="np", **kw).images[0]  # no height/width: its default
        assert inspect_pipeline_dir(pipeline_dirs[family]).native_resolution == image.shape[0] == image.shape[1]
    # Sana's __call__ defaults to 1024 px for every model; native is the transformer's own size
    pipe = DiffusionPipeline.from_pretrained(pipeline_dirs["sana"])
    native = inspect_pipeline_dir(pipeline_dirs["sana"]).native_resolution
    assert native == pipe.transformer.config.sample_size * pipe.vae_scale_factor


def _generate_cli(capsys, *args) -> tuple[int, str]:
    code = main(["generate", *map(str, args)])
    return code, capsys.readouterr().err


def test_bad_input_is_one_line_before_loading(pipeline_dirs, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    common = ["--prompts", prompts, "--out", tmp_path / "never", "--steps", "2", "--resolution", "16", "--device", "cpu"]
    for cls in ("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline", "TextToVideoSDPipeline"):
        d = tmp_path / cls
        d.mkdir()
        (d / "model_index.json").write_text(json.dumps({"_class_name": cls, "unet": ["diffusers", "UNet2DConditionModel"]}))
        code, err = _generate_cli(capsys, "--ckpt", d, *common)
        assert code == 2 and err.count("\n") == 1 and cls in err and "StableDiffusionXLPipeline" in err, err
    broken = tmp_path / "sdxl-no-te2"
    shutil.copytree(pipeline_dirs["sdxl"], broken)
    index = json.loads((broken / "model_index.json").read_text())
    index["text_encoder_2"] = [None, None]
    (broken / "model_index.json").write_text(json.dumps(index))
    code, err = _generate_cli(capsys, "--ckpt", broken, *common)
    assert code == 2 and err.count("\n") == 1 and "lacks text_encoder_2" in err, err
    code, err = _generate_cli(capsys, "--ckpt", pipeline_dirs["sd"], *common, "--dtype", "fp16")
    assert code == 2 and err.count("\n") == 1 and "fp16" in err, err
    code, err = _generate_cli(capsys, "--ckpt", pipeline_dirs["flux-dev"], *common, "--cfg", "5")
    assert code == 2 and err.count("\n") == 1 and "guidance-distilled" in err, err
    code, err = _generate_cli(capsys, "--ckpt", pipeline_dirs["sd"], *common, "--offload", "model")
    assert code == 2 and err.count("\n") == 1 and "CUDA" in err, err
    code, err = _generate_cli(capsys, "--ckpt", pipeline_dirs["sd3"], *common, "--eta", "0.5")
    assert code == 2 and err.count("\n") == 1 and "eta" in err, err
    assert not (tmp_path / "never" / "generation.json").exists()


def test_fp16_traps_are_handled_at_load(pipeline_dirs):
    """T5 keeps its fp16-unsafe feed-forward output layers in fp32 (transformers' _keep_in_fp32_modules,
    honoured because the pipeline is loaded with dtype=); SDXL's VAE decodes through its fp32 upcast."""
    from t2ibench.generate import load_sampleable

    pixart = load_sampleable(pipeline_dirs["pixart-sigma"], dtype="fp16").pipe
    ff = pixart.text_encoder.encoder.block[0].layer[-1].DenseReluDense
    assert ff.wo.weight.dtype == torch.float32 and ff.wi.weight.dtype == torch.float16
    assert pixart.transformer.dtype == torch.float16
    sdxl = load_sampleable(pipeline_dirs["sdxl"], dtype="fp16").pipe
    assert sdxl.vae.config.force_upcast and sdxl.unet.dtype == torch.float16
