"""Platform registry: one class per execution platform, found by the paper's name."""
from __future__ import annotations

import importlib

from ..scenario import PlatformName
from .base import (LaunchError, Platform, PlatformError, PlatformOptions, PlatformSession, RunOutcome,
                   SessionSetup)

_PLATFORMS: dict[PlatformName, str] = {
    PlatformName.BM: "deploybench.platforms.baremetal:BareMetal",
    PlatformName.CN: "deploybench.platforms.container:Container",
    PlatformName.VM: "deploybench.platforms.vm:VirtualMachine",
    PlatformName.MVM: "deploybench.platforms.vm:MicroVM",
    PlatformName.VMCN: "deploybench.platforms.vmcn:ContainerInVM",
}


def platform_class(name: PlatformName) -> type:
    spec = _PLATFORMS.get(name)
    if spec is None:
        raise PlatformError(f"platform {name.value} is not implemented yet in this version")
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_platform(name: PlatformName, options: PlatformOptions | None = None) -> Platform:
    return platform_class(name)(options)


def all_platforms(options: PlatformOptions | None = None) -> list[Platform]:
    """An instance of every platform this version knows (for doctor and planning)."""
    return [platform_class(name)(options) for name in PlatformName if name in _PLATFORMS]


def implemented(name: PlatformName) -> bool:
    return name in _PLATFORMS


__all__ = ["LaunchError", "Platform", "PlatformError", "PlatformOptions", "PlatformSession", "RunOutcome",
           "SessionSetup", "all_platforms", "create_platform", "implemented", "platform_class"]
