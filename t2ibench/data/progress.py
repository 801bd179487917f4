"""A rich progress bar over shards that also counts samples; silent when disabled."""

from __future__ import annotations

from contextlib import contextmanager


class _Bar:
    def __init__(self, progress, task):
        self._progress, self._task, self.samples = progress, task, 0

    def add_samples(self, n: int = 1) -> None:
        self.samples += n
        if self._progress is not None:
            self._progress.update(self._task, samples=self.samples)

    def shard_done(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)


@contextmanager
def shard_progress(description: str, total_shards: int, enabled: bool = True):
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
               TextColumn("{task.fields[samples]} samples"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total_shards, samples=0)
        yield _Bar(progress, task)
