"""What each platform costs beyond the model: memory, CPU taken outside the worker, start
and boot time, and energy where the host has it.

Recorded with every round, from the host side (``platforms/session.py`` samples the
processes a session launched: ``/proc`` through ``platforms/procfs.py``), as
``record.platform["footprint"]`` (a :class:`RoundFootprint`, ``"schema": 1``):

- **the worker's peak RSS**: ``VmHWM`` of the worker process on BM and CN; inside a guest
  the host cannot see the worker, which reports its own peak (``getrusage``);
- **guests** (VM, MVM, VMCN): QEMU's resident memory, the guest's own use of its RAM from its
  ``/proc/meminfo`` (sent back in the worker's result environment), split into the guest
  kernel (slab, stacks, page tables, and the RAM the kernel keeps for itself: memory map,
  image, reservations), the guest page cache (``Buffers + Cached``) and the part of that
  cache the worker does not map (the pages a VM holds *in addition* to what a process
  on bare metal holds: a second copy of every file read, over the host's own cache), and
  the VMM's overhead: QEMU's RSS beyond the guest RAM in use (an upper bound: guest pages
  freed since they were touched stay resident in QEMU too);
- **containers**: the per-container processes beside the worker (conmon, the containerd
  shim, the engine's attach client) and, apart, the daemons every container shares
  (dockerd, containerd); runc and crun leave no process behind;
- **CPU outside the worker** during the round: QEMU's threads other than its vCPU threads
  (main loop, virtio and 9p I/O: the VMM's work), the shim, the attach client, dockerd
  and containerd; and the worker's own CPU as the host sees it (the vCPU threads, for a
  guest);
- launch and boot latency are in the launch's facts already (``start_latency_s``,
  ``boot_userspace_s``, ``create_s``/``start_s``), and energy in ``record.platform["energy"]``
  (``energy.py``).

:func:`costs` summarises a store's runs per scenario (``show --footprint``, the report's
"What each platform costs"); :func:`tie_break` is the one rule by which the recommendation
picks the cheapest of equivalent scenarios and the report orders them: fewer cores, then
less isolation, then less memory beyond the worker, then less CPU outside it, then a faster
start, where a footprint difference counts only beyond what one deployment's own launches
differ by (``TIE_RESOLUTION``).

This module reads no /proc itself and imports nothing heavy: platforms build its values.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:  # annotations only
    from .store import RunRecord

FOOTPRINT_SCHEMA = 1
KIB_PER_MIB = 1024.0

#: roles of the processes a session launched (FootprintPart.role)
WORKER, VMM, SHIM, CLIENT, ENGINE = "worker", "vmm", "shim", "engine client", "engine"


@dataclass(frozen=True)
class FootprintPart:
    """One host process a session's footprint is made of."""

    role: str  # worker | vmm | shim | engine client | engine
    pid: int
    name: str = ""  # what it is, e.g. "conmon", "dockerd", "qemu-system-x86_64"
    shared: bool = False  # a daemon serving every container (dockerd, containerd)
    vcpu_threads: tuple[int, ...] = ()  # vmm: the guest's vCPU threads (its own CPU time)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "pid": self.pid, "name": self.name, "shared": self.shared,
                "vcpu_threads": list(self.vcpu_threads)}


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of one part: the whole process, and its vCPU threads (a VMM's)."""

    process_s: float | None
    vcpu_s: float | None = None


@dataclass(frozen=True)
class MemorySample:
    rss_kb: int
    peak_rss_kb: int


@dataclass(frozen=True)
class GuestMemory:
    """A guest's own memory (kB), from its /proc/meminfo and its RAM size."""

    ram_kb: int  # what the VM was given
    total_kb: int  # MemTotal: RAM less what the kernel keeps for itself
    free_kb: int
    kernel_kb: int  # reserved at boot (ram - MemTotal) + slab + kernel stacks + page tables + per-CPU
    page_cache_kb: int  # Buffers + Cached (tmpfs and the overlay's upper layer included)
    page_cache_unmapped_kb: int  # of it, not mapped by any process: beyond the worker's RSS
    anon_kb: int  # processes' anonymous memory (the worker's, mostly)

    @property
    def in_use_kb(self) -> int:
        """Guest RAM not free: what QEMU must hold at least."""
        return self.ram_kb - self.free_kb

    @classmethod
    def from_meminfo(cls, meminfo: Mapping[str, int], ram_kb: int) -> "GuestMemory | None":
        needed = ("MemTotal", "MemFree", "Buffers", "Cached")
        if not ram_kb or any(k not in meminfo for k in needed):
            return None
        reserved = max(0, ram_kb - meminfo["MemTotal"])
        kernel = reserved + sum(meminfo.get(k, 0) for k in ("Slab", "KernelStack", "PageTables", "Percpu"))
        cache = meminfo["Buffers"] + meminfo["Cached"]
        return cls(ram_kb=ram_kb, total_kb=meminfo["MemTotal"], free_kb=meminfo["MemFree"],
                   kernel_kb=kernel, page_cache_kb=cache,
                   page_cache_unmapped_kb=max(0, cache - meminfo.get("Mapped", 0)),
                   anon_kb=meminfo.get("AnonPages", 0))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "in_use_kb": self.in_use_kb}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "GuestMemory":
        return cls(**{k: int(data[k]) for k in ("ram_kb", "total_kb", "free_kb", "kernel_kb",
                                                 "page_cache_kb", "page_cache_unmapped_kb", "anon_kb")})


