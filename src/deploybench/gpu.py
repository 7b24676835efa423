"""GPUs on the host: what `doctor` says about them, whether a GPU scenario can run here, and
which CUDA build of torch `scripts/install.sh --gpu` installs.

DESIGN:
- Nothing here imports torch. The installed torch's build is read from its
  ``torch/version.py`` (found with ``importlib.util.find_spec``, which does not import the
  package), and whether torch really sees a GPU is asked of a child interpreter, only on a
  host where ``nvidia-smi`` lists one (so a CPU host's doctor stays fast).
- The CUDA wheel variant follows the driver: ``nvidia-smi`` prints the newest CUDA the
  driver supports, and the newest published variant not newer than that is chosen (a CUDA
  runtime newer than the driver does not load). The variants are those PyTorch publishes
  for its recent releases (2.9 to 2.11 had cu126, cu128 and cu130);
  ``DEPLOYBENCH_TORCH_CUDA=cuXYZ`` overrides the choice, ``DEPLOYBENCH_TORCH_INDEX=URL``
  the index. ``python -m deploybench.gpu torch-wheel`` prints the choice (install.sh uses it
  before anything but pip is installed: standard library only at import time).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .worker.gpu import (SmiReport, driver_cuda_version, proc_driver_version, proc_gpu_names,
                         query_nvidia_smi)

#: the torch release scripts/install.sh installs (the CPU build by default)
TORCH_VERSION = "2.13.0"
#: CUDA builds of torch, oldest first: (wheel variant, CUDA version it needs from the driver)
CUDA_VARIANTS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("cu126", (12, 6)), ("cu128", (12, 8)), ("cu130", (13, 0)))
TORCH_INDEX = "https://download.pytorch.org/whl/{variant}"
INSTALL_HINT = "scripts/install.sh --gpu installs the CUDA build on a host with an NVIDIA driver"


@dataclass(frozen=True)
class TorchBuild:
    """The installed torch, read from its version file without importing it."""

    version: str | None  # None = torch is not installed
    cuda: str | None  # the CUDA version it was built with; None = a CPU build

    @property
    def describe(self) -> str:
        if self.version is None:
            return "torch is not installed"
        return f"torch {self.version} ({'CUDA ' + self.cuda if self.cuda else 'CPU-only build'})"


def parse_torch_version_file(text: str) -> TorchBuild:
    """``torch/version.py`` -> its ``__version__`` and ``cuda`` values."""
    version = re.search(r"^__version__\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return TorchBuild(version.group(1) if version else "unknown", cuda.group(1) if cuda else None)


def torch_build(find_spec: Callable[[str], Any] = importlib.util.find_spec) -> TorchBuild:
    try:
        spec = find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return TorchBuild(None, None)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "version.py"
        if path.is_file():
            return parse_torch_version_file(path.read_text(errors="replace"))
    return TorchBuild("unknown", None)


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


@dataclass(frozen=True)
class WheelChoice:
    """What install.sh --gpu installs, or why it keeps the CPU build."""

    variant: str | None
    requirement: str | None  # e.g. torch==2.13.0+cu128
    index_url: str | None
    reason: str  # why this choice (one line)


def choose_torch_wheel(driver_cuda: str | None, *, problem: str | None = None,
                       env: dict[str, str] | None = None,
                       torch_version: str = TORCH_VERSION) -> WheelChoice:
    """The CUDA wheel variant for a driver that supports CUDA ``driver_cuda`` ("12.4")."""
    env = dict(os.environ if env is None else env)
    forced = env.get("DEPLOYBENCH_TORCH_CUDA")
    known = dict(CUDA_VARIANTS)
    if problem:  # no driver: never a CUDA build, whatever is forced
        return WheelChoice(None, None, None, f"{problem}: keeping the CPU build of torch")
    if forced:
        if forced not in known:
            return WheelChoice(None, None, None, f"DEPLOYBENCH_TORCH_CUDA={forced} is not one of "
                               f"{', '.join(known)}: keeping the CPU build")
        variant, why = forced, f"DEPLOYBENCH_TORCH_CUDA={forced}"
    elif not driver_cuda:
        return WheelChoice(None, None, None, "nvidia-smi did not say which CUDA version the driver "
                           "supports: set DEPLOYBENCH_TORCH_CUDA=cu126|cu128|cu130; keeping the CPU build")
    else:
        have = _version_tuple(driver_cuda)
        fitting = [name for name, needs in CUDA_VARIANTS if needs <= have]
        if not fitting:
            oldest, needs = CUDA_VARIANTS[0]
            return WheelChoice(None, None, None, f"the driver supports CUDA {driver_cuda}, torch "
                               f"{torch_version}'s oldest CUDA build ({oldest}) needs "
                               f"{needs[0]}.{needs[1]}: update the NVIDIA driver; keeping the CPU build")
        variant = fitting[-1]
        why = f"the driver supports CUDA {driver_cuda}: the newest build not newer than it"
    index = env.get("DEPLOYBENCH_TORCH_INDEX") or TORCH_INDEX.format(variant=variant)
    return WheelChoice(variant, f"torch=={torch_version}+{variant}", index, why)


# -- does torch see the GPU? (a child interpreter: the doctor process never imports torch) --
_PROBE = ("import json, torch; ok = torch.cuda.is_available(); "
          "print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, 'ok': ok, "
          "'count': torch.cuda.device_count() if ok else 0, "
          "'name': torch.cuda.get_device_name(0) if ok else None}))")


@dataclass(frozen=True)
class TorchCuda:
    sees_gpu: bool
    detail: str


def probe_torch_cuda(python: str = sys.executable, timeout_s: float = 120.0,
                     run: Callable[..., Any] = subprocess.run) -> TorchCuda:
    try:
        out = run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return TorchCuda(False, f"importing torch and asking for CUDA took over {timeout_s:g} s")
    except OSError as exc:
        return TorchCuda(False, f"cannot start {python}: {exc}")
    lines = (out.stdout or "").strip().splitlines()
    if out.returncode != 0 or not lines:
        err = (out.stderr or "").strip().splitlines()
        return TorchCuda(False, f"torch fails to import: {err[-1] if err else out.returncode}")
    info = json.loads(lines[-1])
    if not info["ok"]:
        return TorchCuda(False, f"torch {info['version']} (CUDA {info['cuda']}) sees no GPU")
    return TorchCuda(True, f"torch {info['version']} (CUDA {info['cuda']}) sees {info['count']} "
                           f"GPU(s): {info['name']}")


def gpu_scenario_problem(gpus: list[str], build: TorchBuild | None = None) -> str | None:
    """Why a .../GPU scenario cannot run on this host (None = it can)."""
    if not gpus:
        return "no GPU on this host (nvidia-smi lists none): use .../CPU"
    build = build or torch_build()
    if build.version is not None and build.cuda is None:
        return f"{build.describe}: {INSTALL_HINT}"
    return None


def gpu_checks(smi: SmiReport | None = None, build: TorchBuild | None = None,
               probe: Callable[[], TorchCuda] = probe_torch_cuda,
               proc_names: Callable[[], list[str]] = proc_gpu_names) -> list[Any]:
    """`doctor`'s GPU lines: the GPUs, the driver and its CUDA, whether torch sees CUDA."""
    from .platforms.base import Check, CheckStatus

    def line(key: str, works: bool, detail: str, *, optional: bool = False) -> Check:
        status = CheckStatus.OK if works else (CheckStatus.INFO if optional else CheckStatus.NO)
        return Check(key, key.replace("_", " "), status, detail)

    smi = smi if smi is not None else query_nvidia_smi()
    build = build if build is not None else torch_build()
    driver_gpus = proc_names() if smi.problem else []
    if smi.problem and driver_gpus:  # a driver without nvidia-smi
        driver = proc_driver_version()
        checks = [line("gpu", True, f"{', '.join(driver_gpus)} (from /proc/driver/nvidia; {smi.problem})"),
                  line("gpu_driver", driver is not None,
                       f"driver {driver}, CUDA {driver_cuda_version() or 'version unknown'}"
                       if driver else "no driver version in /proc/driver/nvidia/version")]
    elif smi.problem:
        checks = [line("gpu", False, f"none found ({smi.problem}): GPU scenarios are unavailable"),
                  line("gpu_driver", False, smi.problem, optional=True)]
    else:
        names = ", ".join(f"{g.index}: {g.name} ({g.memory_total_mib} MiB, {g.memory_used_mib} MiB used)"
                          for g in smi.gpus)
        checks = [line("gpu", True, names),
                  line("gpu_driver", True, f"driver {smi.driver_version}, CUDA "
                       f"{smi.cuda_version or 'version not shown by nvidia-smi'}")]
    no_gpu = bool(smi.problem and not driver_gpus)
    if build.version is None:
        checks.append(line("torch_cuda", False, "torch is not installed: run scripts/install.sh"))
    elif build.cuda is None:
        checks.append(line("torch_cuda", False, f"{build.describe}: {INSTALL_HINT}", optional=no_gpu))
    elif no_gpu:
        checks.append(line("torch_cuda", False, f"{build.describe}, but there is no GPU here", optional=True))
    else:
        seen = probe()
        checks.append(line("torch_cuda", seen.sees_gpu, seen.detail))
    return checks


def main(argv: list[str] | None = None) -> int:
    """``python -m deploybench.gpu torch-wheel``: print ``REQUIREMENT INDEX_URL`` (exit 0) or
    the reason the CPU build stays (one line on stderr, exit 1)."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["torch-wheel"]:
        print("usage: python -m deploybench.gpu torch-wheel", file=sys.stderr)
        return 2
    smi = query_nvidia_smi()
    choice = choose_torch_wheel(smi.cuda_version, problem=smi.problem)
    if choice.requirement is None:
        print(choice.reason, file=sys.stderr)
        return 1
    print(f"{choice.requirement} {choice.index_url} {choice.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
