"""The Platform protocol and what every platform shares: launching the worker as a process
with a deadline, and the outcome it returns.

A platform launches ``python -m deploybench.worker --job JOB`` inside itself and returns
the worker's result plus host-side facts (start latency, cgroup cpu.stat, vCPU mapping,
accelerator). It always cleans up -- on success, failure, timeout and Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, Sequence

from ..scenario import Scenario
from ..host import HostFacts
from ..worker.job import SchemaError, WorkerJob, WorkerResult


class CheckStatus(str, Enum):
    """What a `deploybench doctor` line says about the thing checked."""

    OK = "ok"  # works here, natively
    EMULATED = "emulated"  # works, emulated (TCG): for function, not for overhead figures
    INFO = "info"  # not a problem: an optional tool missing, something not prepared yet
    NO = "no"  # does not work here; the detail says why and how to fix it


@dataclass(frozen=True)
class Check:
    """One line of `deploybench doctor`: what was checked, how it stands, and why.

    ``key`` is stable (``platform.VM``, ``runtime.runc``, ``engine.docker``, ``kvm``, ``gpu``,
    ``firecracker``...) for scripts reading ``doctor --json``; ``name`` is for people."""

    key: str
    name: str
    status: CheckStatus
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "status": self.status.value,
                "detail": self.detail}


def availability_check(platform: "Platform", host: HostFacts, *,
                       emulated: str | None = None) -> Check:
    """A platform's own doctor line: ``no`` with its unavailable reason, ``emulated`` with
    ``emulated`` (why) when it runs but emulated, else ``ok``."""
    name = platform.name
    reason = platform.unavailable_reason(host)
    if reason:
        return Check(f"platform.{name}", f"platform {name}", CheckStatus.NO, reason)
    if emulated:
        return Check(f"platform.{name}", f"platform {name}", CheckStatus.EMULATED,
                     f"emulated (TCG): works, not for overhead figures ({emulated})")
    return Check(f"platform.{name}", f"platform {name}", CheckStatus.OK, "available")


class PlatformError(RuntimeError):
    """A platform that cannot run a scenario here; the message is one line for people."""


@dataclass(frozen=True)
class PlatformOptions:
    """Settings a user may give platforms; each platform reads the ones it knows."""

    pin_cpus: tuple[int, ...] | None = None  # explicit cores for PIN scenarios
    runtime: str = "runc"  # OCI runtime for CN/VMCN
    engine: str | None = None  # docker | podman for CN, None = the runtime directly
    accel: str = "auto"  # VM accelerator: auto | kvm | tcg
    kernel: str | None = None  # guest kernel for VM/MVM
    initrd: str | None = None  # guest initramfs for VM/MVM
    #: read limits on the data device for the run (storage = throttled); platforms that can
    #: apply them say so with a class attribute ``supports_io_limits = True``
    io_limits: Any = None  # platforms.cpu.IoLimits | None


@dataclass
class RunOutcome:
    """What a platform reports for one run.

    status: ``ok`` (the worker succeeded), ``failed`` (it ran but failed or gave no result),
    ``timeout`` (killed at the deadline) or ``interrupted`` (Ctrl-C).
    """

    status: str
    result: WorkerResult | None = None
    error: str | None = None
    host_facts: dict[str, Any] = field(default_factory=dict)
    console_tail: str = ""


class Platform(Protocol):
    name: ClassVar[str]

    def unavailable_reason(self, host: HostFacts) -> str | None:
        """None when this platform can run here, else one line saying why not."""

    def scenario_problem(self, scenario: Scenario, host: HostFacts) -> str | None:
        """None when this platform can run this scenario here, else why not (one line)."""

    def doctor_checks(self, host: HostFacts) -> list[Check]:
        """Its `deploybench doctor` lines: its own (``availability_check``) first, then
        what it depends on (runtimes, engines, KVM...)."""

    def run(self, scenario: Scenario, job: WorkerJob, timeout_s: float) -> RunOutcome:
        """Run ``job`` inside the platform as ``scenario`` says; always clean up."""


def tail(path: Path, limit: int = 4000) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace")


def worker_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker starts with: thread pools sized to the budget from the
    first instruction (the worker sets them again, for platforms that drop the env)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env[name] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class ProcessRun:
    returncode: int | None  # None when killed at the deadline
    timed_out: bool
    interrupted: bool
    launch_wall: float
    end_wall: float


def run_process(cmd: Sequence[str], *, env: dict[str, str], timeout_s: float,
                stdout: Path, stderr: Path, preexec_fn: Callable[[], None] | None = None,
                kill: Callable[[subprocess.Popen], None] | None = None) -> ProcessRun:
    """Run ``cmd`` in its own session with a deadline; kill it (and its group) on timeout or
    Ctrl-C. ``kill`` may add platform-specific killing (e.g. a whole cgroup)."""
    launch = time.time()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, preexec_fn=preexec_fn,
                                start_new_session=True)
        timed_out = interrupted = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if kill is not None:
                    kill(proc)
                proc.wait()
    return ProcessRun(None if (timed_out or interrupted) else proc.returncode, timed_out,
                      interrupted, launch, time.time())


def read_result(job: WorkerJob) -> tuple[WorkerResult | None, str | None]:
    path = Path(job.result_path)
    if not path.exists():
        return None, "the worker wrote no result"
    try:
        return WorkerResult.read(path), None
    except (ValueError, SchemaError, OSError) as exc:
        return None, f"unreadable worker result: {exc}"


def outcome_from(proc: ProcessRun, job: WorkerJob, stderr_path: Path,
                 host_facts: dict[str, Any], timeout_s: float) -> RunOutcome:
    """Turn a finished process into an outcome, whatever state it ended in."""
    result, problem = read_result(job)
    console = tail(stderr_path)
    host_facts = dict(host_facts)
    host_facts["launch_wall"] = proc.launch_wall
    host_facts["end_wall"] = proc.end_wall
    if result is not None and "first_query_wall" in result.timings:
        host_facts["start_latency_s"] = round(result.timings["first_query_wall"] - proc.launch_wall, 4)
    if result is not None and "worker_end_wall" in result.timings:
        host_facts["stop_latency_s"] = round(proc.end_wall - result.timings["worker_end_wall"], 4)
    if proc.interrupted:
        return RunOutcome("interrupted", result, "interrupted (Ctrl-C)", host_facts, console)
    if proc.timed_out:
        return RunOutcome("timeout", result, f"killed after the {timeout_s:g} s timeout",
                          host_facts, console)
    if result is None:
        last = console.strip().splitlines()[-1] if console.strip() else ""
        return RunOutcome("failed", None, f"{problem} (exit status {proc.returncode}){': ' + last if last else ''}",
                          host_facts, console)
    if result.status != "ok":
        return RunOutcome("failed", result, result.error or "the worker failed", host_facts, console)
    return RunOutcome("ok", result, None, host_facts, console)
