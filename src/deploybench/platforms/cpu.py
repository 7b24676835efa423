"""CPU provisioning with cgroups (v1 and v2): a CFS quota of N cores (VNL) or a cpuset of
N specific cores (PIN), created fresh for every run and always removed afterwards.

Both modes get both controllers: VNL gets a cpuset of *all* usable host cores (so a worker
launched from a restricted shell still floats over the whole host, as the paper's vanilla
does) plus the quota; PIN gets its cpuset and no quota. Either way the run's ``cpu.stat``
(periods, throttling) and CPU usage are read back before removal.

The cgroup root is a parameter so unit tests can run the logic on a fake tree.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..host import CGROUP_ROOT, PREFIX, detect_version, usable_cpus
from ..scenario import format_cpu_list

CFS_PERIOD_US = 100_000


class CgroupError(RuntimeError):
    pass


def _read(path: Path) -> str:
    return path.read_text().strip()


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from None


@dataclass
class CpuLimits:
    """What a run's cgroup imposes."""

    cpus: list[int]  # the cpuset
    quota_cores: float | None  # CFS quota in cores, None = unlimited
    period_us: int = CFS_PERIOD_US

    def to_json(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "quota_cores": self.quota_cores, "period_us": self.period_us}


@dataclass(frozen=True)
class IoLimits:
    """Read limits on one block device for a run's cgroup (``storage = throttled``).

    v1: ``blkio.throttle.read_bps_device`` / ``read_iops_device``; v2: ``io.max``
    ``rbps``/``riops``. Only reads that reach the device are limited: pages already in the
    page cache are not, so a slow-disk study also wants ``page_cache = cold``.
    """

    device: str  # "MAJOR:MINOR" of a whole disk
    read_bps: int | None = None
    read_iops: int | None = None
    device_name: str = ""  # e.g. "vda", for people

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "device_name": self.device_name,
                "read_bps": self.read_bps, "read_iops": self.read_iops}


