"""Facts about the host (CPUs, memory, cgroups, tools, GPUs) and the metadata stored with every
run. A leaf module: platforms and the doctor checks build on it, it imports none of them."""
from __future__ import annotations

import functools
import os
import platform as _platform
import shutil
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .scenario import ScenarioError, parse_cpu_list
from .worker.environment import cpu_model

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: every cgroup, container, bundle and guest deploybench creates is named PREFIX + an id
PREFIX = "deploybench-"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True,
                                   timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


# -- cgroups and CPUs -----------------------------------------------------------------------
def detect_version(root: Path = CGROUP_ROOT) -> int | None:
    """2 for a pure cgroup v2 mount, 1 for v1 with cpu and cpuset controllers, else None."""
    if (root / "cgroup.controllers").exists():
        return 2
    if (root / "cpu").is_dir() and (root / "cpuset").is_dir():
        return 1
    return None


def writable_reason(root: Path = CGROUP_ROOT) -> str | None:
    """None when we can create cgroups here, else why not (one line)."""
    version = detect_version(root)
    if version is None:
        return f"no cgroup cpu/cpuset controllers under {root}"
    probe_parent = root if version == 2 else root / "cpu"
    probe = probe_parent / f"{PREFIX}probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"cgroup v{version} at {root} is not writable ({exc.strerror}): run as root"
    return None


def usable_cpus() -> list[int]:
    """CPUs this process may run on (respects a restricted shell), online ones only."""
    allowed = set(os.sched_getaffinity(0))
    try:
        online = set(parse_cpu_list(Path("/sys/devices/system/cpu/online").read_text()))
        allowed &= online
    except (OSError, ScenarioError):
        pass
    return sorted(allowed)


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    kernel: str
    machine: str
    cpu_model: str
    cores: int  # usable (online and allowed) CPUs: the most a scenario may ask for
    usable_cpus: list[int]
    memory_gib: float
    cgroup_version: int | None
    cgroup_problem: str | None  # None = we can create cgroups
    kvm_present: bool
    tools: dict[str, str | None] = field(default_factory=dict)  # name -> path or None
    gpus: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _gpus() -> list[str]:
    """The NVIDIA GPUs nvidia-smi lists, else those the kernel driver lists in /proc (none
    without a driver)."""
    from .worker.gpu import proc_gpu_names, query_nvidia_smi

    return [gpu.name for gpu in query_nvidia_smi().gpus] or proc_gpu_names()


TOOLS = ("runc", "crun", "docker", "dockerd", "podman", "qemu-system-x86_64", "firecracker",
         "mkfs.ext4", "busybox", "espeak-ng", "chromium")


@functools.lru_cache(maxsize=1)
def host_facts() -> HostFacts:
    cpus = usable_cpus()
    mem_kb = 0
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    uname = os.uname()
    return HostFacts(
        hostname=uname.nodename,
        kernel=uname.release,
        machine=uname.machine,
        cpu_model=cpu_model(),
        cores=len(cpus),
        usable_cpus=cpus,
        memory_gib=round(mem_kb / 2**20, 1),
        cgroup_version=detect_version(),
        cgroup_problem=writable_reason(),
        kvm_present=os.path.exists("/dev/kvm"),
        tools={name: shutil.which(name) for name in TOOLS},
        gpus=_gpus(),
    )


#: what makes two hosts a class whose runs may be compared (not the hostname: two identical
#: machines are one class; not the software revision: it is recorded, and reported)
FINGERPRINT_FIELDS = ("cpu_model", "host_cores", "memory_gib", "kernel")


def host_fingerprint(meta: dict[str, Any]) -> str:
    """A short, stable id of a host's class, from its run metadata: CPU model, usable cores,
    memory and kernel (``fp-1a2b3c4d``)."""
    import hashlib

    parts = [str(meta.get(name, "")) for name in FINGERPRINT_FIELDS]
    parts[2] = str(round(float(meta.get("memory_gib") or 0)))  # 23.5 and 23.6 GiB are one host
    return "fp-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def run_metadata() -> dict[str, Any]:
    """Host-side metadata stored with every run (the worker adds its own view)."""
    facts = host_facts()
    return {
        "host": facts.hostname,
        "kernel": facts.kernel,
        "cpu_model": facts.cpu_model,
        "host_cores": facts.cores,
        "memory_gib": facts.memory_gib,
        "cgroup_version": facts.cgroup_version,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "python": sys.version.split()[0],
        "platform": _platform.platform(),
        "git_revision": git_revision(),
        "loadavg_1m": os.getloadavg()[0],
        "fingerprint": host_fingerprint({"cpu_model": facts.cpu_model, "host_cores": facts.cores,
                                         "memory_gib": facts.memory_gib, "kernel": facts.kernel}),
    }
