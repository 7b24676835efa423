"""Host conditions around a run (the paper's Fig. 9 and Section V-E/F), applied by the sweep.

- ``host_load = busy``: CPU-bound neighbour processes on the cores *not* given to the
  scenario, started just before the run and killed just after it.
  PIN: one neighbour pinned to each usable core outside the scenario's cpuset.
  VNL: ``host cores - N`` neighbours that float over all cores like the scenario does, so
  the CPU demand equals the host's capacity and no core is idle (the paper's "32-core
  platform on a 32-core host"). With N = host cores there is nothing to load: recorded.
  Neighbours also exit by themselves when the sweep dies (they watch their parent), so a
  crash or SIGKILL does not leave them spinning.
- ``page_cache = cold``: ``sync`` then ``echo 3 > /proc/sys/vm/drop_caches`` before each
  round; when that is not permitted the round still happens and the failure is recorded
  (with a CONDITION_UNMET warning). The worker is warm, so its software stays mapped in
  memory and "cold" means cold *data*.
- ``storage = throttled``: read bps/iops limits on the block device that holds the data set,
  applied by the platform to the run's cgroup (``PlatformOptions.io_limits``); this module
  finds the device.
- During every round the CPU the host used outside the measured session is metered
  (:class:`HostMeter`); a busy host gets a HOST_BUSY warning.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from .platforms.cpu import IoLimits
from .scenario import CpuMode, HostLoad, PageCache, Scenario, Storage
from .warnings import WarningCode, warning

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
PROC_STAT = Path("/proc/stat")
SYS_DEV_BLOCK = Path("/sys/dev/block")

#: A neighbour: spin in chunks, stop as soon as its parent (the sweep, whose pid it is given:
#: it may already be gone when the neighbour starts) is no longer its parent.
SPINNER = ("import os, sys\np = int(sys.argv[1])\nwhile os.getppid() == p:\n"
           "    for _ in range(200000):\n        pass\n")


# -- host busy probe -------------------------------------------------------------------------
def _cpu_times(path: Path = PROC_STAT) -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs from the first line of /proc/stat."""
    fields = [int(v) for v in path.read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])


# -- page cache ------------------------------------------------------------------------------
def drop_page_cache(path: Path = DROP_CACHES) -> tuple[bool, str | None]:
    """``sync; echo 3 > drop_caches``. Returns (dropped, why not)."""
    try:
        os.sync()
        with open(path, "w") as f:
            f.write("3")
    except OSError as exc:
        return False, f"cannot drop the page cache ({path}: {exc.strerror or exc}): run as root"
    return True, None


# -- the data device -------------------------------------------------------------------------
def data_device(path: Path, sys_dev_block: Path = SYS_DEV_BLOCK) -> tuple[str | None, str, str | None]:
    """The whole disk holding ``path``: ("MAJ:MIN", name, None) or (None, "", why not)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.stat(probe)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    node = sys_dev_block / f"{major}:{minor}"
    if major == 0 or not node.exists():
        return None, "", (f"{probe} is not on a block device (device {major}:{minor}, e.g. tmpfs "
                          "or overlay): cannot throttle its storage")
    real = node.resolve()
    if (real / "partition").exists():  # throttle rules apply to whole disks
        real = real.parent
    try:
        dev = (real / "dev").read_text().strip()
    except OSError:
        dev = f"{major}:{minor}"
    return dev, real.name, None


def io_limits_for(path: Path, read_bps: int | None, read_iops: int | None,
                  device: str = "auto") -> tuple[IoLimits | None, str | None]:
    """The limits for the device holding ``path`` (or an explicit ``MAJ:MIN``/``/dev/X``)."""
    if device == "auto":
        dev, name, problem = data_device(path)
        if dev is None:
            return None, problem
    elif device.startswith("/dev/"):
        try:
            rdev = os.stat(device).st_rdev
        except OSError as exc:
            return None, f"storage device {device}: {exc.strerror}"
        dev, name = f"{os.major(rdev)}:{os.minor(rdev)}", Path(device).name
    else:
        dev, name = device, device
    return IoLimits(device=dev, read_bps=read_bps, read_iops=read_iops, device_name=name), None


# -- neighbours ------------------------------------------------------------------------------
def neighbour_plan(scenario: Scenario, usable: Sequence[int],
                   scenario_cpus: Sequence[int] | None) -> tuple[int, list[int] | None]:
    """How many neighbours, and the core each is pinned to (None = floating)."""
    if scenario.cpu_mode is CpuMode.PIN and scenario_cpus is not None:
        others = [c for c in usable if c not in set(scenario_cpus)]
        return len(others), others
    return max(0, len(usable) - scenario.cores), None


class Neighbours:
    """CPU-bound processes next to a run. Always stopped, also on errors and Ctrl-C."""

    def __init__(self, count: int, cpus: list[int] | None = None) -> None:
        self.count = count
        self.cpus = cpus
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        for i in range(self.count):
            cpu = self.cpus[i] if self.cpus else None

            def pin(cpu: int | None = cpu) -> None:
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})

            self.procs.append(subprocess.Popen(
                [sys.executable, "-S", "-c", SPINNER, str(os.getpid())], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin,
                start_new_session=True))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        self.procs = []

    def __enter__(self) -> "Neighbours":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class HostMeter:
    """How busy the host was *outside* the measured session during a round: the host's CPU
    time over the round (/proc/stat) minus what the session's own cgroup used. Free (no
    sampling pause before the round), and it sees a neighbour that starts mid-round."""

    def __init__(self, path: Path = PROC_STAT) -> None:
        self.path = path
        self.start: tuple[int, int] | None = None
        self.started = 0.0

    def __enter__(self) -> "HostMeter":
        try:
            self.start = _cpu_times(self.path)
        except (OSError, ValueError, IndexError):
            self.start = None
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def other_share(self, session_cpu_ms: float | None, cpus: int) -> float | None:
        """Share of the host's capacity used by others during the round (None if unknown)."""
        if self.start is None or session_cpu_ms is None or cpus < 1:
            return None
        try:
            idle1, total1 = _cpu_times(self.path)
        except (OSError, ValueError, IndexError):
            return None
        idle0, total0 = self.start
        ticks = os.sysconf("SC_CLK_TCK")
        busy_ms = ((total1 - total0) - (idle1 - idle0)) * 1000 / ticks
        capacity_ms = (time.monotonic() - self.started) * 1000 * cpus
        if capacity_ms <= 0:
            return None
        return max(0.0, min(1.0, (busy_ms - session_cpu_ms) / capacity_ms))


