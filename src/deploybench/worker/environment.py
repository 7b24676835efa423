"""What the worker actually got, seen from inside the platform: affinity, cgroup limits,
thread pools, scheduler counters, and the metadata of the software stack."""
from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def set_thread_env(threads: int) -> None:
    """Size every native thread pool to the CPU budget, before any of them is imported.

    OMP_WAIT_POLICY=PASSIVE: spinning OpenMP workers on a shared host steal the cores the
    other phases need (measured 15x slowdowns on a 2-core host).
    """
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _parse_cpu_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        elif part.strip():
            cpus.add(int(part))
    return sorted(cpus)


def _cgroup_dirs(controller: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """Candidate directories of this process's cgroup for ``controller`` (v1 or v2).

    In a container with its own cgroup namespace the path reads ``/`` and the container's
    cgroup is mounted at the root, so the root is always a fallback.
    """
    text = _read(Path("/proc/self/cgroup")) or ""
    dirs: list[Path] = []
    for line in text.splitlines():
        hid, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if hid == "0" and controllers == "":  # v2 unified
            for base in (cgroup_root, cgroup_root / "unified"):
                dirs.append(base / rel)
        elif controller in controllers.split(","):
            base = cgroup_root / controllers
            dirs += [base / rel, base]
    return dirs


def cgroup_limits() -> dict[str, Any]:
    """The CPU quota (in cores) and cpuset this process's cgroup imposes, where visible."""
    quota_cores: float | None = None
    source = None
    for d in _cgroup_dirs("cpu"):
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            q = int(quota)
            quota_cores = None if q < 0 else q / int(period)
            source = str(d)
            break
        cpu_max = _read(d / "cpu.max")
        if cpu_max is not None:
            q_s, p_s = cpu_max.split()
            quota_cores = None if q_s == "max" else int(q_s) / int(p_s)
            source = str(d)
            break
    cpuset = None
    for d in _cgroup_dirs("cpuset"):
        text = _read(d / "cpuset.cpus.effective") or _read(d / "cpuset.cpus")
        if text:
            cpuset = _parse_cpu_list(text)
            break
    return {"cpu_quota_cores": quota_cores, "cpu_quota_source": source, "cpuset": cpuset}


def _task_stats() -> tuple[int, bool]:
    """Migrations summed over this process's threads, and whether they could be read."""
    migrations = 0
    seen = False
    for task in Path("/proc/self/task").iterdir():
        text = _read(task / "sched")
        if text:
            for line in text.splitlines():
                if line.startswith("se.nr_migrations"):
                    migrations += int(line.split(":")[1])
                    seen = True
    return migrations, seen


def _proc_io() -> dict[str, int]:
    """/proc/self/io: read_bytes are the bytes this process made the storage layer fetch
    (page-cache hits do not count), rchar what it read through read() and friends."""
    out: dict[str, int] = {}
    for line in (_read(Path("/proc/self/io")) or "").splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key.strip()] = int(value)
    return out


def round_counters() -> dict[str, Any]:
    """Counters read just before and just after a round's timed requests."""
    migrations, seen = _task_stats()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"migrations": migrations if seen else None,
            "voluntary": usage.ru_nvcsw, "involuntary": usage.ru_nivcsw,
            "user_s": usage.ru_utime, "system_s": usage.ru_stime, "max_rss_kb": usage.ru_maxrss,
            "io": _proc_io()}


def counter_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the round's timed requests did: context switches, migrations, CPU time, and the
    bytes they made the storage layer fetch (page-cache hits do not count): with the time
    the app spent reading its inputs (``apps.base.INPUT_READS``), the evidence host
    conditions are checked with."""
    io_b, io_a = before["io"], after["io"]
    out: dict[str, Any] = {
        "voluntary_ctx_switches": after["voluntary"] - before["voluntary"],
        "involuntary_ctx_switches": after["involuntary"] - before["involuntary"],
        "user_cpu_s": round(after["user_s"] - before["user_s"], 6),
        "system_cpu_s": round(after["system_s"] - before["system_s"], 6),
        "max_rss_kb": after["max_rss_kb"],
        "threads": len(os.listdir("/proc/self/task")),
        "io_read_bytes": io_a.get("read_bytes", 0) - io_b.get("read_bytes", 0) if io_a else None,
        "io_rchar": io_a.get("rchar", 0) - io_b.get("rchar", 0) if io_a else None,
    }
    if after["migrations"] is not None and before["migrations"] is not None:
        out["nr_migrations"] = after["migrations"] - before["migrations"]
    return out


#: the /proc/meminfo lines kept with a round (kB): what the kernel's memory is made of
MEMINFO_KEYS = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "Shmem", "Mapped",
                "AnonPages", "Slab", "SReclaimable", "KernelStack", "PageTables", "Percpu")


def meminfo(text: str | None = None) -> dict[str, int]:
    """Selected /proc/meminfo values in kB, as the kernel the worker runs on sees them (a
    guest's own kernel inside a VM; the host's on bare metal and in a container)."""
    if text is None:
        text = _read(Path("/proc/meminfo")) or ""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in MEMINFO_KEYS and rest.split() and rest.split()[0].isdigit():
            out[key] = int(rest.split()[0])
    return out


def isolation_facts() -> dict[str, Any]:
    """What isolates this process, as seen from inside: namespace ids (compare them with the
    host's ``/proc/self/ns/*``), hostname, whether ``/`` is read-only, network interfaces."""
    namespaces: dict[str, str] = {}
    try:
        for name in sorted(os.listdir("/proc/self/ns")):
            try:
                namespaces[name] = os.readlink(f"/proc/self/ns/{name}")
            except OSError:
                pass
    except OSError:
        pass
    try:
        root_readonly: bool | None = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
    except OSError:
        root_readonly = None
    try:
        interfaces: list[str] | None = sorted(os.listdir("/sys/class/net"))
    except OSError:
        interfaces = None
    return {"namespaces": namespaces, "hostname": os.uname().nodename, "pid": os.getpid(),
            "root_readonly": root_readonly, "net_interfaces": interfaces}


def cpu_model() -> str:
    text = _read(Path("/proc/cpuinfo")) or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def thread_pools() -> list[dict[str, Any]]:
    """Native thread pools as threadpoolctl sees them (when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"api": p.get("user_api"), "library": p.get("internal_api"),
             "threads": p.get("num_threads")} for p in threadpool_info()]


def metadata(cores: int, host_cores: int, git_revision: str) -> dict[str, Any]:
    uname = os.uname()
    meta: dict[str, Any] = {
        "hostname": uname.nodename,
        "kernel": uname.release,
        "machine": uname.machine,
        "cpu_model": cpu_model(),
        "visible_cpus": os.cpu_count(),
        "host_cores": host_cores,
        "chr": round(cores / host_cores, 4) if host_cores else None,
        "python": sys.version.split()[0],
        "git_revision": git_revision,
        "in_container": Path("/.dockerenv").exists() or bool(os.environ.get("container")),
    }
    for module in ("torch", "numpy", "onnxruntime", "PIL"):
        mod = sys.modules.get(module)
        if mod is not None:
            meta[f"{module.lower()}_version"] = getattr(mod, "__version__", "?")
    try:
        from importlib import metadata as md

        meta["loadgen_version"] = md.version("mlcommons-loadgen")
    except Exception:
        meta["loadgen_version"] = None
    gov = _read(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))
    meta["governor"] = gov
    return meta
