"""Missing inputs reported together: a run that lacks a prompt set and two scorers' weights says so
once, listing all three with what fetches each, instead of one per attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from t2ibench.errors import MissingWeightsError, UserError


class MissingInputs:
    """Run checks, keep the UserErrors they raise, and raise them as one line at the end."""

    def __init__(self) -> None:
        self.problems: list[UserError] = []

    def check(self, fn: Callable[[], Any], default: Any = None) -> Any:
        try:
            return fn()
        except UserError as exc:
            if str(exc) not in {str(p) for p in self.problems}:
                self.problems.append(exc)
            return default

    def raise_if_any(self) -> None:
        if not self.problems:
            return
        if len(self.problems) == 1:
            raise self.problems[0]
        cls = MissingWeightsError if all(isinstance(p, MissingWeightsError) for p in self.problems) else UserError
        listed = " | ".join(f"({i}) {p}" for i, p in enumerate(self.problems, 1))
        raise cls(f"{len(self.problems)} inputs are missing or wrong: {listed}")
