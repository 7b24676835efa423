"""Platform registry: one class per execution platform, found by the paper's name."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Iterable

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


_VMS = (PlatformName.VM, PlatformName.MVM, PlatformName.VMCN)
#: the platforms each user flag (a PlatformOptions field) applies to
FLAG_PLATFORMS: dict[str, tuple[PlatformName, ...]] = {
    "runtime": (PlatformName.CN, PlatformName.VMCN),
    "engine": (PlatformName.CN,),
    "accel": _VMS,
    "kernel": _VMS,
    "initrd": _VMS,
}
FLAG_NAMES = {"runtime": "--runtime", "engine": "--engine", "accel": "--accel",
              "kernel": "--kernel", "initrd": "--initrd"}


def given_flags(options: PlatformOptions) -> dict[str, Any]:
    """The flags of ``options`` that differ from their defaults (what the user asked for)."""
    default = PlatformOptions()
    return {name: getattr(options, name) for name in FLAG_PLATFORMS
            if getattr(options, name) != getattr(default, name)}


def check_platform_flags(options: PlatformOptions, platforms: Iterable[PlatformName] = (),
                         host: Any = None) -> None:
    """Refuse bad platform flags in one line (PlatformError), the same way for `run` and
    `sweep`: a value no platform knows (whatever platforms are asked for), a flag that
    cannot apply to a platform asked for, and -- given ``host`` -- a platform that the
    flags given make unavailable here (so no platform is skipped because of a flag)."""
    from .container.launchers import ENGINES, RUNTIMES
    from .vm import ACCELS

    if options.runtime not in RUNTIMES:
        raise PlatformError(f"unknown OCI runtime {options.runtime!r} (--runtime): use one of "
                            f"{', '.join(RUNTIMES)}")
    if options.engine is not None and options.engine not in ENGINES:
        raise PlatformError(f"unknown container engine {options.engine!r}: use docker or podman, "
                            "or leave --engine out to use the OCI runtime directly")
    if options.accel not in ACCELS:
        raise PlatformError(f"unknown accelerator {options.accel!r} (--accel): use one of "
                            f"{', '.join(ACCELS)}")
    if options.initrd and not options.kernel:
        raise PlatformError("--initrd needs --kernel too (an initramfs is built for its kernel)")
    for what, path in (("guest kernel", options.kernel), ("guest initrd", options.initrd)):
        if path and not Path(path).is_file():
            raise PlatformError(f"{what} {path} does not exist: pass a file, or leave it out "
                                "to use the prepared one (`deploybench prepare vm`)")
    asked = list(dict.fromkeys(platforms))
    given = given_flags(options)
    if options.engine is not None and PlatformName.VMCN in asked:
        raise PlatformError("--engine applies to CN only (VMCN starts its container with the OCI "
                            "runtime directly): leave --engine out, or VMCN")
    if host is None:
        return
    for name in asked:
        flags = [f"{FLAG_NAMES[f]} {given[f]}" for f in given if name in FLAG_PLATFORMS[f]]
        if not flags or not implemented(name):
            continue
        reason = create_platform(name, options).unavailable_reason(host)
        if reason:
            raise PlatformError(f"{name.value} cannot run here with {' '.join(flags)}: {reason}")


__all__ = ["FLAG_PLATFORMS", "LaunchError", "Platform", "PlatformError", "PlatformOptions", "PlatformSession",
           "RunOutcome", "SessionSetup", "all_platforms", "check_platform_flags", "create_platform",
           "given_flags", "implemented", "platform_class"]
