"""GPU facts seen from inside the platform, and the CUDA start-up the worker times apart.

- :func:`init_cuda` creates the CUDA context before the model is loaded (the first CUDA
  call of a process costs from a few hundred ms to seconds: driver load, context, memory
  pools) and returns how long that took; the worker stores it as ``timings["cuda_init_s"]``,
  so it is neither in the load time nor in any timed request.
- :func:`gpu_environment` is stored as ``environment["gpu"]`` of a GPU run: the device's
  name, memory and compute capability, the driver version and the CUDA versions (the
  driver's and the one torch was built with), and the memory in use at the end of the run
  (torch's allocated/reserved/peak, and ``nvidia-smi``'s used memory of the device when
  ``nvidia-smi`` is there).
- :func:`query_nvidia_smi` and the small parsers are shared with the host side
  (``deploybench.gpu``: doctor, install).

Only the standard library is imported here; torch is passed in (the worker has it loaded).
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

SMI_FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "memory.used")
PROC_DRIVER_VERSION = Path("/proc/driver/nvidia/version")
MIB = 2 ** 20


class CudaUnavailable(RuntimeError):
    """torch cannot use CUDA here; the message says why, in one line."""


@dataclass(frozen=True)
class SmiGpu:
    """One GPU as ``nvidia-smi --query-gpu`` reports it."""

    index: int
    name: str
    uuid: str
    driver_version: str
    memory_total_mib: int | None
    memory_used_mib: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SmiReport:
    """What ``nvidia-smi`` said: the GPUs, the driver's CUDA version, or why there is none."""

    gpus: tuple[SmiGpu, ...] = ()
    cuda_version: str | None = None  # the newest CUDA the driver supports ("12.4")
    problem: str | None = None  # None = nvidia-smi answered

    @property
    def driver_version(self) -> str | None:
        return self.gpus[0].driver_version if self.gpus else None


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_smi_csv(text: str) -> tuple[SmiGpu, ...]:
    """``--query-gpu=index,name,uuid,driver_version,memory.total,memory.used
    --format=csv,noheader,nounits`` output -> the GPUs."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(SMI_FIELDS) or not parts[0].isdigit():
            continue
        gpus.append(SmiGpu(int(parts[0]), parts[1], parts[2], parts[3], _int_or_none(parts[4]),
                           _int_or_none(parts[5])))
    return tuple(gpus)


def parse_smi_cuda_version(text: str) -> str | None:
    """The driver's CUDA version from ``nvidia-smi``'s banner (``CUDA Version: 12.4``)."""
    match = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", text)
    return match.group(1) if match else None


def query_nvidia_smi(run: Callable[..., Any] = subprocess.run,
                     which: Callable[[str], str | None] = shutil.which,
                     timeout_s: float = 15.0) -> SmiReport:
    """Ask ``nvidia-smi`` for the GPUs and the driver's CUDA version (never raises)."""
    smi = which("nvidia-smi")
    if smi is None:
        return SmiReport(problem="nvidia-smi not found: no NVIDIA driver is installed")
    try:
        listed = run([smi, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                     capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        return SmiReport(problem=f"nvidia-smi failed: {exc}")
    if listed.returncode != 0:
        last = (listed.stderr or listed.stdout or "").strip().splitlines()
        return SmiReport(problem=f"nvidia-smi failed: {last[-1] if last else f'exit status {listed.returncode}'}")
    gpus = parse_smi_csv(listed.stdout)
    if not gpus:
        return SmiReport(problem="nvidia-smi lists no GPU")
    try:
        banner = run([smi], capture_output=True, text=True, timeout=timeout_s).stdout
    except (OSError, subprocess.SubprocessError):
        banner = ""
    return SmiReport(gpus, parse_smi_cuda_version(banner or ""))


def parse_proc_driver_version(text: str) -> str | None:
    """The kernel module's version from ``/proc/driver/nvidia/version``."""
    match = re.search(r"Kernel Module(?: for \S+)?\s+([0-9]+(?:\.[0-9]+)+)", text)
    return match.group(1) if match else None


def proc_driver_version(path: Path = PROC_DRIVER_VERSION) -> str | None:
    try:
        return parse_proc_driver_version(path.read_text())
    except OSError:
        return None


PROC_GPUS = Path("/proc/driver/nvidia/gpus")


def proc_gpu_names(root: Path = PROC_GPUS) -> list[str]:
    """GPU models the kernel driver lists (``/proc/driver/nvidia/gpus/*/information``): the
    GPUs are known there even where ``nvidia-smi`` is not installed."""
    names = []
    try:
        folders = sorted(root.iterdir())
    except OSError:
        return names
    for folder in folders:
        try:
            text = (folder / "information").read_text()
        except OSError:
            continue
        match = re.search(r"^Model:\s*(.+?)\s*$", text, re.M)
        if match:
            names.append(match.group(1))
    return names


def format_cuda_version(number: int) -> str:
    """CUDA's integer version (12040) as text ("12.4")."""
    return f"{number // 1000}.{(number % 1000) // 10}"


def driver_cuda_version(load: Callable[[str], Any] = ctypes.CDLL) -> str | None:
    """The newest CUDA the installed driver supports, from ``libcuda``'s
    ``cuDriverGetVersion`` (works where ``nvidia-smi`` is not mounted, e.g. in a container)."""
    try:
        libcuda = load("libcuda.so.1")
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
        return format_cuda_version(version.value)
    except (OSError, AttributeError):
        return None


def cuda_unavailable_reason(torch: Any) -> str | None:
    """None when torch can use CUDA, else why not (one line)."""
    built = getattr(getattr(torch, "version", None), "cuda", None)
    if not built:
        return (f"torch {torch.__version__} is a CPU-only build: install the CUDA build "
                "(scripts/install.sh --gpu)")
    if not torch.cuda.is_available():
        smi = query_nvidia_smi()
        why = smi.problem or "the driver did not give torch a device"
        return f"torch {torch.__version__} (CUDA {built}) sees no GPU: {why}"
    return None


def init_cuda(torch: Any, device: str, clock: Callable[[], float] = time.perf_counter) -> float:
    """Create the CUDA context of ``device`` now, and return how long it took (seconds).

    The first allocation on a device creates its context; the synchronize waits until it is
    really there. Raises :class:`CudaUnavailable` (one line) when torch cannot use CUDA."""
    reason = cuda_unavailable_reason(torch)
    if reason:
        raise CudaUnavailable(reason)
    start = clock()
    torch.cuda.init()
    torch.empty(1, device=device)
    torch.cuda.synchronize(device)
    return clock() - start


def _device_index(torch: Any, device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index else int(torch.cuda.current_device())


def gpu_environment(torch: Any, device: str, smi: SmiReport | None = None) -> dict[str, Any]:
    """The GPU a run used and the memory in use on it now (call it after the run)."""
    index = _device_index(torch, device)
    props = torch.cuda.get_device_properties(index)
    smi = smi if smi is not None else query_nvidia_smi()
    smi_gpu = next((g for g in smi.gpus if g.index == index), None)
    driver = proc_driver_version() or smi.driver_version
    return {
        "device": device,
        "index": index,
        "name": torch.cuda.get_device_name(index),
        "capability": ".".join(str(v) for v in torch.cuda.get_device_capability(index)),
        "memory_total_mib": round(props.total_memory / MIB),
        "driver_version": driver,
        "driver_cuda_version": driver_cuda_version() or smi.cuda_version,
        "torch_cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "memory_allocated_mib": round(torch.cuda.memory_allocated(index) / MIB, 1),
        "memory_reserved_mib": round(torch.cuda.memory_reserved(index) / MIB, 1),
        "max_memory_allocated_mib": round(torch.cuda.max_memory_allocated(index) / MIB, 1),
        "smi_memory_used_mib": smi_gpu.memory_used_mib if smi_gpu else None,
        "smi_problem": smi.problem,
        "devices_visible": int(torch.cuda.device_count()),
    }


# -- the worker's two hooks (torch imported here, on GPU runs only) -------------------------
def start_cuda(device: str) -> float:
    """:func:`init_cuda` with the process's torch: seconds the CUDA context took."""
    import torch

    return init_cuda(torch, device)


def cuda_environment(device: str) -> dict[str, Any]:
    """:func:`gpu_environment` with the process's torch."""
    import torch

    return gpu_environment(torch, device)
