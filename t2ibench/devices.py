"""`--device`: parsed and checked once, before any model is loaded (an unusable device otherwise
surfaces as a traceback from deep inside torch, after the checkpoint has been read)."""

from __future__ import annotations

from t2ibench.errors import UserError

_KINDS = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(device: str | None, option: str = "--device") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else must name a usable device."""
    import torch

    text = (device or "auto").strip()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"{option} {text!r} is not a device; use one of {', '.join(_KINDS)}") from None
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{option} {text}: torch sees no CUDA device on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise UserError(f"{option} {text}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return text
    if parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{option} {text}: MPS is not available on this machine; use --device cpu")
        return text
    raise UserError(f"{option} {text!r}: t2ibench runs on {', '.join(_KINDS)}")
