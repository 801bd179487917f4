"""Tiny random models for the alignment metrics, saved in the real formats (GenEval's Mask2Former)."""

from __future__ import annotations

from pathlib import Path


def build_tiny_mask2former(out_dir: str | Path, seed: int = 0, boost_label: int | None = None) -> Path:
    """A transformers Mask2Former (Swin backbone, 80 COCO classes) with 12 queries, saved with its
    image processor. `boost_label` raises that class's logit so some instances clear GenEval's thresholds."""
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                          window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, num_labels=80, hidden_dim=32, num_queries=12,
                               encoder_layers=1, decoder_layers=2, mask_feature_size=32, feature_size=32,
                               dim_feedforward=64, num_attention_heads=2, encoder_feedforward_dim=64,
                               use_pretrained_backbone=False, backbone=None)
    config.id2label = {i: f"class_{i}" for i in range(80)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    if boost_label is not None:
        with torch.no_grad():
            model.class_predictor.bias[boost_label] += 12.0
            model.class_predictor.weight.mul_(4.0)  # confidences that differ between queries and images
    out = Path(out_dir)
    model.save_pretrained(out)
    Mask2FormerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(out)
    return out
