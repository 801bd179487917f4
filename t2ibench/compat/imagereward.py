"""Make image-reward 1.5's BLIP (`ImageReward/models/BLIP/med.py`, written for transformers 4.15)
import and run under transformers 5, and build it offline with a local tokenizer and checkpoint.

What transformers 5 removed and this restores, each only when missing (on transformers 4 nothing
changes):
  * `apply_chunking_to_forward`, `prune_linear_layer` (moved to `transformers.pytorch_utils`) and
    `find_pruneable_heads_and_indices` (removed) as names of `transformers.modeling_utils`, which
    med.py imports them from;
  * `get_head_mask` and `invert_attention_mask` on med's `BertPreTrainedModel` (v4 semantics);
  * `init_weights()` called from `__init__` needs `post_init()` to have run first in v5.
`import ImageReward` also sets the root logger to INFO (accelerate's get_logger in ReFL.py); the
level is put back.

`build_imagereward` constructs `ImageReward.ImageReward` (the library class the `score` method
belongs to) with the tokenizer read from a local BERT `vocab.txt` (the library's `init_tokenizer`
always calls `BertTokenizer.from_pretrained('bert-base-uncased')`, which under transformers 5 offline
returns an empty tokenizer instead of raising) and with the vision transformer sized from the
checkpoint (ViT-L/16 for the published ImageReward.pt, which the library hard-codes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError

BERT_VOCAB_SIZE = 30522  # bert-base-uncased WordPiece entries; BLIP adds [DEC] and [ENC]
_patched_med = False


def find_pruneable_heads_and_indices(heads, n_heads: int, head_size: int, already_pruned_heads):
    """transformers 4's helper (removed in 5): heads left to prune and the row indices to keep."""
    import torch

    mask = torch.ones(n_heads, head_size)
    heads = set(heads) - already_pruned_heads
    for head in heads:
        head = head - sum(1 if h < head else 0 for h in already_pruned_heads)
        mask[head] = 0
    mask = mask.view(-1).contiguous().eq(1)
    return heads, torch.arange(len(mask))[mask].long()


def _get_head_mask(self, head_mask, num_hidden_layers: int, is_attention_chunked: bool = False):
    if head_mask is None:
        return [None] * num_hidden_layers
    if head_mask.dim() == 1:
        head_mask = head_mask[None, None, :, None, None].expand(num_hidden_layers, -1, -1, -1, -1)
    elif head_mask.dim() == 2:
        head_mask = head_mask[:, None, :, None, None]
    head_mask = head_mask.to(dtype=self.dtype)
    return head_mask.unsqueeze(-1) if is_attention_chunked else head_mask


def _invert_attention_mask(self, encoder_attention_mask):
    import torch

    if encoder_attention_mask.dim() == 3:
        extended = encoder_attention_mask[:, None, :, :]
    else:
        extended = encoder_attention_mask[:, None, None, :]
    extended = extended.to(dtype=self.dtype)
    return (1.0 - extended) * torch.finfo(self.dtype).min


def _init_weights_after_post_init(self):
    from transformers.modeling_utils import PreTrainedModel

    if not hasattr(self, "all_tied_weights_keys"):  # v5: post_init gathers what init_weights needs, then calls it
        self.post_init()
    else:
        PreTrainedModel.init_weights(self)


def patch_transformers_names() -> list[str]:
    """Put the helpers med.py imports from `transformers.modeling_utils` back where it looks. Returns what it added."""
    import transformers.modeling_utils as mu
    import transformers.pytorch_utils as pu

    added = []
    for name, value in (("apply_chunking_to_forward", getattr(pu, "apply_chunking_to_forward", None)),
                        ("prune_linear_layer", getattr(pu, "prune_linear_layer", None)),
                        ("find_pruneable_heads_and_indices", find_pruneable_heads_and_indices)):
        if not hasattr(mu, name) and value is not None:
            setattr(mu, name, value)
            added.append(name)
    return added


def patch_med(med) -> list[str]:
    """Restore on med's BertPreTrainedModel what transformers 5's PreTrainedModel lost. Returns what it added."""
    from transformers.modeling_utils import PreTrainedModel

    added = []
    cls = med.BertPreTrainedModel
    if not hasattr(cls, "get_head_mask"):
        cls.get_head_mask = _get_head_mask
        added.append("get_head_mask")
    if not hasattr(cls, "invert_attention_mask"):
        cls.invert_attention_mask = _invert_attention_mask
        added.append("invert_attention_mask")
    if hasattr(PreTrainedModel, "post_init") and hasattr(PreTrainedModel, "get_expanded_tied_weights_keys") \
            and "init_weights" not in cls.__dict__:
        cls.init_weights = _init_weights_after_post_init
        added.append("init_weights")
    return added


