"""A guest kernel: Debian's ``linux-image-*-amd64`` fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x`` (no root filesystem is touched, nothing is installed).

DESIGN: the generic Debian kernel, not the ``cloud`` flavour -- the cloud kernel has no 9p.
Its ``vmlinuz`` is a bzImage whose payload is xz-compressed; the uncompressed ``vmlinux``
(an ELF with a PVH entry note) boots with QEMU's ``-kernel`` directly and skips the
in-guest decompression, which under TCG costs several seconds.
"""
from __future__ import annotations

import lzma
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"
_RELEASE_RE = re.compile(r"^linux-image-(\d+\.\d+\.\d+-\d+-amd64)$")


class KernelError(RuntimeError):
    """No guest kernel can be had; the message is one line for people."""


def _apt(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise KernelError(f"`{args[0]}` is not installed: give --kernel and --initrd") from None
    except subprocess.TimeoutExpired:
        raise KernelError(f"`{' '.join(args)}` took over {timeout:g} s (offline?): "
                          "give --kernel and --initrd") from None


def newest_kernel_package() -> str:
    """The package name of the newest generic amd64 kernel apt knows (e.g.
    ``linux-image-6.1.0-57-amd64``), from the ``linux-image-amd64`` meta package first."""
    out = _apt("apt-cache", "depends", "linux-image-amd64")
    for line in out.stdout.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if _RELEASE_RE.match(name):
            return name
    out = _apt("apt-cache", "pkgnames", "linux-image-")
    names = [n for n in out.stdout.split() if _RELEASE_RE.match(n)]
    if not names:
        raise KernelError("apt knows no linux-image-*-amd64 package (run `apt-get update`, "
                          "or give --kernel and --initrd)")

    def version(name: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", name))

    return max(names, key=version)


def release_of(package: str) -> str:
    match = _RELEASE_RE.match(package)
    if not match:
        raise KernelError(f"{package!r} is not a linux-image-<release>-amd64 package")
    return match.group(1)


def download_and_unpack(package: str, dest: Path) -> Path:
    """``apt-get download`` the package and unpack it into ``dest``; returns ``dest``."""
    with tempfile.TemporaryDirectory(prefix="deploybench-kernel-") as tmp:
        Path(tmp).chmod(0o777)  # apt's _apt user may write here (no sandbox warning)
        out = _apt("apt-get", "download", package, cwd=Path(tmp))
        debs = list(Path(tmp).glob("*.deb"))
        if out.returncode != 0 or not debs:
            last = (out.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise KernelError(f"`apt-get download {package}` failed ({last}): give --kernel "
                              "and --initrd, or run `deploybench prepare vm` where apt works")
        dest.mkdir(parents=True, exist_ok=True)
        out = _apt("dpkg-deb", "-x", str(debs[0]), str(dest))
        if out.returncode != 0:
            raise KernelError(f"`dpkg-deb -x {debs[0].name}` failed: {out.stderr.strip()[:200]}")
    return dest


def extract_vmlinux(vmlinuz: bytes) -> bytes | None:
    """The uncompressed kernel ELF inside an xz-compressed bzImage, or None when the image
    is compressed otherwise (the bzImage then boots as it is)."""
    start = vmlinuz.find(XZ_MAGIC)
    while start >= 0:
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            data = decompressor.decompress(vmlinuz[start:])
        except lzma.LZMAError:
            data = b""
        if data.startswith(ELF_MAGIC):
            return data
        start = vmlinuz.find(XZ_MAGIC, start + 1)
    return None


def bzimage_release(image: bytes) -> str | None:
    """The kernel release written in a bzImage's setup header (``6.1.0-57-amd64``)."""
    if len(image) < 0x210 or image[0x202:0x206] != b"HdrS":
        return None
    offset = int.from_bytes(image[0x20E:0x210], "little") + 0x200
    text = image[offset:offset + 256].split(b"\0", 1)[0].decode(errors="replace")
    return text.split()[0] if text else None


def copy_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
