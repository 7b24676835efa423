"""OCI bundles written by the project: a minimal root filesystem and its ``config.json``.

No registry can be reached, so a container's root is built locally: a skeleton directory
(mount points and the host's ``/bin -> usr/bin`` style links) that becomes a read-only
root, into which the host's ``/usr``, ``/etc``, the Python installation, the project and
the data are bind-mounted read-only, and exactly one directory -- the run's result folder
-- read-write, at the same path as on the host so the job's paths work unchanged.

DESIGN: the skeleton holds only empty directories and symlinks. Its removal
(:func:`remove_bundle`) therefore never deletes a file it did not create: it unlinks links
and ``rmdir``s directories, so a bind mount that were somehow still attached would make
removal fail loudly instead of deleting the host's ``/usr``.

The config is plain data (a dict) so unit tests check it without a runtime; the same bundle
serves runc and crun here, and the guest's runtime in VMCN.
"""
from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ...scenario import format_cpu_list
from ..cpu import CpuLimits

OCI_VERSION = "1.0.2"
#: host directories every container sees (read-only); /bin, /lib... are links on merged-/usr
#: hosts and are recreated as links, else bind-mounted.
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: standard mount points of the skeleton
SKELETON_DIRS = ("proc", "dev", "sys", "tmp", "run", "usr", "etc")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
NAMESPACES = ("pid", "mount", "ipc", "uts", "network", "cgroup")
#: mount points the container makes itself: never bind-mounted over from the host (e.g. a
#: script's own folder /tmp on sys.path)
OWN_MOUNTS = ("/", "/proc", "/dev", "/sys", "/tmp")


@dataclass(frozen=True)
class BindMount:
    """A host directory seen at the same path inside the container."""

    source: str
    destination: str
    readonly: bool = True

    def to_oci(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": ["rbind", "ro" if self.readonly else "rw", "nosuid", "nodev"]}


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def python_dirs() -> list[str]:
    """Directories the worker's Python needs: prefixes, the venv, every existing sys.path
    entry (the project's src for an editable install), as real paths."""
    out = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
           os.path.dirname(_real(sys.executable))]
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            out.append(entry)
        elif entry and os.path.isfile(entry):  # python311.zip
            out.append(os.path.dirname(entry))
    here = Path(__file__).resolve().parents[2]  # .../src (the package's parent)
    out.append(str(here))
    return [_real(p) for p in out if p and os.path.exists(p)]


def plan_mounts(read_only: Iterable[str], writable: str,
                system_dirs: Sequence[str] = SYSTEM_DIRS) -> list[BindMount]:
    """Bind mounts for the container: system dirs that are real directories, the read-only
    dirs (deduplicated: a dir inside another one that is mounted is skipped), and the one
    writable dir. Parents come before children, so nested destinations work."""
    writable = _real(writable)
    system = [d for d in system_dirs if os.path.isdir(d) and not os.path.islink(d)]
    candidates = sorted({_real(d) for d in read_only} | set(system), key=lambda p: (p.count("/"), p))
    kept: list[str] = []
    for path in candidates:
        if path in OWN_MOUNTS or path == writable or any(_inside(path, k) for k in kept):
            continue
        kept.append(path)
    mounts = [BindMount(p, p, True) for p in kept if p != writable]
    mounts.append(BindMount(writable, writable, False))
    return sorted(mounts, key=lambda m: (m.destination.count("/"), m.destination))


def _ensure_dir(root: Path, path: str) -> None:
    """Create ``path`` inside ``root`` as a directory, refusing to follow links out."""
    current = root
    for part in Path(path).relative_to("/").parts:
        current = current / part
        if current.is_symlink():  # e.g. /lib64/... under a lib64 -> usr/lib64 link
            target = os.readlink(current)
            current = (current.parent / target) if not os.path.isabs(target) else root / target.lstrip("/")
            continue
        if not current.exists():
            current.mkdir(mode=0o755)