def import_imagereward():
    """`import ImageReward` with the transformers-5 fixes applied and the root log level kept."""
    global _patched_med
    patch_transformers_names()
    root = logging.getLogger()
    level = root.level
    try:
        import ImageReward
        from ImageReward.models.BLIP import med
    finally:
        root.setLevel(level)
    if not _patched_med:
        patch_med(med)
        _patched_med = True
    return ImageReward


def local_bert_tokenizer(vocab_file: Path | str):
    """The tokenizer BLIP's `init_tokenizer` builds, from a local bert-base-uncased `vocab.txt`."""
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab=str(vocab_file), do_lower_case=True)
    if len(tok) != BERT_VOCAB_SIZE:  # transformers 5 ignores unknown keywords and returns an empty vocab
        raise UserError(f"{vocab_file} gave a tokenizer with {len(tok)} entries, expected the "
                        f"{BERT_VOCAB_SIZE} of bert-base-uncased")
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.enc_token_id = tok.convert_tokens_to_ids("[ENC]")
    return tok


@dataclass(frozen=True)
class VitSize:
    """BLIP's vision transformer as sized by a checkpoint."""

    width: int
    depth: int
    patch_size: int
    image_size: int

    @property
    def heads(self) -> int:  # BLIP's ViT-B (768/12) and ViT-L (1024/16) both use 64-wide heads
        return self.width // 64

    @property
    def blip_name(self) -> str | None:
        return {(768, 12, 16, 224): "base", (1024, 24, 16, 224): "large"}.get(
            (self.width, self.depth, self.patch_size, self.image_size))


def vit_size_from_state_dict(state_dict: Mapping[str, Any], prefix: str = "blip.visual_encoder.") -> VitSize:
    try:
        pos = state_dict[prefix + "pos_embed"].shape
        patch = state_dict[prefix + "patch_embed.proj.weight"].shape
    except KeyError as exc:
        raise UserError(f"not an ImageReward checkpoint: no {exc.args[0]}") from None
    depth = 1 + max(int(k[len(prefix) + len("blocks."):].split(".")[0])
                    for k in state_dict if k.startswith(prefix + "blocks."))
    grid = round((pos[1] - 1) ** 0.5)
    return VitSize(width=pos[2], depth=depth, patch_size=patch[-1], image_size=grid * patch[-1])


@contextmanager
def _blip_factories(tokenizer, vit: VitSize) -> Iterator[None]:
    """While BLIP_Pretrain is built: hand it our tokenizer, and a ViT of the checkpoint's size when that is
    not the size the library hard-codes (only tiny test models differ)."""
    from ImageReward.models.BLIP import blip_pretrain
    from ImageReward.models.BLIP.vit import VisionTransformer

    saved = blip_pretrain.init_tokenizer, blip_pretrain.create_vit
    blip_pretrain.init_tokenizer = lambda: tokenizer
    if vit.blip_name != "large":
        def create_vit(_name, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
            return VisionTransformer(img_size=vit.image_size, patch_size=vit.patch_size, embed_dim=vit.width,
                                     depth=vit.depth, num_heads=vit.heads, use_grad_checkpointing=use_grad_checkpointing,
                                     ckpt_layer=ckpt_layer, drop_path_rate=drop_path_rate), vit.width
        blip_pretrain.create_vit = create_vit
    try:
        yield
    finally:
        blip_pretrain.init_tokenizer, blip_pretrain.create_vit = saved


def build_imagereward(checkpoint: Path | str, med_config: Path | str, vocab_file: Path | str, device: str = "cpu"):
    """`ImageReward.ImageReward` loaded as `ImageReward.load` does, but offline and strictly checked."""
    import torch

    module = import_imagereward()
    state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise UserError(f"{checkpoint} is not an ImageReward state_dict")
    vit = vit_size_from_state_dict(state_dict)
    if vit.image_size != 224:
        raise UserError(f"{checkpoint}: ImageReward's preprocessing is 224 px, the checkpoint's ViT takes {vit.image_size}")
    tokenizer = local_bert_tokenizer(vocab_file)
    with _blip_factories(tokenizer, vit):
        model = module.ImageReward(med_config=str(med_config), device=device)
    # The library loads with strict=False, so a wrong checkpoint would load silently: check what is missing.
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise UserError(f"{checkpoint} lacks {len(missing)} ImageReward weights (e.g. {missing[0]}); wrong checkpoint?")
    model.vit_size = vit
    return model.to(device).eval()
