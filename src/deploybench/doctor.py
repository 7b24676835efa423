"""`deploybench doctor`: what this host can run and, for what it cannot, why (one line each).

Built on the host facts (host.py) and on every platform's own checks (``doctor_checks``:
the platform's line, then what it depends on). Each check has a stable key for
``doctor --json`` and a status: ``ok``, ``emulated`` (works under TCG, not for overhead
figures), ``info`` (an optional tool missing, something not prepared yet) or ``no``."""
from __future__ import annotations

from .energy import doctor_check as energy_check
from .gpu import gpu_checks
from .host import host_facts
from .platforms import all_platforms
from .platforms.base import Check, CheckStatus
from .platforms.gpu import gpu_container_check

DOCTOR_SCHEMA = 1


def doctor_checks() -> list[Check]:
    """What this host can run and, for what it cannot, why (one line each)."""
    facts = host_facts()
    checks = [
        Check("cores", "cores", CheckStatus.OK,
              f"{facts.cores} usable CPUs ({facts.cpu_model}), {facts.memory_gib} GiB"),
        Check("cgroups", "cgroups", CheckStatus.NO if facts.cgroup_problem else CheckStatus.OK,
              facts.cgroup_problem or f"cgroup v{facts.cgroup_version} writable (cpu quota and cpuset)"),
    ]
    platform_lines: list[Check] = []
    extra: list[Check] = []
    for platform in all_platforms():
        own, *rest = platform.doctor_checks(facts)
        platform_lines.append(own)
        extra += rest
    checks += platform_lines + extra
    checks += gpu_checks()  # GPUs, driver and CUDA, torch's view
    checks.append(gpu_container_check())
    checks.append(energy_check())  # RAPL: joules per request, where the host has it
    return checks