def make_rootfs(rootfs: Path, mounts: Sequence[BindMount], extra_dirs: Sequence[str] = (),
                system_dirs: Sequence[str] = SYSTEM_DIRS) -> None:
    """The skeleton: standard mount points, host-style links (bin -> usr/bin), and an empty
    directory for every bind mount's destination."""
    rootfs.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name in SKELETON_DIRS:
        (rootfs / name).mkdir(mode=0o755, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    for d in system_dirs:
        if os.path.islink(d):
            link = rootfs / d.lstrip("/")
            if not link.is_symlink():
                link.symlink_to(os.readlink(d))
    for mount in mounts:
        _ensure_dir(rootfs, mount.destination)
    for d in extra_dirs:
        _ensure_dir(rootfs, d)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this process's mount namespace."""
    prefix = os.path.realpath(path)
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")
        if _inside(point, prefix):
            out.append(point)
    return out


def remove_bundle(bundle: Path, allow_empty_files: bool = False) -> None:
    """Remove a bundle made by :func:`write_bundle`: links, the files we wrote, and empty
    directories only (a still-attached bind mount makes this fail, never deletes through).
    ``allow_empty_files``: also empty regular files (mount points an engine made for its
    own /etc/hosts-style bind mounts). Raises OSError when something unexpected is left."""
    bundle = Path(bundle)
    if not bundle.exists():
        return
    attached = mounts_under(bundle)
    if attached:
        raise OSError(f"refusing to remove bundle {bundle}: {attached[0]} is still mounted")
    for dirpath, dirnames, filenames in os.walk(bundle, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            if (path.is_symlink() or Path(dirpath) == bundle
                    or allow_empty_files and path.is_file() and path.stat().st_size == 0):
                path.unlink()
        for name in dirnames:
            path = Path(dirpath) / name
            if path.is_symlink():
                path.unlink()
            else:
                path.rmdir()
    bundle.rmdir()


def cpu_resources(limits: CpuLimits, mems: str) -> dict[str, Any]:
    """``linux.resources.cpu``: PIN = a cpuset of the chosen cores; VNL = a CFS quota of N
    cores over every usable core (what ``docker run --cpus N`` does)."""
    cpu: dict[str, Any] = {"cpus": format_cpu_list(limits.cpus), "mems": mems}
    if limits.quota_cores is not None:
        cpu["quota"] = round(limits.quota_cores * limits.period_us)
        cpu["period"] = limits.period_us
    return cpu


def host_mems() -> str:
    """The memory nodes a cpuset may use (cpuset.mems must be set before any task)."""
    for path in ("/sys/fs/cgroup/cpuset/cpuset.mems", "/sys/fs/cgroup/cpuset.mems.effective",
                 "/sys/devices/system/node/online"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return "0"


def oci_config(*, args: Sequence[str], env: dict[str, str], cwd: str, hostname: str,
               mounts: Sequence[BindMount], limits: CpuLimits, cgroups_path: str,
               mems: str = "0", rootfs: str = "rootfs", gpu: Any = None) -> dict[str, Any]:
    """The container's ``config.json`` (OCI runtime spec 1.0). ``gpu``: a
    :class:`platforms.gpu.GpuPassthrough` whose device nodes the container gets (CN/N/MODE/GPU)."""
    no_caps: list[str] = []
    config = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": [f"{k}={v}" for k, v in sorted(env.items())],
            "cwd": cwd,
            # Nothing the worker does needs a capability: it reads files it can read by
            # mode bits and writes only to its own (mode 0777) run folder.
            "capabilities": {k: list(no_caps) for k in
                             ("bounding", "effective", "permitted", "inheritable", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=262144k"]},
            *[m.to_oci() for m in mounts],
        ],
        "linux": {
            "namespaces": [{"type": ns} for ns in NAMESPACES],
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "cpu": cpu_resources(limits, mems),
            },
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if gpu is not None:
        from ..gpu import add_to_oci_config

        add_to_oci_config(config, gpu)
    return config


@dataclass
class Bundle:
    path: Path
    config: dict[str, Any]

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


def bundles_root() -> Path:
    """Where bundles live while their container runs (removed after every run)."""
    root = Path(os.environ.get("DEPLOYBENCH_BUNDLES") or "/run/deploybench/bundles")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.gettempdir()) / "deploybench-bundles"
        root.mkdir(parents=True, exist_ok=True)
    return root


def write_bundle(container_id: str, config_args: dict[str, Any], mounts: Sequence[BindMount],
                 parent: Path | None = None) -> Bundle:
    """A fresh bundle directory ``<parent>/<id>`` with its skeleton rootfs and config.json."""
    path = Path(parent or bundles_root()) / container_id
    path.mkdir(mode=0o711)
    try:
        make_rootfs(path / "rootfs", mounts, extra_dirs=[config_args.get("cwd", "/")])
        config = oci_config(mounts=mounts, **config_args)
        (path / "config.json").write_text(json.dumps(config, indent=1))
    except BaseException:
        remove_bundle(path)
        raise
    return Bundle(path, config)


def rootfs_tarball(rootfs: Path, out: Path) -> Path:
    """The skeleton as a tarball (for ``docker import``): links and empty dirs only."""
    with tarfile.open(out, "w") as tar:
        tar.add(str(rootfs), arcname=".")
    return out
