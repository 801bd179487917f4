"""Where model weights come from.

Every scorer (and the trainer's frozen VAE and text encoder) declares the files it needs as
`WeightFile`s. A file is found, in order, at:
  1. an explicit path the user gave (the file itself, or a directory that holds it);
  2. `$T2IBENCH_WEIGHTS/<repo_id>/<filename>` or `$T2IBENCH_WEIGHTS/<basename>`;
  3. the Hugging Face cache, then the hub (never when `HF_HUB_OFFLINE=1`).
When none has it, `MissingWeightsError` names the file and the command that fetches it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from t2ibench.errors import MissingWeightsError


@dataclass(frozen=True)
class WeightFile:
    """One file of a model's weights, pinned where the upstream pins it.

    `filename` may name a directory snapshot instead (set `is_dir`): then `allow_patterns` selects
    the files of the hub repo that make it up (a transformers or sentence-transformers model).
    """

    key: str
    repo_id: str
    filename: str
    revision: str = "main"
    sha256: str | None = None
    is_dir: bool = False
    allow_patterns: tuple[str, ...] = ()
    repo_type: str = "model"
    # A file published outside the hub (e.g. torch-fidelity's Inception weights on GitHub releases):
    # fetched with torch.hub into its checkpoints folder, where the library itself would put it.
    url: str | None = None

    @property
    def basename(self) -> str:
        return Path(self.filename).name or self.repo_id.split("/")[-1]


def weights_root() -> Path | None:
    root = os.environ.get("T2IBENCH_WEIGHTS")
    return Path(root).expanduser() if root else None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _local_candidates(wf: WeightFile, explicit: Path | None) -> list[Path]:
    out: list[Path] = []
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        out += [explicit, explicit / wf.filename, explicit / wf.basename]
    root = weights_root()
    if root is not None:
        out += [root / wf.repo_id / wf.filename, root / wf.repo_id, root / wf.basename]
    return out


def _exists(path: Path, wf: WeightFile) -> bool:
    return path.is_dir() if wf.is_dir else path.is_file()


def find_local(wf: WeightFile, explicit: Path | None = None) -> Path | None:
    """The local copy of `wf` (explicit path, T2IBENCH_WEIGHTS or HF cache), without any network."""
    if explicit is not None and Path(explicit).expanduser().is_file() and not wf.is_dir:
        return Path(explicit).expanduser()
    for cand in _local_candidates(wf, explicit):
        if _exists(cand, wf) and (wf.is_dir or cand.name == wf.basename or cand == explicit):
            return cand
    if wf.url:
        return _from_torch_hub_cache(wf)
    return _from_hf_cache(wf)


def _torch_hub_checkpoint(wf: WeightFile) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / wf.basename


def _from_torch_hub_cache(wf: WeightFile) -> Path | None:
    path = _torch_hub_checkpoint(wf)
    return path if path.is_file() else None


def _from_hf_cache(wf: WeightFile) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    if wf.is_dir:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(wf.repo_id, revision=wf.revision, repo_type=wf.repo_type,
                                          allow_patterns=list(wf.allow_patterns) or None,
                                          local_files_only=True))
        except Exception:
            return None
    hit = try_to_load_from_cache(wf.repo_id, wf.filename, revision=wf.revision, repo_type=wf.repo_type)
    return Path(hit) if isinstance(hit, str) else None


TRAINER_KEYS = ("text_encoder", "vae")  # the trainer's frozen parts (t2ibench.model.OPENCLIP_H, SDXL_VAE)


def fetch_hint(metric: str | None, wf: WeightFile | None = None) -> str:
    if metric:
        return f"t2ibench weights fetch --metrics {metric}"
    if wf is not None and wf.key in TRAINER_KEYS:
        return "t2ibench weights fetch --trainer"  # the frozen OpenCLIP-H text encoder and SDXL VAE
    return "t2ibench weights fetch"


def resolve(wf: WeightFile, explicit: Path | None = None, *, metric: str | None = None,
            download: bool | None = None) -> Path:
    """Local path of `wf`; downloads from the hub only when allowed and not offline."""
    if explicit is not None and not Path(explicit).expanduser().exists():
        raise MissingWeightsError(f"{wf.key} weights not found at {explicit} (expected {wf.filename} from {wf.repo_id})")
    hit = find_local(wf, explicit)
    if hit is not None:
        return hit
    if download is None:
        download = not hub_offline()
    if download:
        try:
            return download_file(wf)
        except Exception as exc:  # no network, no such file, auth: all mean "missing" to the user
            reason = type(exc).__name__
            raise MissingWeightsError(
                f"missing {wf.filename} from {wf.repo_id}@{wf.revision} ({reason}); "
                f"put it under $T2IBENCH_WEIGHTS/{wf.repo_id}/ or run `{fetch_hint(metric, wf)}` where the hub is reachable"
            ) from None
    raise MissingWeightsError(
        f"missing {wf.filename} from {wf.repo_id}@{wf.revision}; put it under "
        f"$T2IBENCH_WEIGHTS/{wf.repo_id}/ or run `{fetch_hint(metric, wf)}` where the hub is reachable"
    )


def download_file(wf: WeightFile) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if wf.url:
        import torch

        path = _torch_hub_checkpoint(wf)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(wf.url, str(path), hash_prefix=wf.sha256)
        return path
    if wf.is_dir:
        return Path(snapshot_download(wf.repo_id, revision=wf.revision, repo_type=wf.repo_type,
                                      allow_patterns=list(wf.allow_patterns) or None))
    path = Path(hf_hub_download(wf.repo_id, wf.filename, revision=wf.revision, repo_type=wf.repo_type))
    if wf.sha256 and sha256_file(path) != wf.sha256:
        raise MissingWeightsError(f"{path} does not match the pinned sha256 of {wf.repo_id}/{wf.filename}")
    return path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