def busy_warning(share: float | None, threshold: float) -> list[dict[str, str]]:
    if share is None or share <= threshold:
        return []
    return [warning(WarningCode.HOST_BUSY,
                    f"other processes used {share:.0%} of the host's CPUs during the round")]


@contextlib.contextmanager
def applied(scenario: Scenario, *, usable: Sequence[int], scenario_cpus: Sequence[int] | None,
            io_limits: IoLimits | None = None,
            drop_caches_path: Path = DROP_CACHES) -> Iterator[tuple[dict[str, Any], list[dict[str, str]]]]:
    """Apply the scenario's host conditions around the ``with`` body (one round).

    Yields ``(facts, warnings)``: what was done (recorded with the run as
    ``host["conditions"]``) and typed warnings. The order is: drop caches, start
    neighbours, run, stop neighbours. The session's worker is warm, so a dropped page cache
    makes its *data* cold: its software stays mapped in memory (the kernel does not drop
    pages a process has mapped).
    """
    facts: dict[str, Any] = {"host_load": scenario.host_load.value,
                             "page_cache": scenario.page_cache.value,
                             "storage": scenario.storage.value}
    warnings: list[dict[str, str]] = []
    if io_limits is not None:
        facts["io_limits"] = io_limits.to_json()
    if scenario.page_cache is PageCache.COLD:
        dropped, why = drop_page_cache(drop_caches_path)
        facts["caches_dropped"] = dropped
        if not dropped:
            facts["caches_error"] = why
            warnings.append(warning(WarningCode.CONDITION_UNMET, f"page_cache=cold: {why}"))
    count, cpus = (0, None)
    if scenario.host_load is HostLoad.BUSY:
        count, cpus = neighbour_plan(scenario, usable, scenario_cpus)
        facts["neighbours"] = count
        facts["neighbour_cpus"] = cpus if cpus is not None else "floating"
        if count == 0:
            warnings.append(warning(
                WarningCode.CONDITION_UNMET,
                f"host_load=busy: the scenario has all {len(usable)} cores, none left to load"))
    with Neighbours(count, cpus) as neighbours:
        facts["neighbour_pids"] = neighbours.pids
        yield facts, warnings


def needs_io_evidence(scenario: Scenario) -> bool:
    """A condition whose effect is proven from the disk reads of the timed requests."""
    return scenario.page_cache is PageCache.COLD or scenario.storage is not Storage.NATIVE


#: a throttled disk that held the timed requests back makes each of them wait at least
#: this long reading its input (a page-cache hit takes a few microseconds)
MIN_THROTTLED_READ_MS = 0.5


def evidence_warnings(scenario: Scenario, environment: dict[str, Any],
                      platform_facts: dict[str, Any]) -> list[dict[str, str]]:
    """CONDITION_INEFFECTIVE when a round's own counters show its host condition never
    reached the timed requests: a cold page cache or a throttled disk that the requests
    never read from (``io_read_bytes``, from the worker's /proc/self/io), or a throttled
    disk their input reads never waited on (``input_read_ms``, the time the app spent in
    ``read_input``, when it reads its inputs with it). Both are counted over the round's
    LoadGen test only."""
    if not needs_io_evidence(scenario) or not environment:
        return []
    wants = [w for w, on in (("page_cache=cold", scenario.page_cache is PageCache.COLD),
                             ("storage=throttled", scenario.storage is not Storage.NATIVE)) if on]
    read = environment.get("io_read_bytes")
    if read == 0:
        return [warning(WarningCode.CONDITION_INEFFECTIVE,
                        f"{' and '.join(wants)}: the timed requests read nothing from the disk "
                        "(their data came from the page cache)")]
    reads, read_ms = environment.get("input_reads") or 0, environment.get("input_read_ms")
    if scenario.storage is not Storage.NATIVE and reads and read_ms is not None:
        per_read = read_ms / reads
        if per_read < MIN_THROTTLED_READ_MS:
            return [warning(WarningCode.CONDITION_INEFFECTIVE,
                            f"storage=throttled: the timed requests read their inputs in {per_read:.2f} ms "
                            f"each: the throttle never held them back")]
    return []
