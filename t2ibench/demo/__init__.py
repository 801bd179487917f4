"""The offline study: a rendered shapes world, TIFA-format questions from its scene graphs, and a
VQA backend that answers them by measuring pixels (so `t2ibench demo` needs no downloaded weights).

Importing this package registers that backend as TIFA's `vqa` option "shapes-measure" (the core
never imports the demo; the `t2ibench` command imports it at start-up).
"""

from t2ibench.demo.shapes import DEFAULT_COLORS, PALETTE, SHAPES, Scene, SceneSpec, ShapesWorld
from t2ibench.metrics.tifa.vqa import register_vqa_backend

register_vqa_backend("shapes-measure", "t2ibench.demo.measure_vqa:ShapesMeasureVQA")

__all__ = ["DEFAULT_COLORS", "PALETTE", "SHAPES", "Scene", "SceneSpec", "ShapesWorld"]
