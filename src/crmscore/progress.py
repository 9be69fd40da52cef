"""Progress bars for long work (rich), quiet when not on a terminal or when disabled."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
_STDERR = Console(stderr=True)  # stdout stays clean for --json and piped output


def track(items: Iterable[T], description: str, *, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr when enabled."""
    if not enabled:
        yield from items
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=not sys.stderr.isatty(), console=_STDERR) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


class Steps:
    """A progress bar over named steps of one job: `with Steps(["load", "build"]) as s: s.step("load")`."""

    def __init__(self, total: int, description: str = "working", enabled: bool = True):
        self.enabled = enabled
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=_STDERR) if enabled else None
        self._total, self._description, self._task, self._started = total, description, None, False

    def __enter__(self) -> Steps:
        if self._bar:
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=self._total)
        return self

    def step(self, name: str) -> None:
        """Mark the previous step done and show this one as running."""
        if self._bar is not None and self._task is not None:
            if self._started:
                self._bar.advance(self._task)
            self._started = True
            self._bar.update(self._task, description=name)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None and self._task is not None:
            if self._started and exc[0] is None:
                self._bar.advance(self._task)
            self._bar.stop()
