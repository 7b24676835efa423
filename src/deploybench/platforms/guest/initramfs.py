"""The guest's initramfs, built in code: busybox-static, the kernel modules the guest needs
(in dependency order) and ``init.sh``, written as a ``newc`` cpio archive.

DESIGN: the archive is written by Python, not by ``cpio``: it can then hold the
``/dev/console`` device node (the kernel opens it before init runs) without root, it is
byte-for-byte reproducible, and it is left uncompressed, because decompressing it inside
an emulated (TCG) guest costs more than reading the bigger file.

Module dependencies come from ``modules.dep`` when the kernel's module folder has one (an
installed kernel), else from each module's own ``.modinfo`` ``depends=`` field (a kernel
unpacked from its package has no ``modules.dep``: depmod runs at install time).
"""
from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Iterable

#: What the guest loads: virtio transports (PCI for ``pc``, MMIO for ``microvm``), 9p for the
#: host root and the job share, overlay for the writable root, virtio-blk + ext4 for the data
#: disk. ``crc32c_generic`` provides the ``crypto-crc32c`` that ext4/jbd2 ask for by alias
#: (a soft dependency modules.dep does not list).
GUEST_MODULES: tuple[str, ...] = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
    "virtio_mmio", "netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "overlay",
    "virtio_blk", "crc32c_generic", "ext4",
)
#: Extra modules a container inside the guest (VMCN) may need; loaded when present.
OPTIONAL_MODULES: tuple[str, ...] = ()

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
INIT_SCRIPT = Path(__file__).with_name("init.sh")
_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


class InitramfsError(RuntimeError):
    """The initramfs cannot be built; one line for people."""


def module_name(path: str | Path) -> str:
    name = Path(path).name
    for suffix in _MODULE_SUFFIXES[::-1]:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


# -- reading module metadata ------------------------------------------------------------
def read_module_bytes(path: Path) -> bytes:
    """A module's ELF bytes, decompressed if it is stored compressed."""
    data = Path(path).read_bytes()
    name = Path(path).name
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if not zstd:
            raise InitramfsError(f"{name} is zstd-compressed and `zstd` is not installed")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def elf_section(data: bytes, wanted: str) -> bytes | None:
    """The bytes of a named section of a 64-bit little-endian ELF file, or None."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(data[0x3E:0x40], "little")

    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = int.from_bytes(data[base:base + 4], "little")
        offset = int.from_bytes(data[base + 0x18:base + 0x20], "little")
        size = int.from_bytes(data[base + 0x20:base + 0x28], "little")
        return name, offset, size

    _, str_off, str_size = header(shstrndx)
    names = data[str_off:str_off + str_size]
    for i in range(shnum):
        name_off, offset, size = header(i)
        end = names.find(b"\0", name_off)
        if names[name_off:end].decode(errors="replace") == wanted:
            return data[offset:offset + size]
    return None


def modinfo(path: Path) -> dict[str, list[str]]:
    """A module's ``.modinfo`` fields (``depends``, ``softdep``, ``alias``, ...)."""
    section = elf_section(read_module_bytes(path), ".modinfo") or b""
    out: dict[str, list[str]] = {}
    for entry in section.split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep:
            out.setdefault(key, []).append(value)
    return out


