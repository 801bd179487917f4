"""LAION aesthetic score: a small head on L2-normalised CLIP ViT-L/14 (OpenAI) image embeddings.

Heads:
- ``mlp`` (default): the "improved aesthetic predictor" (sac+logos+ava1-l14-linearMSE.pth), the one
  LAION-Aesthetics v2 was built with: Linear 768-1024-128-64-16-1 with dropout between the first four
  and no activations (as upstream, whose ReLUs are commented out). Scores are roughly 1..10.
- ``linear``: LAION's first predictor (sa_0_4_vit_l_14_linear.pth), a single Linear(768, 1).
Both take the image embedding divided by its L2 norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from t2ibench.data.curation_weights import AESTHETIC_LINEAR, AESTHETIC_MLP, CLIP_VIT_L14, resolve_model
from t2ibench.errors import UserError

HEADS = ("mlp", "linear")


def build_head(kind: str, dim: int = 768):
    import torch.nn as nn

    class AestheticMLP(nn.Module):
        def __init__(self):
            super().__init__()
            # Attribute name and indices match the upstream state dict: layers.{0,2,4,6,7}.
            self.layers = nn.Sequential(
                nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

        def forward(self, x):
            return self.layers(x)

    if kind == "linear":
        return nn.Linear(dim, 1)
    if kind == "mlp":
        return AestheticMLP()
    raise UserError(f"unknown aesthetic head {kind!r} (choose from {', '.join(HEADS)})")


def load_head(path: Path, kind: str):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: cannot read aesthetic head weights ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    first = "weight" if kind == "linear" else "layers.0.weight"
    if not isinstance(state, dict) or first not in state:
        raise UserError(f"{path}: not a {kind} aesthetic head state dict (no {first!r}); try --aesthetic-head "
                        f"{'mlp' if kind == 'linear' else 'linear'}")
    head = build_head(kind, int(state[first].shape[1]))
    head.load_state_dict(state, strict=True)
    return head.eval()


def load_clip_image_model(path: Path):
    """(model, preprocess) of open_clip ViT-L/14 from a hub-format folder or a checkpoint file."""
    import open_clip

    try:
        if path.is_dir():
            model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{path}", force_quick_gelu=True)
        else:
            model, _, preprocess = open_clip.create_model_and_transforms("ViT-L-14", pretrained=str(path),
                                                                         force_quick_gelu=True)
    except (RuntimeError, ValueError, FileNotFoundError, KeyError) as exc:
        raise UserError(f"{path}: cannot load CLIP ViT-L/14 ({str(exc).splitlines()[0][:200]})") from None
    return model.eval(), preprocess


@dataclass
class AestheticScorer:
    clip: object
    preprocess: object
    head: object
    device: str = "cpu"
    head_kind: str = "mlp"

    @classmethod
    def load(cls, clip_weights=None, head_weights=None, head_kind: str = "mlp", device: str = "cpu"):
        if head_kind not in HEADS:
            raise UserError(f"unknown aesthetic head {head_kind!r} (choose from {', '.join(HEADS)})")
        head_path = resolve_model(AESTHETIC_MLP if head_kind == "mlp" else AESTHETIC_LINEAR, head_weights,
                                  "--aesthetic-weights")
        clip_path = resolve_model(CLIP_VIT_L14, clip_weights, "--clip-weights")
        clip, preprocess = load_clip_image_model(clip_path)
        head = load_head(head_path, head_kind)
        embed_dim = clip.visual.output_dim
        if head_kind == "linear":
            in_dim = head.in_features
        else:
            in_dim = head.layers[0].in_features
        if in_dim != embed_dim:
            raise UserError(f"aesthetic head takes {in_dim}-d embeddings but the CLIP model gives {embed_dim}-d")
        return cls(clip.to(device), preprocess, head.to(device), device, head_kind)

    def embed(self, images):
        import torch

        batch = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        with torch.inference_mode():
            feats = self.clip.encode_image(batch).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    def score(self, images) -> list[float]:
        import torch

        if not images:
            return []
        emb = self.embed(images)
        with torch.inference_mode():
            return self.head(emb).squeeze(-1).float().cpu().tolist()
