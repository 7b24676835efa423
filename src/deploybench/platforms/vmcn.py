"""Container in a VM (VMCN): the ``VM`` guest, and inside it the worker in the same OCI
container as CN (``platforms/container/``), started by the host's runc (or crun), which the
guest sees over its 9p root. The worker in the container serves rounds over the same files
channel as VM's (the share is bind-mounted into the container at its own path).

``VMCN/N/PIN``: N vCPUs pinned to N host cores (as VM/N/PIN) and the container pinned
inside the guest to the guest's N CPUs (cpuset ``0-(N-1)``). ``VMCN/N/VNL``: QEMU under a
CFS quota of N cores on the host (as VM/N/VNL) and the container under a quota of N cores
over the guest's CPUs.

DESIGN: the bundle is CN's, written by the host into the job share (so it is removed with
the run folder): the same bind mounts (system, Python, project, data read-only; the run
folder read-write, each at its own path) and the same config, with CPU limits in the
guest's CPU numbers. Inside the guest the data path is the ext4 data disk mounted at the
data folder's path, so the container's bind mount of it is the block device too. The guest
has a pure cgroup v2 hierarchy (mounted by the stage-2 script), where runc and crun work.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import ClassVar

from ..host import HostFacts
from ..scenario import CpuMode, Scenario
from ..worker.job import WorkerJob
from .base import PlatformError
from .container import Container
from .container.launchers import RUNTIMES
from .container.oci import cpu_resources, write_bundle
from .cpu import CpuLimits
from .vm import GuestPlan, VirtualMachine
GUEST_RUNTIME_STATE = "/run/deploybench-runtime"


def guest_limits(cores: int, pinned: bool) -> CpuLimits:
    """The container's CPU limits in an N-vCPU guest: its N CPUs pinned (PIN), or a quota
    of N cores over them (VNL)."""
    return CpuLimits(cpus=list(range(cores)), quota_cores=None if pinned else float(cores))


class ContainerInVM(VirtualMachine):
    """``VMCN``: the VM guest running the worker in a runc/crun container."""

    name: ClassVar[str] = "VMCN"
    machine: ClassVar[str] = "pc"
    extra_memory_mib: ClassVar[int] = 512

    @property
    def runtime(self) -> str:
        runtime = self.options.runtime or "runc"
        if runtime not in RUNTIMES:
            raise PlatformError(f"VMCN runs the container with runc or crun, not {runtime!r}")
        return runtime

    def unavailable_reason(self, host: HostFacts) -> str | None:
        reason = super().unavailable_reason(host)
        if reason is None and self.options.engine is not None:
            reason = "VMCN starts the container with the OCI runtime directly: drop --engine"
        if reason is None and not shutil.which(self.runtime):
            reason = f"{self.runtime} is not installed (apt-get install {self.runtime}): the guest runs the host's"
        return reason

    def guest_command(self, scenario: Scenario, prototype: WorkerJob, share: Path,
                      plan: GuestPlan) -> tuple[list[str], str]:
        runtime = shutil.which(self.runtime)
        if runtime is None:
            raise PlatformError(f"{self.runtime} is not installed on the host (the guest runs the host's)")
        limits = guest_limits(scenario.cores, scenario.cpu_mode is CpuMode.PIN)
        container = Container(dataclasses.replace(self.options, engine=None, runtime=self.runtime))
        spec = container.spec_for(scenario, prototype, share, channel="files", limits=limits)
        bundle = write_bundle(spec.container_id, dict(
            args=spec.args, env=spec.env, cwd=spec.cwd, hostname=spec.container_id, limits=limits,
            cgroups_path=f"/{spec.container_id}", mems="0"), spec.mounts, parent=share)
        plan.extra_facts.update({
            "container_runtime": self.runtime, "container_id": spec.container_id,
            "container_cpu": cpu_resources(limits, "0"), "container_cgroup": "v2 (guest)",
        })
        command = [runtime, "--root", GUEST_RUNTIME_STATE, "run", "--bundle", str(bundle.path),
                   spec.container_id]
        return command, ""
