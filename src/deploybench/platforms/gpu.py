"""A GPU in a container (CN/N/MODE/GPU): what the bundle needs, as the NVIDIA container
toolkit's hook would set it up, found on the host without the toolkit.

- **Device nodes**: ``/dev/nvidiactl``, ``/dev/nvidia<N>`` (one per GPU), ``/dev/nvidia-uvm``
  and ``/dev/nvidia-uvm-tools`` (unified memory: CUDA needs it), ``/dev/nvidia-modeset``, and
  ``/dev/nvidia-caps/nvidia-cap<N>`` (MIG capabilities). Each becomes a ``linux.devices``
  entry (character device, its major/minor, mode, owner), which the runtime creates in the
  container's ``/dev``, plus an allow rule in ``linux.resources.devices`` after the deny-all
  rule, so the device cgroup lets the worker open it.
- **Driver libraries**: the user-space half of the driver (``libcuda.so*``,
  ``libnvidia-*.so*``: ml, ptxjitcompiler, nvvm, gpucomp...), found in the dynamic linker's
  cache (``ldconfig -p``) or, without it, in the usual library folders. They must be the
  host's own: they match its kernel module exactly. The toolkit bind-mounts each file into
  the container image; here the container's root is the host's ``/usr`` and ``/etc``
  mounted read-only already (see :mod:`.oci`), so a library under them is seen at its own
  path with the host's linker cache. For one elsewhere (``/opt/...``), its *folder* is
  bind-mounted read-only at the same path: the bundle's skeleton holds only directories,
  so removing it can never delete through a file mount (``oci.remove_bundle``).
- **Engines**: Docker gets ``--gpus all`` (a device request for every GPU, served by the
  toolkit's runtime hook where it is installed); Podman gets the nodes as ``--device``.
  Both get the library folders with the container's other read-only mounts.

Everything takes a ``root`` so unit tests use a fake ``/dev`` and library tree.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

#: device nodes of the NVIDIA driver, as globs under /dev
DEVICE_GLOBS = ("nvidiactl", "nvidia[0-9]*", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset",
                "nvidia-caps/nvidia-cap[0-9]*")
#: the driver's user-space libraries (file names)
LIBRARY_PATTERN = re.compile(r"^(libcuda|libcudadebugger|libnvidia-[A-Za-z0-9_-]+|libnvcuvid|"
                             r"libnvoptix)\.so(\.[0-9.]+)?$")
#: where the libraries live when the linker cache does not say (Debian/Ubuntu, RHEL, toolkit)
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64",
                "usr/lib", "usr/local/nvidia/lib64", "usr/lib/x86_64-linux-gnu/nvidia/current")


@dataclass(frozen=True)
class DeviceNode:
    """One character device to create in the container and let through its device cgroup."""

    path: str  # the path inside the container (the host's, without the test root)
    major: int
    minor: int
    mode: int  # permission bits, e.g. 0o666
    uid: int = 0
    gid: int = 0

    def to_oci(self) -> dict[str, Any]:
        """A ``linux.devices`` entry."""
        return {"path": self.path, "type": "c", "major": self.major, "minor": self.minor,
                "fileMode": self.mode, "uid": self.uid, "gid": self.gid}

    def allow_rule(self) -> dict[str, Any]:
        """A ``linux.resources.devices`` rule letting the container read, write and mknod it."""
        return {"allow": True, "type": "c", "major": self.major, "minor": self.minor,
                "access": "rwm"}


@dataclass(frozen=True)
class GpuPassthrough:
    """What a container needs to use the host's NVIDIA GPUs, or why it cannot."""

    devices: tuple[DeviceNode, ...] = ()
    libraries: tuple[str, ...] = ()  # real paths of the driver's libraries
    problem: str | None = None

    def oci_devices(self) -> list[dict[str, Any]]:
        return [d.to_oci() for d in self.devices]

    def oci_device_rules(self) -> list[dict[str, Any]]:
        return [d.allow_rule() for d in self.devices]

    def library_dirs(self) -> list[str]:
        """Folders to bind read-only so the container sees every library at its host path."""
        return sorted({os.path.dirname(p) for p in self.libraries})

    def docker_args(self) -> list[str]:
        """``docker create`` flags: ``--gpus all`` (the NVIDIA container toolkit's hook binds
        the nodes and libraries where dockerd has it)."""
        return ["--gpus", "all"]

    def podman_args(self) -> list[str]:
        """``podman create`` flags: every node as ``--device`` (the library folders are in
        the container's read-only mounts already, see ``Container.spec_for``)."""
        args: list[str] = []
        for d in self.devices:
            args += ["--device", f"{d.path}:{d.path}:rwm"]
        return args

    def describe(self) -> str:
        return (f"{len(self.devices)} NVIDIA device nodes and {len(self.libraries)} driver "
                "libraries to bind into CN/N/MODE/GPU containers")


