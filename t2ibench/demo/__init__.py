"""The offline study: a rendered shapes world, TIFA-format questions from its scene graphs, and a
VQA backend that answers them by measuring pixels (so `t2ibench demo` needs no downloaded weights)."""

from t2ibench.demo.shapes import DEFAULT_COLORS, PALETTE, SHAPES, Scene, SceneSpec, ShapesWorld

__all__ = ["DEFAULT_COLORS", "PALETTE", "SHAPES", "Scene", "SceneSpec", "ShapesWorld"]
