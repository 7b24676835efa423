"""Progress people can read, for `run` and `sweep` alike: one line per finished run
(scenario, repetition, status, wall time, mean E2E or the error, warnings), on a terminal
and off it (piped to a file, a CI log); on a terminal a bar with the count and the ETA stays
below the lines.

The execution loop only calls ``on_run(record)`` (and ``note(text)`` for other lines)::

    with RunProgress(total=len(planned) * repeat) as progress:
        for ...:
            progress.on_run(run_and_store(...))
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run_line(record: Any, done: int, total: int | None, elapsed_s: float) -> str:
    """The line of one finished run (a RunRecord)."""
    count = f"{done}/{total}" if total else f"{done}"
    mean = record.summary.get("e2e_mean_ms") if record.samples else None
    if mean is not None:
        what = f"E2E {mean:.2f} ms"
    else:
        what = ((record.error or "").strip().splitlines() or [""])[0][:300]
    codes = record.warning_codes
    warn = f"  [{' '.join(codes)}]" if codes else ""
    repetition = "" if record.repetition is None else f" #{record.repetition}"
    fleet = record.host.get("fleet") or {}
    where = f" @ {fleet.get('worker') or record.host.get('host')}" if fleet else ""  # a fleet's host
    return (f"[{count:>5} {format_elapsed(elapsed_s):>7}] {record.scenario.label}{repetition}{where} "
            f"{record.status:<7} {record.finished_at - record.started_at:6.1f} s  {what}{warn}")


class RunProgress:
    """Lines of finished runs on ``stream`` (default stdout); a live bar below them when
    ``stream`` is a terminal (``live`` forces it on or off). ``total``: runs expected
    (None: not known in advance, as in an adaptive sweep: no ETA then)."""

    def __init__(self, total: int | None = None, *, stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.total = total
        self.live = _is_terminal(self.stream) if live is None else live
        self.done = 0
        self.began = time.time()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "RunProgress":
        self.began = time.time()
        if self.live:
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            columns = [TextColumn("{task.description}"), BarColumn(),
                       TextColumn("{task.completed}" + ("/{task.total}" if self.total else "") + " runs"),
                       TimeElapsedColumn()]
            if self.total:
                columns += [TextColumn("ETA"), TimeRemainingColumn()]
            self._bar = Progress(*columns, console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("running", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def note(self, text: str) -> None:
        """A line above the bar (or just a line, off a terminal)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def on_run(self, record: Any) -> None:
        """A run finished (stored or not): its line, and the bar one step on."""
        self.done += 1
        self.note(run_line(record, self.done, self.total, time.time() - self.began))
        if self._bar is not None:
            self._bar.update(self._task, advance=1,
                             description=f"{record.scenario.name} {record.status}")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
