"""`deploybench doctor`: what this host can run and, for what it cannot, why (one line each).

Built on the host facts (host.py) and on every platform's own checks."""
from __future__ import annotations

from .host import host_facts
from .platforms import all_platforms
from .platforms.base import Check


def doctor_checks() -> list[Check]:
    """What this host can run and, for what it cannot, why (one line each)."""
    facts = host_facts()
    checks = [
        Check("cores", True, f"{facts.cores} usable CPUs ({facts.cpu_model}), {facts.memory_gib} GiB"),
        Check("cgroups", facts.cgroup_problem is None,
              facts.cgroup_problem or f"cgroup v{facts.cgroup_version} writable (cpu quota and cpuset)"),
    ]
    platforms = all_platforms()
    for platform in platforms:
        reason = platform.unavailable_reason(facts)
        checks.append(Check(f"platform {platform.name}", reason is None, reason or "available"))
    for platform in platforms:
        checks += platform.doctor_checks()
    checks.append(Check("gpu", bool(facts.gpus),
                        ", ".join(facts.gpus) if facts.gpus else
                        "no NVIDIA GPU found (nvidia-smi absent): GPU scenarios are unavailable"))
    return checks
