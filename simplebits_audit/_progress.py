"""The progress display every long loop uses: rich's bar in a terminal, plain lines without one.

A job run under ``nohup``, in CI or with its output sent to a file has no terminal, and rich's
transient bar then shows nothing at all: a two-hour training run would print nothing until it ends.
:class:`JobProgress` prints one plain line per task instead, at most every
:data:`PLAIN_PROGRESS_SECONDS` and once when the task completes.
"""

from __future__ import annotations

import time
from typing import Any

from rich import get_console
from rich.progress import Progress, TaskID

#: Seconds between two plain progress lines of one task (without a terminal).
PLAIN_PROGRESS_SECONDS = 30.0


class JobProgress(Progress):
    """:class:`rich.progress.Progress` (transient by default) that also prints plain lines without a terminal.

    A line reads ``description: completed / total (stats) (seconds s)``; ``stats`` is the task's
    field of that name where it has one. Nothing is printed when ``disable`` is true (``--quiet``).
    """

    def __init__(self, *columns: Any, disable: bool = False, transient: bool = True,
                 every: float | None = None, **kwargs: Any) -> None:
        console = kwargs.get("console") or get_console()
        # a notebook draws the bar (it is no terminal to rich); a dumb terminal draws nothing (it is one)
        self.plain = not disable and not console.is_jupyter and (not console.is_terminal or console.is_dumb_terminal)
        # without a terminal the live display draws nothing but a blank line at its end: the plain lines replace it
        super().__init__(*columns, disable=disable or self.plain, transient=transient, **kwargs)
        self.every = PLAIN_PROGRESS_SECONDS if every is None else every
        self._said: dict[TaskID, float] = {}  # task -> when its last line was printed (or it started)
        self._started: dict[TaskID, float] = {}
        self._finished: set[TaskID] = set()

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._said[task_id] = self._started[task_id] = time.perf_counter()
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._say(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._say(task_id)

    def stop(self) -> None:
        """Stop; a task not yet said to be complete (no total, interrupted, resumed already done) gets its last line."""
        for task_id in list(self._said):
            self._say(task_id, last=True)
        super().stop()

    def _say(self, task_id: TaskID, last: bool = False) -> None:
        if not self.plain or task_id in self._finished:
            return
        task = next(t for t in self.tasks if t.id == task_id)
        now = time.perf_counter()
        done = last or (task.total is not None and task.completed >= task.total)
        if not done and now - self._said[task_id] < self.every:
            return
        if done:
            self._finished.add(task_id)
        self._said[task_id] = now
        total = "" if task.total is None else f" / {task.total:.0f}"
        stats = task.fields.get("stats")
        self.console.print(f"{task.description}: {task.completed:.0f}{total}" + (f" ({stats})" if stats else "")
                           + f" ({now - self._started[task_id]:.0f} s)", markup=False, highlight=False)


__all__ = ["PLAIN_PROGRESS_SECONDS", "JobProgress"]
