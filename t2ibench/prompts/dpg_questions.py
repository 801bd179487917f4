"""DPG-Bench question graphs as `dpg_bench.csv` holds them, parsed for the prompt set's loader
(`t2ibench.prompts.formats`); their official scoring is `t2ibench.metrics.dpg.graph`, which re-exports these.

`parse_question_graphs` <- `prepare_dpg_data` of TencentQQGYLab/ELLA at 3c228f1, `dpg_bench/compute_dpg_bench.py`
(lines 65-99): rows grouped by consecutive `item_id`; `proposition_id` is the question id, `dependency` a
comma-separated list of parent ids (0: none). The official loop skips the csv's first data row, so the first
item loses its first question; `official_first_row=True` (the default) keeps that quirk.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from t2ibench.errors import UserError

CSV_COLUMNS = ("item_id", "text", "proposition_id", "dependency", "tuple", "question_natural_language")


@dataclass
class QuestionGraph:
    item_id: str
    text: str
    questions: dict[int, str] = field(default_factory=dict)      # qid -> question, csv order
    parents: dict[int, list[int]] = field(default_factory=dict)  # qid -> parent qids (0: none)
    tuples: dict[int, str] = field(default_factory=dict)         # qid -> DSG tuple, e.g. "entity - whole (cat)"

    def to_meta(self) -> list[dict]:
        return [{"qid": q, "question": self.questions[q], "parents": self.parents[q], "tuple": self.tuples[q]}
                for q in self.questions]

    @classmethod
    def from_meta(cls, item_id: str, text: str, rows: Sequence[dict]) -> QuestionGraph:
        g = cls(item_id, text)
        for r in rows:
            q = int(r["qid"])
            g.questions[q], g.parents[q], g.tuples[q] = r["question"], [int(p) for p in r["parents"]], r["tuple"]
        return g


def parse_question_graphs(text: str, source: str = "dpg_bench.csv",
                          official_first_row: bool = True) -> dict[str, QuestionGraph]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{source}: not a DPG-Bench question file (missing column(s) {', '.join(missing)})")
    graphs: dict[str, QuestionGraph] = {}
    previous = None
    for i, row in enumerate(reader):
        if i == 0 and official_first_row:
            continue
        item = row["item_id"]
        try:
            qid = int(row["proposition_id"])
            parents = [int(d.strip()) for d in row["dependency"].split(",")]
        except ValueError:
            raise UserError(f"{source}: row {i + 2}: proposition_id/dependency must be integers") from None
        if item != previous:  # a new run of rows starts a new graph (a repeated id replaces the old one)
            graphs[item] = QuestionGraph(item, row["text"])
        g = graphs[item]
        g.questions[qid], g.parents[qid], g.tuples[qid] = row["question_natural_language"], parents, row["tuple"]
        previous = item
    if not graphs:
        raise UserError(f"{source}: contains no questions")
    return graphs
