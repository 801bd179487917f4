import os
from pathlib import Path

import pytest

from pg_server import pg_server_url, store_url  # noqa: F401 -- fixtures: one PostgreSQL server per session

# No hub on CI: a hub lookup must fail at once instead of retrying for 30-50 s per file.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data not found at {SHARED_DATA} (CI checks out shared/ beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny-model tests: as fast as two, immune to an oversubscribed
    2-core runner, and the same thread count as the tests' subprocesses (CPU kernels may round
    differently with another thread count). Use with `pytestmark = pytest.mark.usefixtures(...)`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline_empty(monkeypatch, tmp_path):
    """No hub, and empty weight locations ($T2IBENCH_WEIGHTS, HF and torch caches) under tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path