@dataclass
class RunCgroup:
    """A created cgroup (one directory per controller on v1, one directory on v2)."""

    version: int
    dirs: dict[str, Path]  # controller -> directory ("cpu", "cpuset", "cpuacct", "freezer", "blkio" or "unified")
    limits: CpuLimits
    removed: bool = field(default=False)
    io_limits: IoLimits | None = None

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def attach(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the caller) into every controller's group. Safe in preexec_fn."""
        pid = pid or os.getpid()
        for procs in self.procs_files:
            with open(procs, "w") as f:
                f.write(str(pid))

    def pids(self) -> set[int]:
        out: set[int] = set()
        for procs in self.procs_files:
            try:
                out.update(int(p) for p in procs.read_text().split())
            except OSError:
                pass
        return out

    def stat(self) -> dict[str, Any]:
        """cpu.stat (periods, throttling) and total CPU usage, normalised across versions."""
        out: dict[str, Any] = {}
        cpu_dir = self.dirs.get("cpu") or self.dirs.get("unified")
        if cpu_dir is not None:
            try:
                for line in (cpu_dir / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    out[key] = int(value)
            except OSError:
                pass
        if "throttled_time" in out:  # v1: ns
            out["throttled_ms"] = out["throttled_time"] / 1e6
        elif "throttled_usec" in out:  # v2: us
            out["throttled_ms"] = out["throttled_usec"] / 1e3
        out.update(self.io_stat())
        if "usage_usec" in out:
            out["cpu_usage_ms"] = out["usage_usec"] / 1e3
        elif "cpuacct" in self.dirs:
            try:
                out["cpu_usage_ms"] = int(_read(self.dirs["cpuacct"] / "cpuacct.usage")) / 1e6
            except OSError:
                pass
        return out

    def throttle_io(self) -> None:
        """Set the read limits of ``io_limits`` on the group (raises CgroupError). A session
        sets them once its worker is ready, so that only its rounds read through them."""
        io = self.io_limits
        if io is None:
            return
        if self.version == 1:
            if io.read_bps:
                _write(self.dirs["blkio"] / "blkio.throttle.read_bps_device", f"{io.device} {io.read_bps}")
            if io.read_iops:
                _write(self.dirs["blkio"] / "blkio.throttle.read_iops_device", f"{io.device} {io.read_iops}")
            return
        parts = [io.device]
        if io.read_bps:
            parts.append(f"rbps={io.read_bps}")
        if io.read_iops:
            parts.append(f"riops={io.read_iops}")
        _write(self.dirs["unified"] / "io.max", " ".join(parts))

    def io_stat(self) -> dict[str, int]:
        """Bytes and reads that reached the throttled device (only when limits were set)."""
        if self.io_limits is None:
            return {}
        dev = self.io_limits.device
        out: dict[str, int] = {}
        try:
            if "blkio" in self.dirs:
                for name, key in (("blkio.throttle.io_service_bytes", "io_read_bytes"),
                                  ("blkio.throttle.io_serviced", "io_reads")):
                    for line in (self.dirs["blkio"] / name).read_text().splitlines():
                        parts = line.split()
                        if len(parts) == 3 and parts[0] == dev and parts[1] == "Read":
                            out[key] = int(parts[2])
            elif "unified" in self.dirs:
                for line in (self.dirs["unified"] / "io.stat").read_text().splitlines():
                    parts = line.split()
                    if parts and parts[0] == dev:
                        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
                        out["io_read_bytes"] = int(fields.get("rbytes", 0))
                        out["io_reads"] = int(fields.get("rios", 0))
        except (OSError, ValueError):
            pass
        return out

    # -- freezing (pause/resume of a session) ------------------------------------------------
    def freeze(self, timeout_s: float = 10.0) -> None:
        """Stop every task in the group (v1 freezer / v2 cgroup.freeze) and wait until the
        kernel says it is frozen: a paused session costs the host no CPU."""
        self._set_frozen(True, timeout_s)

    def thaw(self, timeout_s: float = 10.0) -> None:
        self._set_frozen(False, timeout_s)

    def _set_frozen(self, frozen: bool, timeout_s: float) -> None:
        if self.version == 2:
            d = self.dirs["unified"]
            _write(d / "cgroup.freeze", "1" if frozen else "0")
            done = lambda: f"frozen {1 if frozen else 0}" in (d / "cgroup.events").read_text()  # noqa: E731
        else:
            d = self.dirs.get("freezer")
            if d is None:
                raise CgroupError("this cgroup has no freezer controller: cannot pause it")
            _write(d / "freezer.state", "FROZEN" if frozen else "THAWED")
            done = lambda: _read(d / "freezer.state") == ("FROZEN" if frozen else "THAWED")  # noqa: E731
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise CgroupError(f"{d} did not {'freeze' if frozen else 'thaw'} within {timeout_s:g} s")
            time.sleep(0.005)

    def kill_all(self) -> None:
        """SIGKILL every task; a frozen group is thawed so its tasks can die."""
        if self.version == 2 and (self.dirs["unified"] / "cgroup.kill").exists():
            try:
                (self.dirs["unified"] / "cgroup.kill").write_text("1")
                return
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        from .ledger import thaw

        for d in dict.fromkeys(self.dirs.values()):
            thaw(d)

    def remove(self, timeout_s: float = 10.0) -> None:
        """Kill what is left inside and remove the directories. Idempotent."""
        if self.removed:
            return
        deadline = time.monotonic() + timeout_s
        for d in dict.fromkeys(self.dirs.values()):
            while d.exists():
                self.kill_all()
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove cgroup {d}: processes still inside")
                    time.sleep(0.05)
        self.removed = True


def stat_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What a round added to a cgroup's counters (cpu.stat, CPU usage, I/O)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, (int, float)) and isinstance(before.get(key), (int, float)):
            out[key] = value - before[key]
    return out


class CgroupManager:
    """Creates and finds deploybench's cgroups under ``root``."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = Path(root)
        self.version = detect_version(self.root)

    def _v1_dir(self, controller: str) -> Path:
        return self.root / controller

    def planned_dirs(self, name: str, io_limits: IoLimits | None = None) -> list[str]:
        """The directories ``create(name=name)`` will make (for the ledger, before it does)."""
        if self.version == 2:
            return [str(self.root / name)]
        controllers = ["cpuset", "cpu", "cpuacct", "freezer"] + (["blkio"] if io_limits else [])
        return [str(self._v1_dir(c) / name) for c in controllers if self._v1_dir(c).is_dir()]

    def create(self, limits: CpuLimits, name: str | None = None,
               io_limits: IoLimits | None = None) -> RunCgroup:
        if self.version is None:
            raise CgroupError(f"no usable cgroup hierarchy under {self.root}")
        name = name or f"{PREFIX}{uuid.uuid4().hex[:12]}"
        dirs: dict[str, Path] = {}
        cg = RunCgroup(self.version, dirs, limits, io_limits=io_limits)
        try:
            if self.version == 1:
                self._create_v1(name, limits, dirs)
            else:
                self._create_v2(name, limits, dirs)
            if io_limits is not None:
                self._prepare_io(name, dirs)
        except BaseException:
            cg.remove()
            raise
        return cg

    def _create_v1(self, name: str, limits: CpuLimits, dirs: dict[str, Path]) -> None:
        cpuset = self._v1_dir("cpuset") / name
        cpuset.mkdir()
        dirs["cpuset"] = cpuset
        mems = _read(self._v1_dir("cpuset") / "cpuset.mems")
        _write(cpuset / "cpuset.cpus", format_cpu_list(limits.cpus))  # both before any task
        _write(cpuset / "cpuset.mems", mems)
        cpu = self._v1_dir("cpu") / name
        if cpu.resolve() != cpuset.resolve():
            cpu.mkdir(exist_ok=True)
        dirs["cpu"] = cpu
        _write(cpu / "cpu.cfs_period_us", str(limits.period_us))
        quota = -1 if limits.quota_cores is None else round(limits.quota_cores * limits.period_us)
        _write(cpu / "cpu.cfs_quota_us", str(quota))
        freezer_root = self._v1_dir("freezer")
        if freezer_root.is_dir():
            freezer = freezer_root / name
            freezer.mkdir(exist_ok=True)
            dirs["freezer"] = freezer
        acct_root = self._v1_dir("cpuacct")
        if acct_root.is_dir() and acct_root.resolve() != self._v1_dir("cpu").resolve():
            acct = acct_root / name
            acct.mkdir(exist_ok=True)
            dirs["cpuacct"] = acct

    def _create_v2(self, name: str, limits: CpuLimits, dirs: dict[str, Path]) -> None:
        enabled = (self.root / "cgroup.subtree_control").read_text().split()
        wanted = [c for c in ("cpu", "cpuset") if c not in enabled]
        if wanted:
            _write(self.root / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        d = self.root / name
        d.mkdir()
        dirs["unified"] = d
        _write(d / "cpuset.cpus", format_cpu_list(limits.cpus))
        quota = "max" if limits.quota_cores is None else str(round(limits.quota_cores * limits.period_us))
        _write(d / "cpu.max", f"{quota} {limits.period_us}")

    def _prepare_io(self, name: str, dirs: dict[str, Path]) -> None:
        """The I/O controller's group (v1: a blkio directory; v2: the io controller enabled),
        without limits yet: :meth:`RunCgroup.throttle_io` sets them."""
        if self.version == 1:
            blkio_root = self._v1_dir("blkio")
            if not blkio_root.is_dir():
                raise CgroupError(f"storage=throttled needs the blkio controller: {blkio_root} is missing")
            d = blkio_root / name
            d.mkdir(exist_ok=True)
            dirs["blkio"] = d
            return
        enabled = (self.root / "cgroup.subtree_control").read_text().split()
        if "io" not in enabled:
            _write(self.root / "cgroup.subtree_control", "+io")

    def leftovers(self) -> list[Path]:
        """deploybench cgroups that still exist (there should be none between runs)."""
        if self.version is None:
            return []
        parents = [self.root] if self.version == 2 else [self._v1_dir(c) for c in ("cpu", "cpuset", "cpuacct", "blkio", "freezer")]
        out: list[Path] = []
        for parent in parents:
            if parent.is_dir():
                out += sorted(p for p in parent.iterdir()
                              if p.is_dir() and p.name.startswith(PREFIX))
        return out


# -- choosing cores ------------------------------------------------------------------------
def cpu_topology(cpus: list[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> dict[int, tuple[int, int]]:
    """cpu -> (package id, core id); unknown topology maps each cpu to its own core."""
    topo = {}
    for cpu in cpus:
        base = sysfs / f"cpu{cpu}" / "topology"
        try:
            topo[cpu] = (int(_read(base / "physical_package_id")), int(_read(base / "core_id")))
        except (OSError, ValueError):
            topo[cpu] = (0, cpu)
    return topo


def choose_pinned_cpus(n: int, cpus: list[int], topology: dict[int, tuple[int, int]]) -> list[int]:
    """Pick ``n`` cores for a pinned run: distinct physical cores first (no SMT siblings),
    inside as few packages (sockets) as possible, lowest numbers first.

    The paper's 64-core outliers come from spanning sockets; a pinned run that fits in one
    socket should stay in it, and two threads of one run should not share a physical core
    while a free one exists.
    """
    if n > len(cpus):
        raise CgroupError(f"asked to pin {n} cores but only {len(cpus)} are usable")
    by_package: dict[int, list[int]] = {}
    for cpu in sorted(cpus):
        by_package.setdefault(topology[cpu][0], []).append(cpu)
    # Packages with the most CPUs first so the run spans as few as possible.
    packages = sorted(by_package, key=lambda p: (-len(by_package[p]), p))
    chosen: list[int] = []
    for package in packages:
        members = by_package[package]
        seen_cores: set[int] = set()
        first_threads, siblings = [], []
        for cpu in members:
            core = topology[cpu][1]
            (siblings if core in seen_cores else first_threads).append(cpu)
            seen_cores.add(core)
        for cpu in first_threads + siblings:
            if len(chosen) == n:
                break
            chosen.append(cpu)
        if len(chosen) == n:
            break
    return sorted(chosen)


def limits_for(cores: int, pinned: bool, cpus: list[int] | None = None) -> CpuLimits:
    """The cgroup limits of a scenario: PIN = cpuset of ``cores`` chosen cores, VNL = quota of
    ``cores`` over all usable cores. ``cpus`` overrides the pinned choice."""
    usable = usable_cpus()
    if pinned:
        if cpus:
            bad = sorted(set(cpus) - set(usable))
            if bad:
                raise CgroupError(f"cannot pin to CPUs {format_cpu_list(bad)}: usable are {format_cpu_list(usable)}")
            if len(cpus) != cores:
                raise CgroupError(f"--cpus names {len(cpus)} CPUs for a {cores}-core scenario")
            chosen = sorted(cpus)
        else:
            chosen = choose_pinned_cpus(cores, usable, cpu_topology(usable))
        return CpuLimits(cpus=chosen, quota_cores=None)
    return CpuLimits(cpus=usable, quota_cores=float(cores))
