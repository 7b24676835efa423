"""Progress people can read: one line per finished run off a terminal and on it, the bar (with
an ETA) below the lines on a terminal."""
from __future__ import annotations

import io

from deploybench.progress import RunProgress, run_line

from .fakes import record


def test_off_a_terminal_each_finished_run_is_one_plain_line():
    out = io.StringIO()
    runs = [record(e2e_ms=[10, 12], repetition=0, warnings=[{"code": "host_busy", "message": "", "hint": ""}]),
            record(status="failed", error="the worker wrote no result (exit status 1)\nmore", repetition=1)]
    with RunProgress(total=2, stream=out) as progress:
        for r in runs:
            progress.on_run(r)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and progress.done == 2
    assert lines[0].startswith("[  1/2    0:00] BM/1/PIN/CPU · ic (tiny, torch) #0 ok")
    assert lines[0].endswith("E2E 11.00 ms  [host_busy]")
    assert "#1 failed" in lines[1] and lines[1].endswith("the worker wrote no result (exit status 1)")
    assert "\x1b" not in out.getvalue()  # no escape codes in a log file


def test_on_a_terminal_the_lines_stay_above_a_bar_with_an_eta():
    out = io.StringIO()
    with RunProgress(total=3, stream=out, live=True) as progress:
        progress.on_run(record(repetition=0))
        progress.note("stop BM/1/PIN/CPU · ic: converged")
        bar = progress._bar
        columns = [type(c).__name__ for c in bar.columns]
        assert "TimeRemainingColumn" in columns and "BarColumn" in columns
        assert bar.tasks[0].completed == 1 and bar.tasks[0].total == 3
    text = out.getvalue()
    assert "BM/1/PIN/CPU · ic (tiny, torch) #0 ok" in text and "stop BM/1/PIN/CPU" in text


def test_without_a_known_total_there_is_a_count_and_no_eta():
    r = record(repetition=None)
    line = run_line(r, 7, None, 3725.0)
    assert line.startswith("[    7 1:02:05] BM/1/PIN/CPU · ic (tiny, torch) ok")
    with RunProgress(stream=io.StringIO(), live=True) as progress:
        assert "TimeRemainingColumn" not in [type(c).__name__ for c in progress._bar.columns]
