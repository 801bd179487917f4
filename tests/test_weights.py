import pytest

from t2ibench.errors import MissingWeightsError
from t2ibench.weights import WeightFile, resolve, sha256_file

WF = WeightFile("checkpoint", "org/model", "sub/model.bin")


def test_explicit_file_and_directory(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    assert resolve(WF, f) == f
    assert resolve(WF, tmp_path) == f


def test_t2ibench_weights_dir_by_repo_and_by_basename(tmp_path, monkeypatch):
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    by_repo = tmp_path / "org" / "model" / "sub" / "model.bin"
    by_repo.parent.mkdir(parents=True)
    by_repo.write_bytes(b"x")
    assert resolve(WF) == by_repo
    by_repo.unlink()
    flat = tmp_path / "model.bin"
    flat.write_bytes(b"y")
    assert resolve(WF) == flat


def test_missing_offline_names_the_file_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError) as exc:
        resolve(WF, metric="clip")
    msg = str(exc.value)
    assert "sub/model.bin" in msg and "org/model" in msg and "t2ibench weights fetch --metrics clip" in msg
    assert "\n" not in msg


def test_explicit_path_that_does_not_exist(tmp_path):
    with pytest.raises(MissingWeightsError, match="not found"):
        resolve(WF, tmp_path / "nope.bin")


def test_sha256(tmp_path):
    f = tmp_path / "a"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
