"""The sessions ledger: every live platform session, and everything it launched, written down
*before* it is launched, so that nothing outlives its owner.

One JSON file per session in the ledger folder: the owner (pid, its start time and the boot
id, so a reused pid is never taken for the owner), the platform and scenario, and the
resources as they are made: cgroup directories, processes (BM worker, QEMU; pid + start
time), containers (with the command that deletes them), bundles and folders. A session
removes its file when it closes.

The owner's watchdog (``watchdog.py``, started with its first entry) runs ``reap_dead()``
the moment the owner dies; ``reap_dead()`` also runs at the start of every deploybench command,
for what no watchdog reaped: an entry whose owner is dead
(a SIGKILL, an OOM kill, a dropped SSH session) has its processes killed (cgroups thawed
first: a frozen task cannot die), its containers deleted, its cgroups removed and its
folders deleted, and one line says so. ``strays()`` lists ``deploybench-*`` cgroups,
containers, guests and folders that no live entry owns (``doctor``; ``doctor --clean``).

DESIGN: the ledger is host-wide (``/run/deploybench/sessions``, a tmpfs that a reboot
empties; ``$DEPLOYBENCH_LEDGER`` to move it; ``<deploybench home>/sessions`` when /run is not
writable), not per deploybench home: two studies with different homes on one host would
otherwise not see each other (the concurrency check) and ``doctor --clean`` under one home
would kill the other's live sessions as strays.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..host import CGROUP_ROOT, PREFIX
from .base import last_line

LEDGER_SCHEMA = 1
DEFAULT_ROOT = Path("/run/deploybench/sessions")


def ledger_root() -> Path:
    env = os.environ.get("DEPLOYBENCH_LEDGER")
    if env:
        return Path(env)
    try:
        DEFAULT_ROOT.mkdir(parents=True, exist_ok=True)
        if os.access(DEFAULT_ROOT, os.W_OK):
            return DEFAULT_ROOT
    except OSError:
        pass
    from ..datasets.cache import home

    return home() / "sessions"


# -- processes --------------------------------------------------------------------------------
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks after boot), None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


def same_process(pid: int, start: int | None, boot: str = "") -> bool:
    """Whether ``pid`` is still the process that was recorded (not a reused pid)."""
    if boot and boot != boot_id():
        return False
    now = process_start(pid)
    return now is not None and (start is None or now == start)


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# -- entries ----------------------------------------------------------------------------------
@dataclass
class Entry:
    session_id: str
    owner_pid: int
    owner_start: int | None
    boot_id: str
    platform: str
    scenario: str
    created_at: float
    cgroups: list[str] = field(default_factory=list)  # directories (every controller)
    processes: list[dict[str, Any]] = field(default_factory=list)  # {pid, start, what}
    containers: list[dict[str, Any]] = field(default_factory=list)  # {id, delete: [argv...]}
    bundles: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    measuring: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"schema": LEDGER_SCHEMA, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Entry":
        if data.get("schema") != LEDGER_SCHEMA:
            raise ValueError(f"ledger entry schema {data.get('schema')!r}")
        values = {k: v for k, v in data.items() if k != "schema"}
        return cls(**values)

    @property
    def owner_alive(self) -> bool:
        return same_process(self.owner_pid, self.owner_start, self.boot_id) and not is_zombie(self.owner_pid)

    def describe(self) -> str:
        return f"{self.scenario} (pid {self.owner_pid}, since {time.strftime('%H:%M:%S', time.localtime(self.created_at))})"


class Ledger:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else ledger_root()

    def _path(self, session_id: str) -> Path:
        return self.root / f"{session_id}.json"

    def open(self, platform: str, scenario: str) -> "LedgerHandle":
        """A new entry owned by this process, written at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        entry = Entry(session_id=f"{PREFIX}{uuid.uuid4().hex[:12]}", owner_pid=os.getpid(),
                      owner_start=process_start(os.getpid()), boot_id=boot_id(),
                      platform=platform, scenario=scenario, created_at=time.time())
        handle = LedgerHandle(self, entry)
        handle.save()
        from .watchdog import watch

        watch(self.root)  # reaps this entry at once should this process die (watchdog.py)
        return handle

    def entries(self) -> list[Entry]:
        out = []
        try:
            paths = sorted(self.root.glob(f"{PREFIX}*.json"))
        except OSError:
            return out
        for path in paths:
            try:
                out.append(Entry.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # being written, or removed meanwhile
        return out

    def live_others(self) -> list[Entry]:
        """Live sessions of other deploybench processes on this host."""
        me = os.getpid()
        return [e for e in self.entries() if e.owner_pid != me and e.owner_alive]


class LedgerHandle:
    """The entry of one session, updated as its resources are made."""

    def __init__(self, ledger: Ledger, entry: Entry) -> None:
        self.ledger = ledger
        self.entry = entry
        self.closed = False

    def save(self) -> None:
        path = self.ledger._path(self.entry.session_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.entry.to_json()))
        tmp.replace(path)

    def add(self, **resources: Any) -> None:
        """Append resources (``cgroups=[...]``, ``processes=[{pid, start, what}]``,
        ``containers=[{id, delete}]``, ``bundles=[...]``, ``folders=[...]``) and save."""
        for key, values in resources.items():
            getattr(self.entry, key).extend(values)
        self.save()

    def process(self, pid: int, what: str) -> None:
        self.add(processes=[{"pid": pid, "start": process_start(pid), "what": what}])

    def close(self) -> None:
        if not self.closed:
            self.ledger._path(self.entry.session_id).unlink(missing_ok=True)
            self.closed = True


