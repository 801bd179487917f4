"""ImageReward: the batched scorer equals the library's own `ImageReward.score` on the same weights.

The model is `ImageReward.ImageReward` (the library class) with a small BLIP ViT and a 1-layer
768-wide BERT (the MLP head is fixed at 768), saved as ImageReward.pt + med_config.json + vocab.txt.
"""

from __future__ import annotations

import logging

import pytest

from t2ibench.compat import imagereward as compat
from t2ibench.errors import UserError
from t2ibench.images import load_image
from t2ibench.metrics import PromptRecord, scorer_class
from tiny_scorers import build_tiny_imagereward, make_images

TEXTS = ["a photo of a cat", "A red car on a street.", "two dogs playing in the snow", "a bowl of fruit",
         "a man riding a horse", "an empty room", "a cat", "a plate of pasta with a very long description "
         "that runs well past the thirty-five token limit of the tokenizer used by the reward model"]


@pytest.fixture(scope="module")
def tiny_ir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ir")
    weights = build_tiny_imagereward(folder / "w")
    images = [load_image(p) for p in make_images(folder / "img", len(TEXTS), size=(96, 80), seed=5)]
    prompts = [PromptRecord(f"p{i}", t) for i, t in enumerate(TEXTS)]
    scorer = scorer_class("imagereward")(weights={k: weights for k in ("imagereward", "med_config", "bert_vocab")})
    return weights, images, prompts, scorer


def test_batched_scores_equal_library_score_in_any_batch_size(tiny_ir):
    _, images, prompts, scorer = tiny_ir
    library = [scorer.model.score(p.text, im) for im, p in zip(images, prompts)]  # ImageReward's own entry point
    for bs in (1, 8):
        got = [it.value for it in scorer.score(images, prompts, batch_size=bs).per_item]
        for g, r in zip(got, library):
            assert g == pytest.approx(r, rel=1e-4, abs=1e-6)
    # The rewards depend on the text and on the image.
    assert len({round(v, 4) for v in library}) == len(library)
    same_text = scorer.rewards(images[:2], [TEXTS[0]] * 2)
    assert abs(same_text[0] - same_text[1]) > 1e-5


def test_scorer_loads_offline_with_the_local_vocab(tiny_ir):
    _, _, _, scorer = tiny_ir
    tok = scorer.model.blip.tokenizer
    assert len(tok) == 30524 and tok.enc_token_id == 30523
    assert tok("a photo of a cat").input_ids == [101, 1037, 6302, 1997, 1037, 4937, 102]
    assert scorer.version.startswith("imagereward/image-reward-") and "blip-vit-w128d2p32" in scorer.version


def test_import_keeps_the_root_log_level():
    root = logging.getLogger()
    before = root.level
    compat.import_imagereward()
    assert root.level == before


def test_compat_patches_are_inert_once_applied():
    import transformers.modeling_utils as mu
    from ImageReward.models.BLIP import med

    compat.import_imagereward()
    assert compat.patch_transformers_names() == []
    assert compat.patch_med(med) == []
    for name in ("apply_chunking_to_forward", "prune_linear_layer", "find_pruneable_heads_and_indices"):
        assert hasattr(mu, name)


def test_find_pruneable_heads_hand_computed():
    # Head 3 of 4 was pruned before, so 3 heads (0, 1, 2) of size 2 remain; pruning 1 (and 3 again) keeps 0 and 2.
    heads, index = compat.find_pruneable_heads_and_indices([1, 3], n_heads=3, head_size=2, already_pruned_heads={3})
    assert heads == {1}
    assert index.tolist() == [0, 1, 4, 5]


def test_head_and_encoder_masks_follow_transformers_4():
    import torch

    class Holder:
        dtype = torch.float32

    mask = compat._invert_attention_mask(Holder(), torch.tensor([[1, 0, 1]]))
    assert mask.shape == (1, 1, 1, 3)
    assert mask[0, 0, 0, 0] == 0 and mask[0, 0, 0, 1] == torch.finfo(torch.float32).min
    assert compat._get_head_mask(Holder(), None, 3) == [None, None, None]
    assert compat._get_head_mask(Holder(), torch.ones(4), 2).shape == (2, 1, 4, 1, 1)


def test_vit_size_of_the_published_checkpoint_is_blip_large():
    import torch

    sd = {"blip.visual_encoder.pos_embed": torch.empty(1, 197, 1024, device="meta"),
          "blip.visual_encoder.patch_embed.proj.weight": torch.empty(1024, 3, 16, 16, device="meta")}
    sd.update({f"blip.visual_encoder.blocks.{i}.attn.qkv.weight": None for i in range(24)})
    vit = compat.vit_size_from_state_dict(sd)
    assert vit.blip_name == "large" and vit.heads == 16 and vit.image_size == 224


def test_empty_or_wrong_vocab_is_refused(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n")
    with pytest.raises(UserError, match="expected the 30522"):
        compat.local_bert_tokenizer(vocab)


def test_checkpoint_missing_the_reward_head_is_refused(tiny_ir, tmp_path):
    import shutil

    import torch

    weights, *_ = tiny_ir
    sd = torch.load(weights / "ImageReward.pt", weights_only=True)
    torch.save({k: v for k, v in sd.items() if not k.startswith("mlp.")}, tmp_path / "ImageReward.pt")
    for name in ("med_config.json", "vocab.txt"):
        shutil.copyfile(weights / name, tmp_path / name)
    with pytest.raises(UserError, match="lacks .* ImageReward weights"):
        scorer_class("imagereward")(weights={k: tmp_path for k in ("imagereward", "med_config", "bert_vocab")})
