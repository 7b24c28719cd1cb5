"""Progress display (rich) and stage timings of a run."""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["Steps", "progress_columns"]


def progress_columns() -> tuple:
    """The columns of glacgrid's progress bars: what, bar, done/total, elapsed and the estimated time left
    (``eta 0:01:23``; rich estimates it from the recent speed of the bar, ``-:--:--`` until it can)."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())


class Steps:
    """Progress display (rich) and stage timings.

    Parameters
    ----------
    show : bool
        Show a progress display; timings are kept either way.
    total : int
        The number of stages the progress bar counts.
    """

    def __init__(self, show: bool, total: int = 7) -> None:
        self.show = show
        self.total = total
        self.timings: dict[str, float] = {}
        self._progress = None

    def __enter__(self):
        if self.show:
            from rich.progress import Progress

            self._progress = Progress(*progress_columns(), transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("glacgrid", total=self.total)  # the stages of run()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def stage(self, name: str):
        """A context manager that times the stage ``name`` (and shows it)."""
        steps = self

        class _Ctx:
            def __enter__(self_inner):
                self_inner.t0 = time.perf_counter()
                if steps._progress is not None:
                    steps._progress.update(steps._task, description=f"[bold]{name}")

            def __exit__(self_inner, *exc):
                steps.timings[name] = time.perf_counter() - self_inner.t0
                if steps._progress is not None and exc[0] is None:
                    steps._progress.advance(steps._task)

        return _Ctx()

    def years(self, total: int) -> Callable[[], None]:
        """A callback that advances a bar of ``total`` years (a no-op without a display)."""
        if self._progress is None:
            return lambda: None
        task = self._progress.add_task("  years", total=total)
        return lambda: self._progress.advance(task)
