"""The host-side mechanics sessions rely on so that nothing outlives its owner: a child
subreaper adopts a container's orphaned init, and a child launched with a lifeline dies
when its owner is SIGKILLed. Each runs in a throwaway process, so pytest itself stays as it is."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {SRC!r})\n" + code],
                          capture_output=True, text=True, timeout=60, **kwargs)


def test_a_subreaper_adopts_an_orphan_and_gets_its_exit_status():
    out = _python(textwrap.dedent("""
        import subprocess, time
        from deploybench.platforms.container.launchers import become_subreaper, reap_child
        assert become_subreaper()
        # the outer shell exits at once, orphaning the inner one (as `runc create` does)
        shell = subprocess.run(["sh", "-c", "(sleep 0.3; exit 5) >/dev/null 2>&1 & echo $!"],
                               capture_output=True, text=True, check=True)
        orphan = int(shell.stdout)
        status = None
        for _ in range(200):
            status = reap_child(orphan)
            if status is not None:
                break
            time.sleep(0.02)
        print(status)
    """))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5"


def test_reap_of_a_process_that_is_not_our_child_is_unknown():
    from deploybench.platforms.container.launchers import reap_child

    assert reap_child(os.getppid()) is None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_child_with_a_lifeline_dies_when_its_owner_is_killed(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, subprocess, time
        sys.path.insert(0, {SRC!r})
        from deploybench.platforms.base import lifeline
        child = subprocess.Popen(["sleep", "300"], preexec_fn=lifeline(), start_new_session=True)
        print(child.pid, flush=True)
        time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True)
    child = int(owner.stdout.readline())
    assert _alive(child)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its owner"