# -- reaping ----------------------------------------------------------------------------------
def thaw(directory: Path) -> None:
    """Thaw a frozen cgroup (v1 freezer or v2 cgroup.freeze): a frozen task does not die."""
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        path = directory / name
        if path.exists():  # never create it: in a plain folder that would be a new file
            try:
                path.write_text(value)
            except OSError:
                pass


def _pids(directory: Path) -> list[int]:
    try:
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_cgroup(directory: Path) -> int:
    """SIGKILL everything in a cgroup directory (and its children); returns how many."""
    killed = 0
    if not directory.is_dir():
        return 0
    for dirpath, _dirs, _files in os.walk(directory):
        d = Path(dirpath)
        for pid in _pids(d):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        thaw(d)
    return killed


def remove_cgroup_tree(directory: Path, timeout_s: float = 5.0) -> bool:
    """rmdir a cgroup and its children, killing what is inside; True when it is gone."""
    deadline = time.monotonic() + timeout_s
    while directory.exists():
        kill_cgroup(directory)
        for dirpath, dirnames, _ in os.walk(directory, topdown=False):
            for d in dirnames:
                try:
                    (Path(dirpath) / d).rmdir()
                except OSError:
                    pass
        try:
            directory.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    return True


def _safe_folder(path: Path) -> bool:
    """Only folders deploybench makes may be deleted by the reaper."""
    from ..datasets.cache import home

    real = Path(os.path.realpath(path))
    allowed = [Path(os.path.realpath(home() / "runs")), Path("/tmp"), Path("/run/deploybench")]
    return any(real != a and real.is_relative_to(a) for a in allowed) and (
        real.name.startswith(PREFIX) or real.parent.name == "runs")


@dataclass
class Reaped:
    entry: Entry
    killed: int = 0
    containers: int = 0
    cgroups: int = 0
    folders: int = 0
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.killed, "process(es) killed"),
                                               (self.containers, "container(s) deleted"),
                                               (self.cgroups, "cgroup(s) removed"),
                                               (self.folders, "folder(s) removed")) if n]
        text = (f"reaped a session left by a dead deploybench: {self.entry.platform} "
                f"{self.entry.describe()}: {', '.join(parts) or 'nothing was left'}")
        if self.problems:
            text += f" (could not: {'; '.join(self.problems)})"
        return text


#: seconds between tries of a container delete that failed (an engine still cleaning the
#: container up after its owner died, e.g. podman's conmon, refuses it for a moment)
DELETE_RETRY_S = (0.5, 1.0, 2.0, 4.0)


def delete_container(command: list[str]) -> str | None:
    """Run a container's delete command, again while it fails: None when it is deleted,
    "gone" when there was no such container, else the engine's last line."""
    problem = "not tried"
    for pause in (0.0, *DELETE_RETRY_S):
        time.sleep(pause)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            problem = str(exc)
            continue
        if done.returncode == 0:
            return None
        said = last_line((done.stderr or done.stdout or "").strip())
        # the verdict is the last line: Podman logs its runtime's complaints ("container
        # does not exist") above its own error, and the container is still there then
        if "no such container" in said.lower() or "does not exist" in said.lower():
            return "gone"
        problem = said or f"exit status {done.returncode}"
    return problem


def reap(entry: Entry) -> Reaped:
    """Kill, delete and remove everything ``entry`` lists (its owner is dead)."""
    out = Reaped(entry)
    # containers first, through their engine: a paused container's worker killed behind
    # Podman's back (SIGKILL while frozen, then thawed) leaves Podman's record "paused" and
    # runc's container stopped, and no podman command removes that record any more
    # (test_sigkill_of_the_cli_while_its_container_is_paused)
    for container in entry.containers:
        command = container.get("delete")
        if not command:
            continue
        problem = delete_container(command)
        if problem is None:
            out.containers += 1
        elif problem != "gone":
            out.problems.append(f"delete container {container.get('id')}: {problem}")
    for directory in entry.cgroups:
        thaw(Path(directory))
    for proc in entry.processes:
        pid = int(proc["pid"])
        if same_process(pid, proc.get("start"), entry.boot_id):
            try:
                os.kill(pid, signal.SIGKILL)
                out.killed += 1
            except ProcessLookupError:
                pass
    for directory in entry.cgroups:
        out.killed += kill_cgroup(Path(directory))
    for directory in entry.cgroups:
        path = Path(directory)
        if path.exists():
            if remove_cgroup_tree(path):
                out.cgroups += 1
            else:
                out.problems.append(f"remove {path}")
    from .container.oci import remove_bundle

    for bundle in entry.bundles:
        try:
            if Path(bundle).exists():
                remove_bundle(Path(bundle), allow_empty_files=True)
                out.folders += 1
        except OSError as exc:
            out.problems.append(str(exc))
    for folder in entry.folders:
        path = Path(folder)
        if path.exists() and _safe_folder(path):
            shutil.rmtree(path, ignore_errors=True)
            out.folders += 1
    return out


