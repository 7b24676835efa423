"""`deploybench doctor`: what this host can run and, for what it cannot, why (one line each).

Built on the host facts (host.py) and on every platform's own checks."""
from __future__ import annotations

from .gpu import gpu_checks
from .host import host_facts
from .platforms import all_platforms
from .platforms.base import Check
from .platforms.gpu import gpu_container_check


def doctor_checks() -> list[Check]:
    """What this host can run and, for what it cannot, why (one line each)."""
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
    checks += gpu_checks()  # GPUs, driver and CUDA, torch's view, GPU containers
    checks.append(gpu_container_check())
    return checks


def _extra_checks() -> list[Check]:
    """Checks contributed by platform modules (runtimes, engines, KVM)."""
    out: list[Check] = []
    for platform in all_platforms():
        hook = getattr(platform, "doctor_checks", None)
        if hook is not None:
            out += hook()
    return out
