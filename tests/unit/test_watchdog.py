"""The owner's watchdog (platforms/watchdog.py): a process that dies (SIGKILL) has its
ledger entries reaped at once, without another deploybench command; one that exits
normally leaves its watchdog nothing to do, and nobody else's entries are touched."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from deploybench.platforms.ledger import Ledger, is_zombie, process_start

OWNER = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from deploybench.platforms.ledger import Ledger, is_zombie, process_start
    handle = Ledger(Path(sys.argv[1])).open("BM", "BM/1/PIN/CPU watched")
    worker = subprocess.Popen(["sleep", "300"], start_new_session=True)  # outlives its owner
    handle.process(worker.pid, "worker")
    print(worker.pid, flush=True)
    if sys.argv[2] == "close":
        handle.close()
        worker.kill()
    else:
        time.sleep(300)
""")


def _owner(root: Path, how: str) -> tuple[subprocess.Popen, int]:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(root), how], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    return owner, int(owner.stdout.readline())


def _alive(pid: int) -> bool:
    return process_start(pid) is not None and not is_zombie(pid)


def test_a_killed_owner_has_its_sessions_reaped_without_another_command(tmp_path):
    owner, worker = _owner(tmp_path, "stay")
    try:
        assert _alive(worker) and list(tmp_path.glob("deploybench-*.json"))
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        said = owner.stderr.read()  # the watchdog holds the owner's stderr until it is done
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
    assert not _alive(worker)
    assert not list(tmp_path.glob("deploybench-*.json"))
    assert "reaped a session left by a dead deploybench" in said and "1 process(es) killed" in said, said


def test_an_owner_that_exits_normally_leaves_its_watchdog_nothing_and_others_untouched(tmp_path):
    other = Ledger(tmp_path).open("BM", "BM/1/VNL/CPU live")  # this test process: alive
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        other.process(sleeper.pid, "worker")
        owner, _ = _owner(tmp_path, "close")
        assert owner.wait(timeout=60) == 0
        said = owner.stderr.read()
        assert said == "", said
        time.sleep(0.2)
        assert sleeper.poll() is None  # a live owner's session is never reaped
        assert [p.name for p in tmp_path.glob("deploybench-*.json")] == [f"{other.entry.session_id}.json"]
    finally:
        other.close()
        sleeper.kill()
        sleeper.wait()


def test_the_watchdog_ends_when_its_owner_ends(tmp_path):
    owner, _ = _owner(tmp_path, "close")
    owner.wait(timeout=60)
    owner.stderr.read()  # returns once the watchdog, which shares it, has exited
    mine = [pid for pid in os.listdir("/proc") if pid.isdigit() and _watchdog_of(int(pid), owner.pid)]
    assert mine == []


def _watchdog_of(pid: int, owner: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"deploybench.platforms.watchdog" in args and str(owner).encode() in args and _alive(pid)

