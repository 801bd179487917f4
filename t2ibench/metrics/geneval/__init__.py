"""GenEval (Ghosh et al., NeurIPS 2023): object-focused alignment judged by a detector and the official rules."""

from t2ibench.metrics.geneval.scorer import GenEvalScore

__all__ = ["GenEvalScore"]
