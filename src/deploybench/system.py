"""Host facts, run metadata and the `doctor` checks."""
from __future__ import annotations

import functools
import os
import platform as _platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return []


TOOLS = ("runc", "crun", "docker", "dockerd", "podman", "qemu-system-x86_64", "firecracker",
         "mkfs.ext4", "busybox", "espeak-ng", "chromium")


@functools.lru_cache(maxsize=1)
def host_facts() -> HostFacts:
    from .platforms.cpu import detect_version, usable_cpus, writable_reason
    from .worker.environment import cpu_model

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
    }


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def doctor_checks() -> list[Check]:
    """What this host can run and, for what it cannot, why (one line each)."""
    from .platforms import all_platforms

    facts = host_facts()
    checks = [
        Check("cores", True, f"{facts.cores} usable CPUs ({facts.cpu_model}), {facts.memory_gib} GiB"),
        Check("cgroups", facts.cgroup_problem is None,
              facts.cgroup_problem or f"cgroup v{facts.cgroup_version} writable (cpu quota and cpuset)"),
    ]
    for platform in all_platforms():
        reason = platform.unavailable_reason(facts)
        checks.append(Check(f"platform {platform.name}", reason is None, reason or "available"))
    for extra in _extra_checks():
        checks.append(extra)
    checks.append(Check("gpu", bool(facts.gpus),
                        ", ".join(facts.gpus) if facts.gpus else
                        "no NVIDIA GPU found (nvidia-smi absent): GPU scenarios are unavailable"))
    return checks


def _extra_checks() -> list[Check]:
    """Checks contributed by platform modules (runtimes, engines, KVM)."""
    from .platforms import all_platforms

    out: list[Check] = []
    for platform in all_platforms():
        hook = getattr(platform, "doctor_checks", None)
        if hook is not None:
            out += hook()
    return out
