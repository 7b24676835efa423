"""Nothing outlives its owner: SIGKILL of the `deploybench run` process (an OOM kill, a CI
timeout, a dropped SSH session) in the middle of a run, on every platform. Within 5 s no
worker or guest of that run uses CPU (the worker dies with its owner: PR_SET_PDEATHSIG,
end-of-file of its job channel; QEMU dies with its owner); the owner's watchdog
(platforms/watchdog.py) reaps what is left from the sessions ledger, paused sessions
included, before any other deploybench command runs: no cgroup, container, QEMU process or
folder remains, and the next command finds nothing to reap. Each test uses a ledger of its
own, so other sessions on the host are untouched."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploybench.host import CGROUP_ROOT

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("needs_cgroups")


@pytest.fixture(scope="module")
def bench_home(tmp_path_factory) -> Path:
    """One deploybench home for the module: the IC data set is generated once."""
    home = tmp_path_factory.mktemp("kill-home")
    env = {**os.environ, "DEPLOYBENCH_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "deploybench", "data", "--app", "ic", "--count", "8"],
                   env=env, check=True, capture_output=True, cwd=REPO, timeout=300)
    return home


def _entries(ledger: Path) -> list[dict]:
    out = []
    for path in ledger.glob("deploybench-*.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return out


def _ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[11]) + int(fields[12])


def _pids_of(entry: dict) -> set[int]:
    pids = {int(p["pid"]) for p in entry["processes"]}
    for directory in entry["cgroups"]:
        try:
            pids |= {int(p) for p in (Path(directory) / "cgroup.procs").read_text().split()}
        except (OSError, ValueError):
            pass
    return pids


def _cpu_used(pids: set[int], seconds: float = 1.0) -> int:
    before = {pid: _ticks(pid) for pid in pids}
    time.sleep(seconds)
    used = 0
    for pid, ticks in before.items():
        now = _ticks(pid)
        if ticks is not None and now is not None:
            used += now - ticks
    return used


def _kill_mid_run(args: list[str], tmp_path: Path, bench_home: Path, *, ready, guest: bool = False):
    ledger = tmp_path / "ledger"
    env = {**os.environ, "DEPLOYBENCH_HOME": str(bench_home), "DEPLOYBENCH_LEDGER": str(ledger)}
    db = tmp_path / "x.db"
    cli = subprocess.Popen([sys.executable, "-m", "deploybench", "run", *args, "--app", "ic",
                            "--model-size", "tiny", "--data-count", "8", "--db", str(db)],
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + (300 if guest else 120)
        entry = None
        while time.monotonic() < deadline and cli.poll() is None:
            entries = [e for e in _entries(ledger) if e["owner_pid"] == cli.pid and e["processes"]]
            entry = next((e for e in entries if ready(e, db)), None)
            if entry is not None:
                break
            time.sleep(0.2)
        assert entry is not None, f"the run never got going: {cli.stderr.read() if cli.poll() is not None else ''}"
        entry = json.loads((ledger / f"{entry['session_id']}.json").read_text())  # the latest
        pids = _pids_of(entry)
        assert pids, entry
        cli.send_signal(signal.SIGKILL)
        cli.wait()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    time.sleep(4.0)
    assert _cpu_used(pids | _pids_of(entry)) == 0, "a worker or guest still uses CPU 5 s after its owner died"
    # no other deploybench command until the watchdog has reaped (it holds the CLI's stderr
    # until it exits, so this read returns once it is done)
    said = cli.stderr.read()
    assert "reaped a session left by a dead deploybench" in said, said
    assert "Traceback" not in said
    for directory in entry["cgroups"]:
        assert not Path(directory).exists(), f"cgroup {directory} is left"
    for proc in entry["processes"]:
        assert _ticks(int(proc["pid"])) is None, f"{proc['what']} {proc['pid']} is still running"
    for folder in entry["folders"] + entry["bundles"]:
        assert not Path(folder).exists(), f"folder {folder} is left"
    assert _entries(ledger) == []
    after = subprocess.run([sys.executable, "-m", "deploybench", "show", "--db", str(db)], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=120)
    assert "reaped" not in after.stderr and "Traceback" not in after.stderr, after.stderr
    entry["reaped"] = said.strip()  # what the watchdog said, for the callers' messages
    return entry, env


def _stored_rounds(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT COUNT(*) FROM runs WHERE status='ok'").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def _mid_round(entry: dict, db: Path) -> bool:
    """A round has been stored, so the next one is in flight."""
    return _stored_rounds(db) >= 1


def test_sigkill_of_the_cli_mid_run_on_bare_metal(tmp_path, bench_home):
    _kill_mid_run(["BM/1/PIN/CPU", "--requests", "64", "--repeat", "200", "--launches", "1"],
                  tmp_path, bench_home, ready=_mid_round)


def test_sigkill_of_the_cli_mid_run_in_a_runc_container(tmp_path, bench_home):
    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    entry, _ = _kill_mid_run(["CN/1/PIN/CPU", "--requests", "64", "--repeat", "200", "--launches", "1"],
                             tmp_path, bench_home, ready=_mid_round)
    (container,) = entry["containers"]
    listed = subprocess.run(["runc", "list", "-q"], capture_output=True, text=True).stdout.split()
    assert container["id"] not in listed, entry["reaped"]
    assert not list(CGROUP_ROOT.glob(f"*/{container['id']}"))


def test_sigkill_of_the_cli_mid_run_in_a_podman_container(tmp_path, bench_home):
    from deploybench.platforms.container.launchers import EngineCli

    engine = EngineCli("podman")
    problem = engine.problem()
    if problem:
        pytest.skip(problem)
    entry, _ = _kill_mid_run(["CN/1/PIN/CPU", "--engine", "podman", "--requests", "64", "--repeat", "200",
                              "--launches", "1"], tmp_path, bench_home, ready=_mid_round)
    (container,) = entry["containers"]
    assert container["id"] not in engine.container_ids(), entry["reaped"]


def _paused(status):
    def ready(entry: dict, db: Path) -> bool:
        """The container session is paused (the bare metal one is measuring its long round)."""
        return _stored_rounds(db) >= 1 and bool(entry["containers"]) and \
            status(entry["containers"][0]["id"]) == "paused"
    return ready


@pytest.mark.parametrize("engine", ["runc", "podman"])
def test_sigkill_of_the_cli_while_its_container_is_paused(tmp_path, bench_home, engine):
    """A container left paused is removed, and no engine keeps a record of it. Podman keeps
    "paused" in its own records: the reaper must have podman unpause the container before
    anything thaws its freezer, or podman can never remove it again."""
    from deploybench.platforms.container.launchers import EngineCli, OciRuntime

    launcher = OciRuntime("runc") if engine == "runc" else EngineCli("podman")
    problem = launcher.problem()
    if problem:
        pytest.skip(problem)

    def status(cid: str) -> str:
        if engine == "runc":
            out = subprocess.run(["runc", "state", cid], capture_output=True, text=True)
            return json.loads(out.stdout).get("status", "") if out.returncode == 0 else ""
        out = launcher._control("inspect", "--format", "{{.State.Status}}", cid)
        return out.stdout.strip() if out.returncode == 0 else ""

    args = ["CN/1/PIN/CPU", "BM/1/PIN/CPU", "--requests", "256", "--repeat", "200", "--launches", "1"]
    entry, _ = _kill_mid_run(args + (["--engine", "podman"] if engine == "podman" else []),
                             tmp_path, bench_home, ready=_paused(status))
    (container,) = entry["containers"]
    assert container["id"] not in launcher.container_ids(), entry["reaped"]
    assert "could not" not in entry["reaped"], entry["reaped"]


@pytest.fixture(scope="module")
def guest_assets():
    from deploybench.platforms.guest import GuestAssetError, prepare

    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed")
    try:
        return prepare()
    except GuestAssetError as exc:
        pytest.skip(f"no guest kernel here: {exc}")


def _guest_running(entry: dict, db: Path) -> bool:
    """QEMU has run for a few seconds: the guest is booting or loading the worker."""
    qemu = [p for p in entry["processes"] if p["what"] == "qemu"]
    if not qemu:
        return False
    ticks = os.sysconf("SC_CLK_TCK")
    started = qemu[0]["start"] / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started > 6


@pytest.mark.parametrize("name", ["VM/1/PIN/CPU", "MVM/1/VNL/CPU", "VMCN/1/PIN/CPU"])
def test_sigkill_of_the_cli_mid_run_in_a_guest(tmp_path, bench_home, guest_assets, name):
    if name.startswith("VMCN") and not shutil.which("runc"):
        pytest.skip("runc is not installed")
    entry, _ = _kill_mid_run([name, "--requests", "2", "--repeat", "3", "--accel", "tcg",
                              "--kernel", guest_assets.kernel, "--initrd", guest_assets.initrd],
                             tmp_path, bench_home, ready=_guest_running, guest=True)
    assert any(p["what"] == "qemu" for p in entry["processes"])