class ModuleIndex:
    """Where each module of a kernel lives and what it depends on."""

    def __init__(self, modules_dir: Path) -> None:
        self.dir = Path(modules_dir)
        if not self.dir.is_dir():
            raise InitramfsError(f"no kernel modules folder {self.dir}")
        self.paths: dict[str, Path] = {}
        self._deps: dict[str, list[str]] = {}
        dep_file = self.dir / "modules.dep"
        if dep_file.exists():
            self.source = "modules.dep"
            for line in dep_file.read_text().splitlines():
                target, _, deps = line.partition(":")
                if not target:
                    continue
                name = module_name(target)
                self.paths[name] = self.dir / target
                self._deps[name] = [module_name(d) for d in deps.split()]
        else:
            self.source = "modinfo"
            for path in sorted((self.dir / "kernel").rglob("*.ko*")):
                if path.name.endswith(_MODULE_SUFFIXES):
                    self.paths.setdefault(module_name(path), path)
        builtin = self.dir / "modules.builtin"
        self.builtin = {module_name(line) for line in builtin.read_text().split()} if builtin.exists() else set()

    def depends(self, name: str) -> list[str]:
        if name not in self._deps:
            deps = modinfo(self.paths[name]).get("depends", [""])[0]
            self._deps[name] = [module_name(d) for d in deps.split(",") if d]
        return self._deps[name]

    def load_order(self, wanted: Iterable[str], optional: Iterable[str] = ()) -> list[str]:
        """``wanted`` (and their dependencies) in an order where every module comes after
        the ones it depends on; built-in modules are skipped, unknown ones are an error."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, required: bool) -> None:
            name = module_name(name)
            if name in order or name in self.builtin:
                return
            if name not in self.paths:
                if required:
                    raise InitramfsError(f"kernel module {name} is neither in {self.dir} nor built in")
                return
            if name in visiting:
                raise InitramfsError(f"kernel modules depend on each other in a cycle at {name}")
            visiting.add(name)
            for dep in self.depends(name):
                visit(dep, True)
            visiting.discard(name)
            order.append(name)

        for name in wanted:
            visit(name, True)
        for name in optional:
            visit(name, False)
        return order


# -- writing the archive -------------------------------------------------------------------
class CpioWriter:
    """A minimal ``newc`` (SVR4, no CRC) cpio archive writer."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.names: list[str] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.lstrip("/")
        fields = [self._ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(name) + 1, 0]
        self._ino += 1
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        blob = header + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self.chunks.append(blob)
        if name != "TRAILER!!!":
            self.names.append(name)

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = b"".join(self.chunks)
        return data + b"\0" * (-len(data) % 512)


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.exists():
            return path
    raise InitramfsError("busybox is not installed: `apt-get install busybox-static`")


def check_static(path: Path) -> None:
    """busybox must be static: the initramfs has no C library."""
    data = path.read_bytes()[:4096]
    if b"/lib64/ld-linux" in data or b"/lib/ld-linux" in data:
        raise InitramfsError(f"{path} is dynamically linked: install busybox-static")


def build_initramfs(modules_dir: Path, busybox: Path | None = None,
                    modules: Iterable[str] = GUEST_MODULES) -> tuple[bytes, list[str]]:
    """The initramfs archive and the modules it loads, in load order."""
    busybox = busybox or find_busybox()
    check_static(busybox)
    index = ModuleIndex(modules_dir)
    order = index.load_order(modules, OPTIONAL_MODULES)
    cpio = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules", "lower", "upper", "newroot"):
        cpio.directory(d)
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    files = []
    for i, name in enumerate(order):
        filename = f"{i:02d}-{name}.ko"
        cpio.file(f"lib/modules/{filename}", read_module_bytes(index.paths[name]))
        files.append(filename)
    cpio.file("modules.order", ("\n".join(files) + "\n").encode())
    cpio.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    return cpio.finish(), order


def initramfs_recipe_hash(modules: Iterable[str] = GUEST_MODULES) -> str:
    """Changes when what goes into the initramfs changes (the init script, the module list),
    so a cached archive is rebuilt after an upgrade."""
    h = hashlib.sha256(INIT_SCRIPT.read_bytes())
    h.update(",".join(modules).encode())
    h.update(b"cpio-v1")
    return h.hexdigest()[:16]


def read_cpio(data: bytes) -> dict[str, bytes]:
    """The entries of a newc archive, name -> content (for tests and checks)."""
    entries, pos = {}, 0
    while data[pos:pos + 6] == b"070701":
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        content = data[pos:pos + size]
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            break
        entries[name] = content
    return entries


def read_cpio_names(data: bytes) -> list[str]:
    return list(read_cpio(data))
