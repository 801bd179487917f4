"""Bad input never costs work or data (issue 14), one test per class of defect, each parametrised over
the commands it applies to. Every bad input runs through the real CLI in a subprocess and must give
exit status 2, exactly one line on stderr, no traceback, and leave every earlier output byte-identical
(every file under the test's world is checksummed before and after; nothing may appear either)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_t2i import tiny_model, write_question_file

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Earlier outputs a careless command could destroy, and inputs to hand the commands."""
    root = tmp_path_factory.mktemp("world")
    ckpt = tiny_model(vae=False).save(root / "ckpt")
    for name, damage in (("ckpt_truncated", "truncate"), ("ckpt_bad_json", "model_json"), ("ckpt_bad_config", "config")):
        shutil.copytree(ckpt, root / name)
        if damage == "truncate":
            f = root / name / "backbone" / "diffusion_pytorch_model.safetensors"
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        elif damage == "model_json":
            (root / name / "t2ibench_model.json").write_text('{"variant": {')
        else:
            (root / name / "backbone" / "config.json").write_text("{not json")
    (root / "prompts.txt").write_text("a red circle\na blue square\na green circle\n")
    write_question_file(root / "questions.json", {f"p{i}": f"a red circle {i}" for i in range(3)})
    from PIL import Image

    (root / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(root / "images" / f"{i:05d}.png")
    from t2ibench.leaderboard.site import build_site
    from t2ibench.store import ResultRow, ResultsStore

    store = ResultsStore(root / "store.sqlite")
    store.add(ResultRow(run="a", metric="tifa", version="v1", value=0.5, n_items=3, step=10, train_flops=1e12,
                        manifest_hash="m" * 64))
    store.close()
    store = ResultsStore(root / "store.sqlite")
    build_site(store, root / "site")
    store.close()  # an open connection keeps -wal/-shm files that vanish whenever it is collected
    (root / "empty.sqlite").write_bytes(b"")
    (root / "a_file").write_text("not a directory")
    (root / "eval_out").mkdir()
    (root / "eval_out" / "results.json").write_text('{"earlier": true}')
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*")) if "cache" not in p.relative_to(root).parts}


def cli(args: list, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                "T2IBENCH_CACHE": str(cwd / "cache"), "T2IBENCH_WEIGHTS": str(cwd / "cache" / "no-weights"),
                "T2IBENCH_PROMPTS_DIR": str(cwd / "cache" / "no-prompts"), "T2IBENCH_DB": "", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v != ""}
    return subprocess.run([sys.executable, "-m", "t2ibench", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_refused(world: Path, args: list, *expected: str, env: dict | None = None) -> str:
    """Exit 2, one stderr line mentioning every `expected` piece, no traceback, nothing changed."""
    before = snapshot(world)
    done = cli(args, world, env)
    err = done.stderr
    assert done.returncode == 2, (args, done.returncode, err, done.stdout)
    assert "Traceback" not in err and err.count("\n") == 1 and err.endswith("\n"), (args, err)
    for piece in expected:
        assert piece in err, (args, piece, err)
    assert snapshot(world) == before, args
    return err


TIFA = ["--metrics", "tifa", "--tifa-vqa", "shapes-measure", "--tifa-questions", "questions.json"]
GEN = ["--steps", "2", "--resolution", "16"]


# -- data loss: a missing or empty store is an error for every reader, never an empty result ----------
@pytest.mark.parametrize("args", [
    ["leaderboard", "build", "--db", "stroe.sqlite", "--out", "site"],
    ["leaderboard", "build", "--db", "empty.sqlite", "--out", "site"],
    ["leaderboard", "fit", "--x", "compute", "--db", "stroe.sqlite", "--no-plot"],
    ["leaderboard", "export", "eval_out/results.json", "--db", "stroe.sqlite"],
    ["leaderboard", "export", "out.csv", "--db", "empty.sqlite"],
], ids=lambda a: " ".join(a[:2]) + " " + a[a.index("--db") + 1])
def test_readers_never_take_a_missing_or_empty_store_for_an_empty_one(world, args):
    assert_refused(world, args, "store")


def test_mistyped_store_never_replaces_a_site(world):
    """The reported case: build with a mistyped --db over an existing site."""
    site_before = {p.name: p.read_bytes() for p in (world / "site").rglob("*") if p.is_file()}
    assert any(n.endswith(".png") for n in site_before) and "index.html" in site_before
    err = assert_refused(world, ["leaderboard", "build", "--db", "results/typo.sqlite", "--out", "site"],
                         "no results store at results/typo.sqlite")
    assert "check the path" in err
    assert not (world / "results").exists()  # a reader never creates the store (or its folder)
    # the library refuses too: an empty (but real) store does not replace a site that shows results
    from t2ibench.errors import UserError
    from t2ibench.leaderboard.site import build_site
    from t2ibench.store import ResultsStore

    empty = ResultsStore(world / "cache" / "real-but-empty.sqlite")
    empty.schema_version()  # creates it: a writer may
    with pytest.raises(UserError, match="not replacing the site"):
        build_site(empty, world / "site")
    assert {p.name: p.read_bytes() for p in (world / "site").rglob("*") if p.is_file()} == site_before


# -- every numeric option is range-checked, the same way in every command --------------------------
@pytest.mark.parametrize("args", [
    ["eval", "--images", "images", "--prompts", "prompts.txt", *TIFA, "--batch-size", "0"],
    ["eval", "--ckpt", "ckpt", *TIFA, "--gen-batch-size", "0"],
    ["eval", "--ckpt", "ckpt", *TIFA, "--step", "-1"],
    ["generate", "--ckpt", "ckpt", "--prompts", "prompts.txt", "--out", "gen", "--steps", "0"],
    ["generate", "--ckpt", "ckpt", "--prompts", "prompts.txt", "--out", "gen", "--cfg", "nan"],
    ["demo", "--lr", "-1e-3"],
    ["data", "filter", "images", "--out", "filtered", "--min-size", "-5"],
    ["prompts", "show", "prompts.txt", "--head", "-1"],
], ids=lambda a: f"{a[0]} {a[-2]} {a[-1]}")
def test_numeric_options_are_range_checked(world, args):
    assert_refused(world, args, args[-2], "expected")


LIMIT_COMMANDS = {
    "eval-ckpt": ["eval", "--ckpt", "ckpt", *TIFA],
    "eval-images": ["eval", "--images", "images", "--prompts", "prompts.txt", *TIFA],
    "generate": ["generate", "--ckpt", "ckpt", "--prompts", "prompts.txt", "--out", "gen"],
    "data-stats": ["data", "stats", "images"],
}


@pytest.mark.parametrize("name,value", [(name, "-1") for name in LIMIT_COMMANDS] + [("eval-ckpt", "0"),
                                                                                   ("generate", "ten")])
def test_limit_is_a_positive_count_everywhere(world, name, value):
    command = LIMIT_COMMANDS[name]
    """`eval --limit -1` used to score 63 of 64 prompts (a Python slice)."""
    assert_refused(world, [*command, "--limit", value], "--limit", "a whole number >= 1")


def test_limit_is_checked_by_the_library_too(world):
    from t2ibench.errors import UserError
    from t2ibench.prompts import load_prompt_set, prompts_from_tifa_questions

    for load in (lambda: prompts_from_tifa_questions(world / "questions.json", limit=-1),
                 lambda: load_prompt_set(str(world / "prompts.txt"), limit=-1)):
        with pytest.raises(UserError, match="limit"):
            load()


# -- unknown option keys are errors, with a "did you mean" -------------------------------------------
@pytest.mark.parametrize("args,expected", [
    (["eval", "--images", "images", "--prompts", "prompts.txt", *TIFA, "--option", "tifa.nope=1"], "tifa.nope"),
    (["eval", "--ckpt", "ckpt", *TIFA, *GEN, "--option", "tifa.nope=1"], "tifa.nope"),
    (["eval", "--ckpt", "ckpt", *TIFA, *GEN, "--option", "tifa.mising=skip"], "did you mean 'missing'"),
    (["eval", "--images", "images", "--prompts", "prompts.txt", "--metrics", "imagereward",
      "--weights", "imagereward.imagerewrd=x.pt"], "did you mean 'imagereward'"),
    (["eval", "--images", "images", "--prompts", "prompts.txt", "--metrics", "fid", "--option", "fid.real_image=x"],
     "did you mean 'real_images'"),
], ids=["images-option", "ckpt-option", "did-you-mean", "weights-key", "fid-option"])
def test_unknown_option_and_weights_keys_are_refused(world, args, expected):
    assert_refused(world, args, expected)


def test_unknown_keys_regression_manifest_cannot_fork(world):
    """The typo `tifa.nope=1` used to be accepted and change the manifest hash (its own leaderboard group);
    the library refuses it as well as the CLI, and the in-training evaluation's eval.options too."""
    import t2ibench.demo  # noqa: F401  (registers the shapes-measure VQA backend)
    from t2ibench.errors import UserError
    from t2ibench.evaluate import evaluate
    from t2ibench.metrics.option_keys import option_keys

    assert {"vqa", "questions", "missing"} <= option_keys("tifa")
    assert {"colors", "min_area_frac"} <= option_keys("tifa", {"vqa": "shapes-measure"})
    assert option_keys("fid") >= {"real_images", "resize"} and option_keys("imagereward") == set()
    with pytest.raises(UserError, match="has no option 'nope'"):
        evaluate(str(world / "ckpt"), ["tifa"], out_dir=world / "cache" / "x",
                 scorer_options={"tifa": {"vqa": "shapes-measure", "nope": 1}})
    assert not (world / "cache" / "x").exists()


# -- options that cannot apply are refused, not ignored ----------------------------------------------
@pytest.mark.parametrize("extra", [["--run", "X"], ["--db", "store.sqlite"], ["--steps", "10"]],
                         ids=lambda a: a[0])
def test_ckpt_only_flags_are_refused_with_images(world, extra):
    assert_refused(world, ["eval", "--images", "images", "--prompts", "prompts.txt", *TIFA, *extra],
                   extra[0], "--ckpt only")


# -- one line instead of a traceback: damaged files, devices, outputs that cannot be written ---------
@pytest.mark.parametrize("command,ckpt,expected", [
    ("eval", "ckpt_truncated", "backbone"), ("eval", "ckpt_bad_json", "t2ibench_model.json"),
    ("eval", "ckpt_bad_config", "backbone"), ("generate", "ckpt_truncated", "backbone")])
def test_damaged_checkpoints_get_one_line(world, command, ckpt, expected):
    args = (["eval", "--ckpt", ckpt, *TIFA, *GEN, "--out", "out", "--no-store"] if command == "eval" else
            ["generate", "--ckpt", ckpt, "--prompts", "prompts.txt", *GEN, "--out", "out"])
    assert_refused(world, args, ckpt, expected)


DEVICE_CASES = [("cuda", "no CUDA device"), ("nope", "is not a device"), ("cuda:x", "is not a device")]


@pytest.mark.parametrize("command,device,expected", [("eval-ckpt", d, e) for d, e in DEVICE_CASES] + [
    ("eval-images", *DEVICE_CASES[0]), ("generate", *DEVICE_CASES[0]), ("generate", *DEVICE_CASES[1])])
def test_unusable_device_is_one_line_before_any_model(world, command, device, expected):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = {"eval-ckpt": ["eval", "--ckpt", "ckpt", *TIFA, *GEN, "--out", "out"],
            "eval-images": ["eval", "--images", "images", "--prompts", "prompts.txt", *TIFA, "--out", "out"],
            "generate": ["generate", "--ckpt", "ckpt", "--prompts", "prompts.txt", *GEN, "--out", "out"]}[command]
    assert_refused(world, [*args, "--device", device], "--device", expected)


@pytest.mark.parametrize("args,option", [
    (["eval", "--ckpt", "ckpt", *TIFA, *GEN, "--out", "a_file/sub", "--no-store"], "output directory"),
    (["eval", "--ckpt", "ckpt", *TIFA, *GEN, "--out", "out", "--db", "a_file/store.sqlite"], "results store"),
    (["eval", "--ckpt", "ckpt", *TIFA, *GEN, "--out", "out", "--no-store", "--image-cache", "a_file"], "image cache"),
    (["eval", "--images", "images", "--prompts", "prompts.txt", *TIFA, "--out", "a_file"], "--out"),
    (["generate", "--ckpt", "ckpt", "--prompts", "prompts.txt", *GEN, "--out", "a_file/x"], "--out"),
    (["leaderboard", "build", "--db", "store.sqlite", "--out", "a_file"], "--out"),
    (["leaderboard", "export", "a_file/x.csv", "--db", "store.sqlite"], "export file"),
    (["data", "filter", "images", "--out", "a_file/x"], "--out"),
    (["data", "caption", "images", "--out", "a_file/x"], "--out"),
], ids=["eval-out", "eval-db", "eval-cache", "images-out", "generate-out", "site-out", "export", "filter-out",
        "caption-out"])
def test_unwritable_outputs_are_found_before_work(world, args, option):
    assert_refused(world, args, option, "a_file")


# -- late validation: paths, missing inputs together, messages that name the real cause --------------
def test_missing_inputs_are_listed_together(world):
    """Neither the TIFA prompt set nor any scorer weights: one message lists them all."""
    err = assert_refused(world, ["eval", "--ckpt", "ckpt", "--metrics", "tifa,imagereward", *GEN, "--out", "out"],
                         "inputs are missing", "tifa", "ImageReward.pt")
    assert err.count("(") >= 3 and "(3)" in err


def test_native_resolution_keeps_the_wrong_path_message(world):
    for command in (["eval", "--ckpt", "no/such/ckpt", *TIFA], ["generate", "--ckpt", "no/such/ckpt",
                                                               "--prompts", "prompts.txt", "--out", "g"]):
        assert_refused(world, [*command, "--resolution", "native"], "no/such/ckpt does not exist")


def test_weights_fetch_says_offline_mode_is_why(world):
    assert_refused(world, ["weights", "fetch", "--metrics", "imagereward"], "HF_HUB_OFFLINE=1", "offline")
    assert_refused(world, ["weights", "fetch", "--trainer"], "laion/CLIP-ViT-H-14", "HF_HUB_OFFLINE=1")


def test_run_dir_and_latest_resolve_to_the_newest_checkpoint(world, tmp_path):
    from t2ibench.checkpoints import precheck, resolve_ckpt_path

    run = tmp_path / "runs" / "td4_8"
    for step in (2, 4):
        shutil.copytree(world / "ckpt", run / "checkpoints" / f"step-{step:08d}" / "model")
    (run / "checkpoints" / "latest").write_text("step-00000002")  # the pointer wins over names
    newest = run / "checkpoints" / "step-00000002" / "model"
    for given in (run, run / "latest", run / "checkpoints", run / "checkpoints" / "latest",
                  run / "checkpoints" / "step-00000002"):
        assert resolve_ckpt_path(given) == newest, given
        assert precheck(given) == "t2ibench"
    (run / "checkpoints" / "latest").unlink()
    assert resolve_ckpt_path(run / "latest") == run / "checkpoints" / "step-00000004" / "model"


# -- permissions: written files follow the umask ---------------------------------------------------
def test_atomic_writes_follow_the_umask(tmp_path):
    from t2ibench.atomic import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "index.html", "<html>")
        assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.json", "{}")
        assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_site_and_results_are_readable_by_a_web_server(world):
    for path in (world / "site" / "index.html", world / "store.sqlite"):
        assert path.stat().st_mode & 0o044 == 0o044, path  # the test runs under the usual umask 022


# -- help texts speak to users ----------------------------------------------------------------------
@pytest.mark.parametrize("command", ["eval", "generate", "train", "demo", "leaderboard", "weights", "data", "prompts"])
def test_help_is_for_users(command, capsys, monkeypatch):
    from t2ibench.cli import main

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert out and "eval_ckpt" not in out and "is added by" not in out
    assert max(map(len, out.splitlines())) <= 120, max(out.splitlines(), key=len)
    if command == "generate":
        assert "where generation.json goes" in out
    if command == "eval":
        assert "image cache" in out.lower() or "--image-cache" in out
