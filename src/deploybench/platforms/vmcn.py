"""Container in a VM (VMCN): the ``VM`` guest, and inside it the worker in an OCI container
started by the host's runc (or crun), seen by the guest over the 9p root.

``VMCN/N/PIN``: N vCPUs pinned to N host cores (as VM/N/PIN) and the container pinned
inside the guest to its N CPUs (cpuset ``0-(N-1)``). ``VMCN/N/VNL``: QEMU under a CFS quota
of N cores on the host (as VM/N/VNL) and the container under a quota of N cores inside.

The guest has a pure cgroup v2 hierarchy (mounted by the stage-2 script), where runc and
crun both work. The bundle's ``config.json`` is written by the host into the job share;
its root is an empty skeleton the guest creates in its tmpfs, into which the guest's
``/usr``, ``/etc``, the Python installation, the project, the data disk and the share are
bind-mounted (read-only, except the share) at their own paths, so the job's paths work
unchanged.

DESIGN: a small, self-contained bundle writer. The containers work (``platforms/oci.py``
on the ``containers`` branch) has a fuller one; it was not on main when this was written.
Once both are merged, ``container_config`` should call its config builder instead.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ..scenario import CpuMode, Scenario
from ..worker.job import WorkerJob
from .base import PlatformError
from .cpu import CFS_PERIOD_US
from .vm import GuestPlan, VirtualMachine, guest_env

GUEST_BUNDLE_ROOT = "/run/deploybench-vmcn/rootfs"
CONTAINER_ID = "deploybench-vmcn"
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE"]


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def read_only_dirs(data_dir: str) -> list[str]:
    """What the worker reads: the system, its Python, the project's package, the data."""
    import deploybench

    dirs = ["/usr", "/etc", sys.prefix, sys.base_prefix, os.path.dirname(_real(sys.executable)),
            str(Path(deploybench.__file__).resolve().parents[1]), data_dir]
    for link in SYSTEM_LINKS:  # real directories on hosts without merged /usr
        if os.path.isdir(link) and not os.path.islink(link):
            dirs.append(link)
    return [_real(d) for d in dirs if d and os.path.exists(d)]


def bind_mounts(read_only: Sequence[str], writable: str) -> list[dict[str, Any]]:
    """Bind mounts, parents first, a folder inside an already-mounted one skipped."""
    writable = _real(writable)
    kept: list[str] = []
    for path in sorted(set(read_only), key=lambda p: (p.count("/"), p)):
        if path in ("/", writable) or any(_inside(path, k) for k in kept):
            continue
        kept.append(path)
    mounts = [(p, "ro") for p in kept] + [(writable, "rw")]
    mounts.sort(key=lambda m: (m[0].count("/"), m[0]))
    return [{"destination": p, "type": "bind", "source": p, "options": ["rbind", mode, "nosuid", "nodev"]}
            for p, mode in mounts]


def cpu_resources(cores: int, pinned: bool) -> dict[str, Any]:
    """The container's CPU limits inside an N-vCPU guest."""
    if pinned:
        return {"cpus": "0" if cores == 1 else f"0-{cores - 1}", "mems": "0"}
    return {"quota": cores * CFS_PERIOD_US, "period": CFS_PERIOD_US}


def container_config(args: Sequence[str], env: dict[str, str], mounts: list[dict[str, Any]],
                     resources: dict[str, Any], root: str = GUEST_BUNDLE_ROOT) -> dict[str, Any]:
    """An OCI runtime config (runc/crun) for the worker."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": list(args),
            "env": [f"{k}={v}" for k, v in sorted(env.items())], "cwd": "/",
            "capabilities": {k: CAPABILITIES for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": root, "readonly": True},
        "hostname": "deploybench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            *mounts,
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network", "cgroup")],
            "resources": {"cpu": resources},
            "cgroupsPath": f"/{CONTAINER_ID}",
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def skeleton_script(mounts: list[dict[str, Any]], root: str = GUEST_BUNDLE_ROOT) -> str:
    """Shell lines (run in the guest) that make the container's root skeleton: standard
    mount points, the host-style links (bin -> usr/bin), a folder per bind mount."""
    q = shlex.quote
    lines = [f"mkdir -p {q(root)}"]
    lines += [f"mkdir -p {q(root + '/' + d)}" for d in ("proc", "dev", "sys", "tmp", "run", "usr", "etc")]
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            lines.append(f"ln -sfn {q(os.readlink(link))} {q(root + link)}")
    lines += [f"mkdir -p {q(root + m['destination'])}" for m in mounts]
    return "\n".join(lines)


class ContainerInVM(VirtualMachine):
    """``VMCN``: the VM guest running the worker in a runc/crun container."""

    name: ClassVar[str] = "VMCN"
    machine: ClassVar[str] = "pc"
    extra_memory_mib: ClassVar[int] = 512

    def unavailable_reason(self, host) -> str | None:  # type: ignore[override]
        reason = super().unavailable_reason(host)
        if reason is None and not shutil.which(self.runtime):
            reason = f"{self.runtime} is not installed (apt-get install {self.runtime}): the guest uses the host's"
        return reason

    @property
    def runtime(self) -> str:
        runtime = self.options.runtime or "runc"
        if runtime not in ("runc", "crun"):
            raise PlatformError(f"VMCN runs the container with runc or crun, not {runtime!r}")
        return runtime

    def guest_command(self, scenario: Scenario, job: WorkerJob, job_path: Path,
                      plan: GuestPlan) -> tuple[list[str], str]:
        runtime = shutil.which(self.runtime)
        if runtime is None:
            raise PlatformError(f"{self.runtime} is not installed on the host (the guest uses the host's)")
        share = job_path.parent
        bundle = share / "bundle"
        bundle.mkdir(exist_ok=True)
        mounts = bind_mounts(read_only_dirs(str(Path(job.data_dir).resolve())), str(share))
        resources = cpu_resources(scenario.cores, scenario.cpu_mode is CpuMode.PIN)
        args = [sys.executable, "-m", "deploybench.worker", "--job", str(job_path)]
        config = container_config(args, guest_env(job), mounts, resources)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        plan.extra_facts.update({"container_runtime": self.runtime, "container_cpu": resources,
                                 "container_cgroup": "v2 (guest)"})
        command = [runtime, "--root", "/run/deploybench-runc", "run", "--bundle", str(bundle), CONTAINER_ID]
        return command, skeleton_script(mounts)
