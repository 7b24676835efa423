"""Guest assets for VM, MVM and VMCN: a kernel and an initramfs, prepared once and cached
under ``<deploybench home>/guest`` (``deploybench prepare vm``), or given by the user
(``--kernel``/``--initrd``).

Layout of the cache::

    guest/<kernel release>/package/...      the unpacked linux-image package (modules)
    guest/<kernel release>/vmlinuz           the bzImage
    guest/<kernel release>/vmlinux           the uncompressed ELF (PVH boot), when extractable
    guest/<kernel release>/initramfs-<recipe>.cpio
    guest/assets.json                        {"schema": 1, the current assets}
    guest/disks/                             data-disk images (see datadisk.py)
    guest/kvm-probe-*.json                   cached KVM boot-probe verdicts (see vm.py)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...datasets.cache import home
from ..base import PlatformError
from .initramfs import InitramfsError, build_initramfs, initramfs_recipe_hash
from .kernel import (KernelError, bzimage_release, copy_file, download_and_unpack, extract_vmlinux,
                     newest_kernel_package, release_of)

ASSETS_SCHEMA = 1


class GuestAssetError(PlatformError):
    """No usable guest kernel/initramfs; one line saying how to get one."""


@dataclass(frozen=True)
class GuestAssets:
    kernel: str  # what QEMU boots (-kernel): vmlinux (PVH) or vmlinuz
    initrd: str
    release: str | None  # kernel release, when known
    source: str  # "debian-package" | "user"
    modules: tuple[str, ...] = ()  # modules the initramfs loads, in order

    def to_json(self) -> dict[str, Any]:
        return {"schema": ASSETS_SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "GuestAssets":
        if data.get("schema") != ASSETS_SCHEMA:
            raise ValueError(f"guest assets schema {data.get('schema')!r} is not {ASSETS_SCHEMA}")
        values = {k: v for k, v in data.items() if k != "schema"}
        values["modules"] = tuple(values.get("modules", ()))
        return cls(**values)


def guest_home() -> Path:
    return home() / "guest"


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _cached() -> GuestAssets | None:
    path = guest_home() / "assets.json"
    try:
        assets = GuestAssets.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not (Path(assets.kernel).exists() and Path(assets.initrd).exists()):
        return None
    if assets.source != "user" and not Path(assets.initrd).name.endswith(f"{initramfs_recipe_hash()}.cpio"):
        return None  # built by an older recipe
    return assets


def _initramfs_for(release_dir: Path, modules_dir: Path) -> tuple[Path, tuple[str, ...]]:
    target = release_dir / f"initramfs-{initramfs_recipe_hash()}.cpio"
    order_file = target.with_suffix(".modules")
    if target.exists() and order_file.exists():
        return target, tuple(order_file.read_text().split())
    try:
        data, order = build_initramfs(modules_dir)
    except InitramfsError as exc:
        raise GuestAssetError(str(exc)) from None
    _write_atomic(target, data)
    _write_atomic(order_file, "\n".join(order).encode())
    return target, tuple(order)


def prepare(kernel: str | None = None, initrd: str | None = None, *, force: bool = False) -> GuestAssets:
    """The guest kernel and initramfs to boot, preparing (downloading, building) them once.

    - ``kernel`` and ``initrd`` given: used as they are (the initrd must follow init.sh's
      protocol, e.g. one built by ``deploybench prepare vm``).
    - only ``kernel``: a bzImage whose modules are installed in /lib/modules/<release>; the
      initramfs is built from those.
    - neither: the cached assets, else Debian's newest generic kernel via ``apt-get download``.
    """
    if initrd and not kernel:
        raise GuestAssetError("--initrd needs --kernel too")
    for given, what in ((kernel, "kernel"), (initrd, "initrd")):
        if given and not Path(given).is_file():
            raise GuestAssetError(f"guest {what} {given} does not exist")
    if kernel and initrd:
        data = Path(kernel).read_bytes()[:0x400]
        return GuestAssets(str(Path(kernel).resolve()), str(Path(initrd).resolve()),
                           bzimage_release(data), "user")
    root = guest_home()
    root.mkdir(parents=True, exist_ok=True)
    if force:  # a fresh start also forgets the cached KVM verdicts (vm.py probes again)
        for verdict in root.glob("kvm-probe-*.json"):
            verdict.unlink(missing_ok=True)
    if kernel:
        release = bzimage_release(Path(kernel).read_bytes()[:0x400])
        modules_dir = Path("/lib/modules") / (release or "?")
        if not release or not modules_dir.is_dir():
            raise GuestAssetError(f"no modules for kernel {kernel} (release {release or 'unknown'}) "
                                  "in /lib/modules: give --initrd too")
        release_dir = root / f"user-{release}"
        release_dir.mkdir(exist_ok=True)
        initrd_path, order = _initramfs_for(release_dir, modules_dir)
        return GuestAssets(str(Path(kernel).resolve()), str(initrd_path), release, "user", order)
    if not force:
        cached = _cached()
        if cached is not None:
            return cached
    try:
        package = newest_kernel_package()
        release = release_of(package)
        release_dir = root / release
        unpacked = release_dir / "package"
        if force or not (unpacked / "boot" / f"vmlinuz-{release}").exists():
            download_and_unpack(package, unpacked)
    except KernelError as exc:
        raise GuestAssetError(str(exc)) from None
    vmlinuz = unpacked / "boot" / f"vmlinuz-{release}"
    if not vmlinuz.exists():
        raise GuestAssetError(f"{package} holds no boot/vmlinuz-{release}")
    copy_file(vmlinuz, release_dir / "vmlinuz")
    boot_image = release_dir / "vmlinuz"
    vmlinux = extract_vmlinux(vmlinuz.read_bytes())
    if vmlinux is not None:
        _write_atomic(release_dir / "vmlinux", vmlinux)
        boot_image = release_dir / "vmlinux"
    initrd_path, order = _initramfs_for(release_dir, unpacked / "lib" / "modules" / release)
    assets = GuestAssets(str(boot_image), str(initrd_path), release, "debian-package", order)
    _write_atomic(root / "assets.json", json.dumps(assets.to_json(), indent=1).encode())
    # The unpacked package (~400 MB of modules) is not needed any more; a later recipe
    # change downloads it again (seconds).
    shutil.rmtree(unpacked, ignore_errors=True)
    return assets


def cached_assets() -> GuestAssets | None:
    """The prepared assets, if any, without preparing anything (for doctor)."""
    return _cached()


__all__ = ["GuestAssetError", "GuestAssets", "cached_assets", "guest_home", "prepare"]
