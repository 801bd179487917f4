"""DPG-Bench (Hu et al., ELLA, 2024): dense prompts, DSG question graphs, official dependency scoring."""

from t2ibench.metrics.dpg.scorer import DPGBenchScore

__all__ = ["DPGBenchScore"]
