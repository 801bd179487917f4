"""TIFA (Hu et al., ICCV 2023): VQA-based text-to-image faithfulness, scored as the official code does."""

from t2ibench.metrics.tifa.questions import QuestionSet, TifaQuestion, load_questions
from t2ibench.metrics.tifa.scorer import DEFAULT_MAPPER, DEFAULT_VQA, MAPPERS, TIFAScore
from t2ibench.metrics.tifa.vqa import VQA_BACKENDS, VQABackend, register_vqa_backend, vqa_backend_class

__all__ = ["DEFAULT_MAPPER", "DEFAULT_VQA", "MAPPERS", "QuestionSet", "TIFAScore", "TifaQuestion", "VQABackend",
           "VQA_BACKENDS", "load_questions", "register_vqa_backend", "vqa_backend_class"]
