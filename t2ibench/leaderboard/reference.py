"""The paper's published numbers, kept apart from measured results and always drawn as a labelled
reference series. Source: Li et al., "On the Scalability of Diffusion-based Text-to-Image
Generation", CVPR 2024 (arXiv 2404.02883): Table 4 and the scaling functions fitted on Pareto-frontier points (Sec. 5).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "Li et al., CVPR 2024 (arXiv 2404.02883)"


@dataclass(frozen=True)
class PaperFit:
    """S = a * X^b fitted by the paper on its Pareto-frontier points (TIFA)."""

    x: str  # compute | params | data
    a: float
    b: float
    unit: str  # the unit X is expressed in
    source: str

    def label(self) -> str:
        return f"paper fit: S = {self.a:g} X^{self.b:g} (X in {self.unit}; {self.source})"


# Sec. 5 scaling laws for TIFA; X units as the paper gives them.
PAPER_FITS: dict[str, PaperFit] = {
    "compute": PaperFit("compute", 0.47, 0.02, "GFLOPs of training compute", f"{PAPER}, Sec. 5"),
    "params": PaperFit("params", 0.77, 0.11, "millions of parameters", f"{PAPER}, Sec. 5"),
    "data": PaperFit("data", 0.64, 0.03, "millions of image-noun pairs", f"{PAPER}, Sec. 5"),
}
PAPER_FIT_METRIC = "tifa"


@dataclass(frozen=True)
class PaperPoint:
    model: str
    training_data: str
    scores: dict[str, float]


# Table 4 (synthetic captions): SD2 trained on LensArt with and without synthetic captions.
TABLE4_SOURCE = f"{PAPER}, Table 4"
TABLE4: tuple[PaperPoint, ...] = (
    PaperPoint("SD2", "LensArt", {"tifa": 0.810, "clip": 0.269, "imagereward": 0.345, "fid": 17.9}),
    PaperPoint("SD2", "LensArt + Top5 Syn.", {"tifa": 0.835, "clip": 0.270, "imagereward": 0.524, "fid": 18.9}),
    PaperPoint("SD2", "LensArt + Top1 Syn.", {"tifa": 0.833, "clip": 0.271, "imagereward": 0.513, "fid": 18.3}),
)


def table4_for(metric: str) -> list[tuple[str, str, float]]:
    """(model, training data, score) rows of Table 4 for one metric; empty when the paper has none."""
    return [(p.model, p.training_data, p.scores[metric]) for p in TABLE4 if metric in p.scores]
