"""The data disk: an app's data set as a read-only ext4 image, attached as virtio-blk.

DESIGN: a cloud VM reads its inputs from a block device, and the paper finds the storage
path decisive for VM-based platforms (Section V-E); reading them over 9p would add a
host-file-server round trip to every pre-processing read and exaggerate the VM's overhead.
The image is built without root or loop devices by ``mkfs.ext4 -d`` (e2fsprogs >= 1.43),
sized to the data, with no journal (it is never written), and cached per data set: the key
is the data folder plus a hash of its manifest (or, without one, of its file listing).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ...datasets import MANIFEST
from ..base import PlatformError

BLOCK = 4096
INODE_SIZE = 256
DATA_PATH_LABEL = "virtio-blk ext4"


def data_key(data_dir: Path) -> str:
    """Changes when the data set changes: its folder and its manifest (or file listing)."""
    data_dir = Path(data_dir).resolve()
    h = hashlib.sha256(str(data_dir).encode())
    manifest = data_dir / MANIFEST
    if manifest.exists():
        h.update(manifest.read_bytes())
    else:
        for path in sorted(data_dir.rglob("*")):
            st = path.lstat()
            h.update(f"{path.relative_to(data_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def image_size_bytes(data_dir: Path) -> tuple[int, int]:
    """(image size, inode count) for the data: every file rounded up to blocks, plus room
    for inodes, directories and ext4's own metadata."""
    blocks = inodes = 0
    for root, dirs, files in os.walk(data_dir):
        inodes += 1 + len(files) + len(dirs)
        for name in files:
            size = os.lstat(os.path.join(root, name)).st_size
            blocks += -(-size // BLOCK) + (1 if size > 12 * BLOCK else 0)  # + an extent block
    inodes = max(64, inodes * 2 + 16)
    size = blocks * BLOCK + inodes * INODE_SIZE
    size = int(size * 1.15) + 8 * 2**20  # group descriptors, bitmaps, free-space slack
    return -(-size // 2**20) * 2**20, inodes


def build_image(data_dir: Path, image: Path) -> None:
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    if not Path(mkfs).exists():
        raise PlatformError("mkfs.ext4 is not installed (apt-get install e2fsprogs): it builds "
                            "the VM's data disk")
    size, inodes = image_size_bytes(data_dir)
    for attempt in range(4):
        tmp = image.with_name(f".{image.name}-{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.truncate(size)
        out = subprocess.run([mkfs, "-F", "-q", "-t", "ext4", "-L", "dbdata", "-b", str(BLOCK),
                              "-I", str(INODE_SIZE), "-N", str(inodes), "-m", "0",
                              "-O", "^has_journal", "-E", "root_owner=0:0",
                              "-d", str(data_dir), str(tmp)],
                             capture_output=True, text=True)
        if out.returncode == 0:
            tmp.chmod(0o444)
            tmp.replace(image)
            return
        tmp.unlink(missing_ok=True)
        if "No space" not in out.stderr and "Could not allocate" not in out.stderr:
            break
        size *= 2
    raise PlatformError(f"mkfs.ext4 -d could not build the data disk of {data_dir}: "
                        f"{(out.stderr.strip().splitlines() or ['?'])[-1]}")


def ensure_data_image(data_dir: Path, cache_dir: Path) -> Path:
    """The cached read-only ext4 image of ``data_dir``, built on first use (atomically)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise PlatformError(f"no data folder {data_dir}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    image = cache_dir / f"{data_key(data_dir)}.ext4"
    if not image.exists():
        build_image(data_dir, image)
    return image
