"""Facts about the host (CPUs, memory, cgroups, tools, GPUs) and the metadata stored with every
run. A leaf module: platforms and the doctor checks build on it, it imports none of them."""
from __future__ import annotations

import functools
import math
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


def run_metadata() -> dict[str, Any]:
    """Host-side metadata stored with every run (the worker adds its own view), with the
    host's fingerprint (``host_fingerprint``): the class of identical hosts it belongs to."""
    from . import __version__

    facts = host_facts()
    meta = {
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
        "deploybench_version": __version__,
        "kvm": facts.kvm_present,
        "gpus": list(facts.gpus),
        "loadavg_1m": os.getloadavg()[0],
    }
    meta["fingerprint"] = host_fingerprint(meta)
    return meta


# -- host classes -------------------------------------------------------------------------------
#: what makes two hosts interchangeable for a measurement (the hostname is left out, so that
#: identical hosts form one class; the deploybench version is checked apart, by the fleet)
FINGERPRINT_FIELDS = ("cpu_model", "host_cores", "memory_gib", "kernel", "kvm", "gpus")


def _fingerprint_values(meta: dict[str, Any]) -> dict[str, Any]:
    memory = meta.get("memory_gib")
    values = {
        "cpu_model": meta.get("cpu_model"),
        "host_cores": meta.get("host_cores"),
        # MemTotal is a little under the installed size, by an amount that differs between
        # identical machines (firmware and kernel reservations): the whole GiB above it
        "memory_gib": math.ceil(float(memory)) if memory is not None else None,
        "kernel": meta.get("kernel"),
    }
    # runs stored before these were recorded hash as they did not have them
    if meta.get("kvm"):
        values["kvm"] = True
    if meta.get("gpus"):
        values["gpus"] = sorted(str(g) for g in meta["gpus"])
    return values


def host_fingerprint(meta: dict[str, Any]) -> str:
    """The class of a run's host, from its run metadata: a short, stable id of the CPU model,
    usable cores, memory (whole GiB, rounded up), kernel, KVM and GPUs -- not the hostname, so identical
    hosts share it. Runs with different fingerprints are never pooled or compared."""
    import hashlib
    import json

    text = json.dumps(_fingerprint_values(meta), sort_keys=True, default=str)
    return "hc-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def host_class_label(meta: dict[str, Any]) -> str:
    """A host class for people: ``AMD EPYC, 2 cores, 24 GiB, Linux 6.1.0-18-amd64, KVM``."""
    values = _fingerprint_values(meta)
    parts = [str(values["cpu_model"] or "unknown CPU"),
             f"{values['host_cores'] if values['host_cores'] is not None else '?'} "
             f"core{'' if values['host_cores'] == 1 else 's'}",
             f"{values['memory_gib'] if values['memory_gib'] is not None else '?'} GiB",
             f"Linux {values['kernel'] or '?'}"]
    if values.get("kvm"):
        parts.append("/dev/kvm")
    if values.get("gpus"):
        parts.append(" + ".join(values["gpus"]))
    return ", ".join(parts)
