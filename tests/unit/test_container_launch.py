"""The host-side mechanics the CN platform relies on: waiting for a process that is not a
plain child (the container's init) with a deadline, and adopting it as a subreaper."""
from __future__ import annotations

import os
import subprocess
import time

from deploybench.platforms.container import _reap, child_subreaper, wait_pid


def test_wait_pid_returns_the_exit_status_of_a_child():
    proc = subprocess.Popen(["sh", "-c", "exit 3"])
    exited, status = wait_pid(proc.pid, time.monotonic() + 10)
    assert (exited, status) == (True, 3)


def test_wait_pid_gives_up_at_the_deadline_and_ticks_meanwhile():
    proc = subprocess.Popen(["sleep", "30"])
    ticks = []
    try:
        t = time.monotonic()
        exited, status = wait_pid(proc.pid, t + 0.5, tick=lambda: ticks.append(1), tick_s=0.1)
        assert (exited, status) == (False, None)
        assert 0.4 < time.monotonic() - t < 5
        assert len(ticks) >= 3
    finally:
        proc.kill()
        proc.wait()


def test_a_subreaper_adopts_an_orphan_and_gets_its_exit_status():
    with child_subreaper() as adopting:
        assert adopting
        # The outer shell exits at once, orphaning the inner one (as `runc create` does).
        out = subprocess.run(["sh", "-c", '(sleep 0.3; exit 5) >/dev/null 2>&1 & echo $!'],
                             capture_output=True, text=True, check=True)
        orphan = int(out.stdout)
        exited, status = wait_pid(orphan, time.monotonic() + 10)
    assert (exited, status) == (True, 5)


def test_reap_of_a_process_that_is_not_our_child_is_unknown():
    assert _reap(os.getppid(), block=False) is None


def test_subreaper_is_switched_off_after_use():
    import ctypes

    with child_subreaper():
        pass
    flag = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)
    assert flag.value == 0