@dataclass(frozen=True)
class RoundFootprint:
    """One round's footprint, from the host side (see the module docstring)."""

    worker_peak_rss_kb: int | None
    worker_rss_seen_from: str  # "host" (/proc of the worker) | "guest" (the worker's getrusage)
    memory_kb: int | None  # the scenario's own host memory: worker (+ runtime), or QEMU
    worker_cpu_s: float | None  # as the host sees it (a guest's: its vCPU threads)
    outside_cpu_s: float | None  # CPU used outside the worker during the round
    outside_cpu_s_by_role: dict[str, float] = field(default_factory=dict)
    runtime_rss_kb: dict[str, int] = field(default_factory=dict)  # per-container, beside the worker
    shared_rss_kb: dict[str, int] = field(default_factory=dict)  # daemons every container shares
    vmm_rss_kb: int | None = None
    vmm_peak_rss_kb: int | None = None
    guest: GuestMemory | None = None
    interval_s: float | None = None  # the round, as sampled
    parts: tuple[FootprintPart, ...] = ()

    @property
    def memory_beyond_worker_kb(self) -> int | None:
        if self.memory_kb is None or self.worker_peak_rss_kb is None:
            return None
        return self.memory_kb - self.worker_peak_rss_kb

    @property
    def vmm_overhead_kb(self) -> int | None:
        """QEMU's RSS beyond the guest RAM in use (an upper bound, see the module docstring)."""
        if self.vmm_rss_kb is None or self.guest is None:
            return None
        return self.vmm_rss_kb - self.guest.in_use_kb

    def to_json(self) -> dict[str, Any]:
        return {"schema": FOOTPRINT_SCHEMA,
                "worker_peak_rss_kb": self.worker_peak_rss_kb,
                "worker_rss_seen_from": self.worker_rss_seen_from,
                "memory_kb": self.memory_kb,
                "memory_beyond_worker_kb": self.memory_beyond_worker_kb,
                "worker_cpu_s": _round(self.worker_cpu_s),
                "outside_cpu_s": _round(self.outside_cpu_s),
                "outside_cpu_s_by_role": {k: _round(v) for k, v in self.outside_cpu_s_by_role.items()},
                "runtime_rss_kb": dict(self.runtime_rss_kb), "shared_rss_kb": dict(self.shared_rss_kb),
                "vmm_rss_kb": self.vmm_rss_kb, "vmm_peak_rss_kb": self.vmm_peak_rss_kb,
                "vmm_overhead_kb": self.vmm_overhead_kb,
                "guest": None if self.guest is None else self.guest.to_json(),
                "interval_s": _round(self.interval_s),
                "parts": [p.to_json() for p in self.parts]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RoundFootprint":
        if data.get("schema") != FOOTPRINT_SCHEMA:
            raise ValueError(f"footprint schema {data.get('schema')!r} is not {FOOTPRINT_SCHEMA}")
        guest = data.get("guest")
        return cls(
            worker_peak_rss_kb=data.get("worker_peak_rss_kb"),
            worker_rss_seen_from=str(data.get("worker_rss_seen_from") or "host"),
            memory_kb=data.get("memory_kb"), worker_cpu_s=data.get("worker_cpu_s"),
            outside_cpu_s=data.get("outside_cpu_s"),
            outside_cpu_s_by_role=dict(data.get("outside_cpu_s_by_role") or {}),
            runtime_rss_kb=dict(data.get("runtime_rss_kb") or {}),
            shared_rss_kb=dict(data.get("shared_rss_kb") or {}),
            vmm_rss_kb=data.get("vmm_rss_kb"), vmm_peak_rss_kb=data.get("vmm_peak_rss_kb"),
            guest=None if not guest else GuestMemory.from_json(guest),
            interval_s=data.get("interval_s"),
            parts=tuple(FootprintPart(p["role"], int(p["pid"]), p.get("name", ""), bool(p.get("shared")),
                                      tuple(p.get("vcpu_threads") or ())) for p in data.get("parts") or ()))


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def assemble(parts: Sequence[FootprintPart], cpu_before: Mapping[int, CpuSample],
             cpu_after: Mapping[int, CpuSample], memory_after: Mapping[int, MemorySample],
             worker_environment: Mapping[str, Any] | None, *, ram_mib: int | None = None,
             interval_s: float | None = None) -> RoundFootprint:
    """A round's footprint from the samples taken before and after it (by pid) and the
    worker's result environment (its own peak RSS and, in a guest, the guest's meminfo)."""
    env = worker_environment or {}
    by_role: dict[str, float] = {}
    runtime: dict[str, int] = {}
    shared: dict[str, int] = {}
    worker_rss = None
    seen_from = "host"
    worker_cpu: float | None = None
    memory: int | None = None
    vmm_rss = vmm_peak = None
    outside_known = True

    def delta(pid: int, attr: str) -> float | None:
        a, b = cpu_before.get(pid), cpu_after.get(pid)
        if a is None or b is None or getattr(a, attr) is None or getattr(b, attr) is None:
            return None
        return max(0.0, getattr(b, attr) - getattr(a, attr))

    for part in parts:
        mem = memory_after.get(part.pid)
        if part.role == WORKER:
            worker_rss = mem.peak_rss_kb if mem is not None else None
            worker_cpu = delta(part.pid, "process_s")
            if mem is not None:  # at its peak: what the host must have for it
                memory = (memory or 0) + mem.peak_rss_kb
        elif part.role == VMM:
            total, vcpus = delta(part.pid, "process_s"), delta(part.pid, "vcpu_s")
            worker_cpu = vcpus
            if total is not None and vcpus is not None:
                by_role[f"{VMM} (non-vCPU threads)"] = max(0.0, total - vcpus)
            else:
                outside_known = False
            if mem is not None:
                vmm_rss, vmm_peak = mem.rss_kb, mem.peak_rss_kb
                memory = (memory or 0) + mem.rss_kb
        else:
            cpu = delta(part.pid, "process_s")
            label = f"{part.role} ({part.name})" if part.name else part.role
            if cpu is None:
                outside_known = False
            else:
                by_role[label] = by_role.get(label, 0.0) + cpu
            if mem is not None:
                if part.shared:
                    shared[label] = shared.get(label, 0) + mem.rss_kb
                else:
                    runtime[label] = runtime.get(label, 0) + mem.rss_kb
                    memory = (memory or 0) + mem.rss_kb
    guest = None
    if any(p.role == VMM for p in parts):
        seen_from = "guest"
        if env.get("max_rss_kb") is not None:
            worker_rss = int(env["max_rss_kb"])
        meminfo = env.get("system_meminfo_kb")
        if meminfo and ram_mib:
            guest = GuestMemory.from_meminfo(meminfo, int(ram_mib) * 1024)
    outside = sum(by_role.values()) if outside_known else None
    return RoundFootprint(worker_peak_rss_kb=worker_rss, worker_rss_seen_from=seen_from,
                          memory_kb=memory, worker_cpu_s=worker_cpu, outside_cpu_s=outside,
                          outside_cpu_s_by_role=by_role, runtime_rss_kb=runtime, shared_rss_kb=shared,
                          vmm_rss_kb=vmm_rss, vmm_peak_rss_kb=vmm_peak, guest=guest,
                          interval_s=interval_s, parts=tuple(parts))


def of_record(record: "RunRecord") -> RoundFootprint | None:
    """A stored round's footprint (None for runs recorded before footprints were)."""
    data = record.platform.get("footprint")
    if not data:
        return None
    try:
        return RoundFootprint.from_json(data)
    except (ValueError, KeyError, TypeError):
        return None


# -- per scenario ------------------------------------------------------------------------------
def _mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(vals) if vals else None


def _mib(kb: float | None) -> float | None:
    return None if kb is None else kb / KIB_PER_MIB


@dataclass(frozen=True)
class ScenarioCost:
    """What one scenario costs on one host and accelerator, from its successful rounds:
    means over the rounds that recorded a footprint (MiB, ms per request, seconds)."""

    scenario_key: str
    label: str
    name: str  # PLATFORM/CORES/MODE/PROC
    #: what else sets the row apart: host conditions, inference-only, a Server rate
    workload: str
    app: str
    platform: str
    cores: int
    host: str
    accel: str
    runs: int  # rounds with a footprint
    worker_peak_rss_mib: float | None
    memory_mib: float | None  # the scenario's own host memory (worker + runtime, or QEMU)
    memory_beyond_worker_mib: float | None
    guest_kernel_mib: float | None = None
    guest_page_cache_mib: float | None = None
    guest_page_cache_unmapped_mib: float | None = None
    vmm_overhead_mib: float | None = None
    runtime_mib: float | None = None  # per-container processes (shim, client)
    shared_mib: float | None = None  # shared daemons (dockerd, containerd)
    outside_cpu_ms_per_request: float | None = None
    worker_cpu_ms_per_request: float | None = None
    start_latency_s: float | None = None  # launch to a warm worker
    boot_s: float | None = None  # guests: launch to guest user space
    create_start_s: float | None = None  # containers: the runtime's create + start
    energy_j_per_request: float | None = None
    energy_method: str | None = None
    outside_roles: tuple[str, ...] = ()
    #: what launched a container (runc, crun, docker, podman): it changes the footprint, so
    #: runs through different launchers are never pooled here
    launcher: str = ""

    @property
    def emulated(self) -> bool:
        return self.accel == "tcg"

    @property
    def display(self) -> str:
        """The scenario's name with its launcher and what else sets it apart, e.g.
        ``CN/1/PIN/CPU (podman)``, ``BM/1/PIN/CPU cold,throttled``."""
        return self.name + (f" ({self.launcher})" if self.launcher else "") \
            + (f" {self.workload}" if self.workload else "")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["outside_roles"] = list(self.outside_roles)
        out["emulated"] = self.emulated
        out["display"] = self.display
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def _workload_tag(scenario: Any) -> str:
    parts = list(scenario.conditions)
    if scenario.inference_only:
        parts.append("inference-only")
    if scenario.target_qps is not None:
        parts.append(f"@{scenario.target_qps:g} qps")
    return ",".join(parts)


def scenario_cost(records: Sequence["RunRecord"]) -> ScenarioCost | None:
    """One scenario's cost from its runs (one scenario, host and accelerator: a cell)."""
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        return None
    first = ok[0]
    prints = [(r, fp) for r in ok if (fp := of_record(r)) is not None]
    requests = lambda r: len(r.samples.get("preprocess_ns") or []) or r.scenario.requests  # noqa: E731

    def per_request_ms(get: Any) -> float | None:
        return _mean([None if get(fp) is None else get(fp) * 1e3 / requests(r) for r, fp in prints])

    energies = [r.platform.get("energy") for r in ok if r.platform.get("energy")]
    roles = sorted({role for _, fp in prints for role in fp.outside_cpu_s_by_role})
    create_start = [(r.platform.get("create_s") or 0) + (r.platform.get("start_s") or 0)
                    for r in ok if r.platform.get("create_s") is not None]
    return ScenarioCost(
        scenario_key=first.scenario.key, label=first.scenario.label, name=first.scenario.name,
        workload=_workload_tag(first.scenario), app=first.scenario.app, platform=first.scenario.platform.value, cores=first.scenario.cores,
        host=str(first.host.get("host", "?")), accel=str(first.platform.get("accel", "native")),
        runs=len(prints),
        worker_peak_rss_mib=_mib(_mean([fp.worker_peak_rss_kb for _, fp in prints])),
        memory_mib=_mib(_mean([fp.memory_kb for _, fp in prints])),
        memory_beyond_worker_mib=_mib(_mean([fp.memory_beyond_worker_kb for _, fp in prints])),
        guest_kernel_mib=_mib(_mean([fp.guest.kernel_kb if fp.guest else None for _, fp in prints])),
        guest_page_cache_mib=_mib(_mean([fp.guest.page_cache_kb if fp.guest else None for _, fp in prints])),
        guest_page_cache_unmapped_mib=_mib(_mean([fp.guest.page_cache_unmapped_kb if fp.guest else None
                                                  for _, fp in prints])),
        vmm_overhead_mib=_mib(_mean([fp.vmm_overhead_kb for _, fp in prints])),
        runtime_mib=_mib(_mean([sum(fp.runtime_rss_kb.values()) for _, fp in prints])) if prints else None,
        shared_mib=_mib(_mean([sum(fp.shared_rss_kb.values()) if fp.shared_rss_kb else None
                               for _, fp in prints])),
        outside_cpu_ms_per_request=per_request_ms(lambda fp: fp.outside_cpu_s),
        worker_cpu_ms_per_request=per_request_ms(lambda fp: fp.worker_cpu_s),
        start_latency_s=_mean([r.platform.get("start_latency_s") for r in ok
                               if r.launch_round in (None, 1) and alone(r)]
                              or [r.platform.get("start_latency_s") for r in ok if alone(r)]),
        boot_s=_mean([r.platform.get("boot_userspace_s") for r in ok]),
        create_start_s=_mean(create_start) if create_start else None,
        energy_j_per_request=_mean([e.get("joules_per_request") for e in energies]),
        energy_method=energies[0].get("method") if energies else None,
        outside_roles=tuple(roles), launcher=launcher_of(first))


def launched_with(launch: Mapping[str, Any]) -> int:
    """How many sessions started together with this launch (its stored facts), itself
    included; 1 for a launch alone and for launches stored before waves."""
    return max(1, int(launch.get("launched_with") or 1))


def launch_cost_s(start_latency_s: float, launch: Mapping[str, Any]) -> float:
    """What one more launch costs: a wave of n sessions that loaded together, 1/n of its time each."""
    return float(start_latency_s) / launched_with(launch)


def alone(record: "RunRecord") -> bool:
    """Whether the record's launch started by itself: only such a launch's start latency is
    the platform's own, not shared with sessions loading beside it."""
    return launched_with(record.platform) == 1


def launcher_of(record: "RunRecord") -> str:
    """What launched a container round: the engine, else the OCI runtime ('' for BM and VMs)."""
    facts = record.platform
    if record.scenario.platform.value == "CN":
        return str(facts.get("engine") or facts.get("runtime") or "")
    if record.scenario.platform.value == "VMCN":
        return str(facts.get("container_runtime") or "")
    return ""


def costs(records: Sequence["RunRecord"]) -> list[ScenarioCost]:
    """Every scenario's cost (one per scenario, host and accelerator, as ``show`` groups
    them), in the order of the paper's platforms."""
    from .store import group_by_scenario

    order = {"BM": 0, "CN": 1, "VM": 2, "MVM": 3, "VMCN": 4}
    out = []
    for group in group_by_scenario(records).values():
        by_launcher: dict[str, list["RunRecord"]] = {}
        for record in group:
            by_launcher.setdefault(launcher_of(record), []).append(record)
        out += [c for part in by_launcher.values() if (c := scenario_cost(part)) is not None]
    return sorted(out, key=lambda c: (c.app, c.accel == "tcg", order.get(c.platform, 9), c.cores, c.label,
                                      c.launcher))


#: platforms by the isolation they add, the least first: the tie-break's second level
ISOLATION_ORDER = ("BM", "CN", "MVM", "VM", "VMCN")
#: a footprint item separates two equivalent deployments only when they differ by more than
#: this share of the smaller value and the item's floor (``TIE_BREAK_LEVELS``): less than
#: that, two launches of one deployment differ as much (start latency: a few % between
#: launches, BM/1/PIN against BM/1/VNL 0.96 against 0.97 s in the demo)
TIE_RESOLUTION = 0.10


@dataclass(frozen=True)
class TieLevel:
    """One level of the tie-break: a cost, the smallest difference that counts, and its words."""
    name: str
    value: Callable[["ScenarioCost"], float | None]  # None: not recorded
    floor: float  # the smallest difference that counts
    relative: bool  # measured (noise: the difference must also exceed TIE_RESOLUTION) or exact
    says: Callable[[float], str]
    #: (costlier, cheaper) -> words; by default "<costlier> against <cheaper>"
    pair: Callable[[float, float], str] | None = None

    def differ(self, costlier: float, cheaper: float) -> str:
        return self.pair(costlier, cheaper) if self.pair else \
            f"{self.says(costlier)} against {self.says(cheaper)}"

    def separates(self, costlier: float, cheaper: float) -> bool:
        limit = max(self.floor, TIE_RESOLUTION * abs(cheaper)) if self.relative else self.floor
        return costlier - cheaper > limit


def _platform_of(rank: float) -> str:
    return ISOLATION_ORDER[int(rank)] if rank < len(ISOLATION_ORDER) else "another platform"


def _isolation(cost: "ScenarioCost") -> float:
    return float(ISOLATION_ORDER.index(cost.platform)) if cost.platform in ISOLATION_ORDER \
        else float(len(ISOLATION_ORDER))


TIE_BREAK_LEVELS = (
    TieLevel("cores", lambda c: float(c.cores), 0.5, False,
             lambda v: f"{v:.0f} core{'s' if v != 1 else ''}"),
    TieLevel("isolation", _isolation, 0.5, False, _platform_of,
             lambda a, b: f"{_platform_of(a)} isolates more than {_platform_of(b)}"),
    TieLevel("memory beyond the worker", lambda c: c.memory_beyond_worker_mib, 1.0, True,
             lambda v: f"{v:.0f} MiB beyond the worker"),
    TieLevel("CPU outside the worker", lambda c: c.outside_cpu_ms_per_request, 0.1, True,
             lambda v: f"{v:.1f} ms CPU outside the worker per request"),
    TieLevel("start latency", lambda c: c.start_latency_s, 0.05, True, lambda v: f"a start in {v:.2f} s"),
)


def tie_break(costs: Sequence["ScenarioCost"]) -> tuple[list[int], dict[int, str]]:
    """The cheapest of equivalent deployments, level by level (``TIE_BREAK_LEVELS``): at each
    level an option drops out when it costs more than the cheapest left beyond the level's
    resolution, and one without the item recorded (runs from before footprints) drops out
    when another has it. Returns the indices of the options left (the same cost within the
    resolution: the caller picks the fastest of them) and, per dropped index, why in words."""
    left = list(range(len(costs)))
    dropped: dict[int, str] = {}
    for level in TIE_BREAK_LEVELS:
        values = {i: level.value(costs[i]) for i in left}
        known = {i: v for i, v in values.items() if v is not None}
        if not known:
            continue
        cheapest = min(known.values())
        for i in left:
            v = values[i]
            if v is None:
                dropped[i] = f"no {level.name} recorded, against {level.says(cheapest)}"
            elif level.separates(v, cheapest):
                dropped[i] = level.differ(v, cheapest)
        left = [i for i in left if i not in dropped]
    return left, dropped


def cost_order(costs: Sequence["ScenarioCost"]) -> list[list[int]]:
    """All options cheapest first, as groups of the same cost within the resolution
    (``tie_break`` applied to what is left, again and again)."""
    remaining = list(range(len(costs)))
    groups: list[list[int]] = []
    while remaining:
        keep, _ = tie_break([costs[i] for i in remaining])
        group = [remaining[k] for k in keep]
        groups.append(group)
        remaining = [i for i in remaining if i not in group]
    return groups
