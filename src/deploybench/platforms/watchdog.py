"""The owner's watchdog: it reaps a deploybench process's sessions as soon as that process
dies, instead of leaving them for the next command.

Why: a paused session's worker sits in a frozen cgroup, and a frozen task cannot act on the
SIGKILL that PR_SET_PDEATHSIG sends it when its owner dies. So after a ``kill -9`` of the
command, the paused workers (and their cgroups and containers) stayed until the next
deploybench command reaped the ledger, however long that took.

How: the first ledger entry a process opens starts one watchdog
(``python -m deploybench.platforms.watchdog OWNER_PID OWNER_START``). It runs in a session of
its own, so a signal to the owner's process group or terminal does not reach it. Its stdin is
the read end of a pipe whose write end only the owner holds (close-on-exec, so no worker,
runtime or guest inherits it). The owner writes each ledger folder it uses, one per line.
End-of-file means the owner has exited or been killed. The watchdog then waits (at most
``OWNER_EXIT_S``) until the owner is dead or a zombie, reaps every dead owner's entries in
those folders (:func:`ledger.reap_dead`: thaw, kill, delete containers, remove cgroups and
folders), says so in one line each on its stderr (the owner's), and exits. An owner that
exits normally has closed its sessions, so its watchdog finds nothing to do. If the watchdog
cannot start, or is killed itself, the next command still reaps the ledger as before.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

#: how long the watchdog waits, after end-of-file, for the owner to be dead
OWNER_EXIT_S = 30.0

_lock = threading.Lock()
_state: dict[str, object] = {}


def watch(root: Path) -> None:
    """Make sure this process has a watchdog and that it knows the ledger folder ``root``.
    Never raises: without a watchdog the next command reaps instead."""
    from .ledger import process_start

    pid = os.getpid()
    with _lock:
        if _state.get("pid") != pid:  # the first entry, or a forked child of the owner
            try:
                read_end, write_end = os.pipe()  # both non-inheritable (PEP 446)
            except OSError:
                return
            try:
                subprocess.Popen([sys.executable, "-m", "deploybench.platforms.watchdog", str(pid),
                                  str(process_start(pid) or 0)],
                                 stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True)
            except OSError:
                os.close(write_end)
                return
            finally:
                os.close(read_end)
            _state.clear()
            _state.update(pid=pid, fd=write_end, roots=set())
        roots: set[str] = _state["roots"]  # type: ignore[assignment]
        if str(root) in roots:
            return
        try:
            os.write(int(_state["fd"]), f"{Path(root).resolve()}\n".encode())  # type: ignore[arg-type]
            roots.add(str(root))
        except OSError:  # the watchdog is gone (killed): the next command reaps
            pass


def _owner_gone(pid: int, start: int) -> bool:
    from .ledger import is_zombie, same_process

    return not same_process(pid, start or None) or is_zombie(pid)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    owner, start = int(argv[0]), int(argv[1])
    roots: list[str] = []
    with os.fdopen(0, "rb", closefd=False) as pipe:
        for line in pipe:  # until the owner's end closes: it exited or was killed
            text = line.decode(errors="replace").strip()
            if text and text not in roots:
                roots.append(text)
    deadline = time.monotonic() + OWNER_EXIT_S
    while not _owner_gone(owner, start):
        if time.monotonic() > deadline:
            return 0  # alive without its end of the pipe: not ours to reap
        time.sleep(0.05)
    from .ledger import Ledger, reap_dead

    for root in roots:
        try:
            for reaped in reap_dead(Ledger(Path(root))):
                _say(reaped.describe())
        except OSError as exc:
            _say(f"warning: the watchdog could not reap {root}: {exc}")
    return 0


def _say(line: str) -> None:
    """One line on the owner's stderr, which may be gone (a closed pipe): the reaping goes on."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        raise SystemExit(1)