def reap_dead(ledger: Ledger | None = None) -> list[Reaped]:
    """Reap every entry whose owner is dead. Two commands reaping at once never reap one
    entry twice: an entry is claimed by renaming its file first."""
    ledger = ledger or Ledger()
    out = []
    for entry in ledger.entries():
        if entry.owner_alive:
            continue
        path = ledger._path(entry.session_id)
        claimed = path.with_name(f".reaping-{os.getpid()}-{path.name}")
        try:
            path.rename(claimed)
        except OSError:
            continue  # another command took it
        try:
            out.append(reap(entry))
        finally:
            claimed.unlink(missing_ok=True)
    return out


# -- strays -----------------------------------------------------------------------------------
@dataclass
class Strays:
    """deploybench resources that no live ledger entry owns."""

    cgroups: list[Path] = field(default_factory=list)
    containers: list[tuple[str, list[str]]] = field(default_factory=list)  # (id, delete argv)
    processes: list[tuple[int, str]] = field(default_factory=list)  # (pid, what)
    folders: list[Path] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.cgroups or self.containers or self.processes or self.folders)

    def lines(self) -> list[str]:
        out = [f"cgroup {p}" for p in self.cgroups]
        out += [f"container {cid}" for cid, _ in self.containers]
        out += [f"process {pid} ({what})" for pid, what in self.processes]
        out += [f"folder {p}" for p in self.folders]
        return out


def _owned(ledger: Ledger) -> tuple[set[str], set[str], set[int], set[str]]:
    names, containers, pids, folders = set(), set(), set(), set()
    for e in ledger.entries():
        if not e.owner_alive:
            continue  # reaped by reap_dead; not a stray either
        names |= {Path(c).name for c in e.cgroups}
        containers |= {c["id"] for c in e.containers}
        pids |= {int(p["pid"]) for p in e.processes}
        folders |= {os.path.realpath(f) for f in [*e.folders, *e.bundles]}
    return names, containers, pids, folders


#: resources younger than this are left alone by ``strays``: a probe (doctor's test
#: container, the writable-cgroup check) may be between its creation and its removal
STRAY_MIN_AGE_S = 30.0


def _old(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > STRAY_MIN_AGE_S
    except OSError:
        return False


def _cgroup_dirs(root: Path = CGROUP_ROOT) -> Iterator[Path]:
    try:
        hierarchies = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return
    for hierarchy in [root, *hierarchies]:
        try:
            for child in hierarchy.iterdir():
                if child.is_dir() and child.name.startswith(PREFIX) and _old(child):
                    yield child
        except OSError:
            continue


def _qemu_processes() -> Iterator[tuple[int, str]]:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64"):
            for i, arg in enumerate(argv[:-1]):
                if arg == b"-name" and argv[i + 1].startswith(PREFIX.encode()):
                    yield int(proc.name), argv[i + 1].decode(errors="replace").split(",")[0]


def strays(ledger: Ledger | None = None) -> Strays:
    """What ``deploybench-*`` resources exist that no live session owns."""
    from ..datasets.cache import home
    from .container.launchers import all_launchers
    from .container.oci import bundles_root

    ledger = ledger or Ledger()
    names, containers, pids, folders = _owned(ledger)
    out = Strays()
    out.cgroups = sorted({p for p in _cgroup_dirs() if p.name not in names})
    for launcher in all_launchers():
        for cid in launcher.container_ids():
            if cid.startswith(PREFIX) and cid not in containers:
                out.containers.append((cid, launcher.delete_command(cid)))
    out.processes = [(pid, what) for pid, what in _qemu_processes()
                     if pid not in pids and "kvm-probe" not in what]
    for parent in (home() / "runs", bundles_root()):
        try:
            for child in parent.iterdir():
                if child.is_dir() and os.path.realpath(child) not in folders and _old(child):
                    out.folders.append(child)
        except OSError:
            continue
    return out


def clean(found: Strays) -> list[str]:
    """Remove what ``strays`` found; returns what could not be removed."""
    from .container.oci import bundles_root, remove_bundle

    problems = []
    for pid, what in found.processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for cid, command in found.containers:
        problem = delete_container(command)
        if problem not in (None, "gone"):
            hint = (" (its engine keeps it as paused, and its runtime has no paused container "
                    "to resume: the engine itself cannot remove it)" if "resume" in problem.lower() else "")
            problems.append(f"container {cid}: {problem}{hint}")
    for path in found.cgroups:
        if not remove_cgroup_tree(path):
            problems.append(f"cgroup {path}")
    for path in found.folders:
        try:
            if Path(os.path.realpath(path)).is_relative_to(os.path.realpath(bundles_root())):
                remove_bundle(path, allow_empty_files=True)
            else:
                shutil.rmtree(path)
        except OSError as exc:
            problems.append(f"folder {path}: {exc}")
    return problems