def _inside(root: Path, path: Path) -> str:
    return "/" + str(path.relative_to(root)).lstrip("/")


def find_device_nodes(root: Path = Path("/"),
                      stat_fn: Callable[[Path], os.stat_result] = os.stat) -> list[DeviceNode]:
    """The NVIDIA character devices under ``root``/dev, sorted by path."""
    dev = Path(root) / "dev"
    found: dict[str, DeviceNode] = {}
    for pattern in DEVICE_GLOBS:
        for path in sorted(dev.glob(pattern)):
            try:
                st = stat_fn(path)
            except OSError:
                continue
            if not stat.S_ISCHR(st.st_mode):
                continue
            inside = _inside(Path(root), path)
            found[inside] = DeviceNode(inside, os.major(st.st_rdev), os.minor(st.st_rdev),
                                       stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return [found[p] for p in sorted(found)]


def parse_ldconfig(text: str) -> list[str]:
    """``ldconfig -p`` lines (``\\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/.../libcuda.so.1``)
    -> the 64-bit NVIDIA driver libraries' paths."""
    out = []
    for line in text.splitlines():
        name, arrow, path = line.strip().partition(" => ")
        if not arrow:
            continue
        soname = name.split(" ", 1)[0]
        if LIBRARY_PATTERN.match(soname) and "x86-64" in name:
            out.append(path.strip())
    return out


def _ldconfig_cache() -> str:
    for binary in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            out = subprocess.run([binary, "-p"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0:
            return out.stdout
    return ""


def find_driver_libraries(root: Path = Path("/"), ldconfig_text: str | None = None) -> list[str]:
    """Real paths (under ``root``, as the host sees them) of the driver's libraries and of the
    links that name them, from the linker cache, else from the usual library folders."""
    root = Path(root)
    text = _ldconfig_cache() if ldconfig_text is None else ldconfig_text
    candidates = [root / p.lstrip("/") for p in parse_ldconfig(text)]
    if not candidates:
        for folder in LIBRARY_DIRS:
            base = root / folder
            if base.is_dir():
                candidates += [p for p in sorted(base.iterdir()) if LIBRARY_PATTERN.match(p.name)]
    found: set[str] = set()
    for path in candidates:
        if not path.exists():
            continue
        found.add(_inside(root, path))  # the name the linker looks up (often a link)
        real = Path(os.path.realpath(path))
        if real.is_relative_to(root.resolve()):
            found.add(_inside(root.resolve(), real))  # and the file it points to
    return sorted(found)


def nvidia_passthrough(root: Path = Path("/"), ldconfig_text: str | None = None,
                       stat_fn: Callable[[Path], os.stat_result] = os.stat) -> GpuPassthrough:
    """Everything a container needs for the host's GPUs, or the reason it cannot have them."""
    devices = find_device_nodes(root, stat_fn)
    names = {d.path for d in devices}
    if not devices:
        return GpuPassthrough(problem=f"no NVIDIA device nodes under {Path(root) / 'dev'} "
                              "(is the driver loaded? nvidia-smi creates them)")
    if "/dev/nvidiactl" not in names or not any(re.fullmatch(r"/dev/nvidia[0-9]+", n) for n in names):
        return GpuPassthrough(tuple(devices), problem="/dev/nvidiactl or /dev/nvidia<N> is missing")
    if "/dev/nvidia-uvm" not in names:
        return GpuPassthrough(tuple(devices), problem="/dev/nvidia-uvm is missing: load the "
                              "nvidia-uvm module (nvidia-modprobe -u -c=0)")
    libraries = find_driver_libraries(root, ldconfig_text)
    if not any(os.path.basename(p).startswith("libcuda.so") for p in libraries):
        return GpuPassthrough(tuple(devices), tuple(libraries),
                              problem="libcuda.so (the driver's CUDA library) is not found")
    return GpuPassthrough(tuple(devices), tuple(libraries))


def add_to_oci_config(config: dict[str, Any], gpu: GpuPassthrough) -> dict[str, Any]:
    """``config`` (an OCI ``config.json`` dict) with ``gpu``'s devices and their allow rules."""
    linux = config.setdefault("linux", {})
    linux["devices"] = [*linux.get("devices", []), *gpu.oci_devices()]
    resources = linux.setdefault("resources", {})
    resources["devices"] = [*resources.get("devices", []), *gpu.oci_device_rules()]
    return config


def gpu_container_check() -> Any:
    """`doctor`'s line on GPUs in containers (CN/N/MODE/GPU)."""
    from .base import Check, CheckStatus

    gpu = nvidia_passthrough()
    status = CheckStatus.OK if gpu.problem is None else CheckStatus.INFO
    return Check("gpu_containers", "gpu containers", status, gpu.problem or gpu.describe())

