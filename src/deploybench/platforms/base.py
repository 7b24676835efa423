"""The platform seam: the Platform protocol, the PlatformSession it opens, and the values
that cross it.

A platform *launches* itself and a worker once (``open``: a cgroup and a process for BM,
a container for CN, a guest for VM/MVM/VMCN) and returns its session at once, still
starting; ``ready`` waits until the worker is warm (its app and model loaded). The two steps
are apart so that several sessions can start together, each loading while the others do
(``execute.run_block_set``), instead of one after the other. The session measures
*rounds* (``measure``: one LoadGen test in the warm worker, over the job channel), can be
paused so that it costs the host nothing while other sessions are measured (``pause`` /
``resume``), and is always closed (``close``, idempotent; sessions are context managers).
Everything a session launches is written to the sessions ledger first (``ledger.py``), so
that whatever outlives a dead owner is reaped by the next deploybench command.

Everything callers use is declared here; nothing outside ``platforms/`` probes a platform
with getattr/hasattr (``tests/unit/test_platform_contract.py`` checks every platform).
"""
from __future__ import annotations

import ctypes
import os
import signal
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

from ..scenario import Scenario
from ..worker.job import WorkerJob, WorkerResult

if TYPE_CHECKING:  # annotations only: platforms sit above the host facts
    from ..host import HostFacts
    from .cpu import IoLimits
    from .ledger import Ledger


class PlatformError(RuntimeError):
    """A platform that cannot run a scenario here; the message is one line for people."""


class LaunchError(PlatformError):
    """A launch that failed (the platform or the worker did not come up); one line, plus
    the console's tail for the record."""

    def __init__(self, message: str, console_tail: str = "", facts: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.console_tail = console_tail
        self.facts = facts or {}


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


def availability_check(platform: "Platform", host: "HostFacts", *,
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


@dataclass(frozen=True)
class PlatformOptions:
    """Settings a user may give platforms; each platform reads the ones it knows."""

    pin_cpus: tuple[int, ...] | None = None  # explicit cores for PIN scenarios
    runtime: str = "runc"  # OCI runtime for CN/VMCN
    engine: str | None = None  # docker | podman for CN, None = the runtime directly
    accel: str = "auto"  # VM accelerator: auto | kvm | tcg
    kernel: str | None = None  # guest kernel for VM/MVM
    initrd: str | None = None  # guest initramfs for VM/MVM
    #: read limits on the data device for the session (storage = throttled); only platforms
    #: whose ``supports_io_limits`` is True accept them
    io_limits: "IoLimits | None" = None


@dataclass(frozen=True)
class SessionSetup:
    """What a launch needs besides the scenario.

    ``prototype`` is the job whose app, data set, model size, backend, threads and device
    the worker loads at launch (its paths are filled in by the session); every round's job
    must agree with it on those. The session makes its folder under ``runs_root`` and
    writes what it launches to ``ledger``.
    """

    prototype: WorkerJob
    runs_root: Path
    ledger: "Ledger"
    launch_timeout_s: float = 900.0
    launch_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class LaunchFacts:
    """One launch, as the host saw it. ``details`` are the platform's own facts (cgroup,
    limits, container id, accelerator, vCPU map, boot times...); ``to_json`` flattens them."""

    launch_id: str
    platform: str
    channel: str  # "stdio" | "files": how jobs reach the worker
    launch_wall: float
    ready_wall: float | None = None  # the worker said ready (app and model loaded, warmed up)
    #: the host cores the scenario was given (PIN), None when they float (VNL)
    pinned_cpus: list[int] | None = None
    #: the sessions that started together with this one, itself included (1: alone)
    launched_with: int = 1
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def start_latency_s(self) -> float | None:
        """Launch to a warm worker: what one more launch costs."""
        return None if self.ready_wall is None else round(self.ready_wall - self.launch_wall, 4)

    def to_json(self) -> dict[str, Any]:
        return {**self.details, "platform": self.platform, "launch_id": self.launch_id,
                "channel": self.channel, "launch_wall": self.launch_wall,
                "ready_wall": self.ready_wall, "start_latency_s": self.start_latency_s,
                "pinned_cpus": self.pinned_cpus, "launched_with": self.launched_with}


@dataclass
class RunOutcome:
    """What a session reports for one round.

    status: ``ok`` (the worker succeeded), ``failed`` (it ran but failed, or died: the
    session is then over), ``timeout`` (killed at the deadline; the session is over) or
    ``interrupted`` (Ctrl-C; the session is over). ``host_facts`` are the launch's facts
    plus this round's (round number, cgroup cpu.stat over the round, ...).
    """

    status: str
    result: WorkerResult | None = None
    error: str | None = None
    host_facts: dict[str, Any] = field(default_factory=dict)
    console_tail: str = ""


class PlatformSession(Protocol):
    """One launched platform with a warm worker in it (see the module docstring)."""

    facts: LaunchFacts
    #: rounds measured so far in this launch
    rounds: int

    @property
    def alive(self) -> bool:
        """False once the worker or the platform is gone (a failed round ends a session)."""

    def ready(self, timeout_s: float) -> None:
        """Wait until the worker is warm, at most ``timeout_s`` after the launch began;
        raises LaunchError (one line) having closed the session. Once, before any round."""

    def measure(self, job: WorkerJob, timeout_s: float) -> RunOutcome:
        """One round: ``job`` (its paths are filled in here) in the warm worker."""

    def pause(self) -> None:
        """Stop the session so it costs the host nothing (freezer, QMP stop)."""

    def resume(self) -> None: ...

    def close(self) -> None:
        """End the session and remove all it made. Idempotent; always called."""

    def __enter__(self) -> "PlatformSession": ...

    def __exit__(self, *exc: Any) -> None: ...


class Platform(Protocol):
    name: ClassVar[str]
    #: whether ``PlatformOptions.io_limits`` (storage = throttled) can be applied
    supports_io_limits: ClassVar[bool]
    options: PlatformOptions

    def unavailable_reason(self, host: "HostFacts") -> str | None:
        """None when this platform can run here, else one line saying why not."""

    def scenario_problem(self, scenario: Scenario, host: "HostFacts") -> str | None:
        """Why this platform cannot run this scenario here (None = it can)."""

    def emulated(self, host: "HostFacts") -> bool:
        """Whether runs here are emulated (guests under TCG): not for overhead figures."""

    def doctor_checks(self, host: "HostFacts") -> list[Check]:
        """Its `deploybench doctor` lines: its own (``availability_check``) first, then
        what it depends on (runtimes, engines, KVM...)."""

    def open(self, scenario: Scenario, setup: SessionSetup) -> PlatformSession:
        """Launch the platform and its worker and return the session, still starting
        (``ready`` waits for it); raises LaunchError/PlatformError (one line) when it
        cannot, having removed whatever it had made."""


class PlatformBase:
    """Defaults that most platforms share (each may override)."""

    name: ClassVar[str] = ""
    supports_io_limits: ClassVar[bool] = False

    def __init__(self, options: PlatformOptions | None = None) -> None:
        self.options = options or PlatformOptions()

    def scenario_problem(self, scenario: Scenario, host: "HostFacts") -> str | None:
        from ..scenario import Processor

        if scenario.processor is Processor.GPU:
            from ..gpu import gpu_scenario_problem  # no GPU, or torch without CUDA

            return gpu_scenario_problem(host.gpus)
        return None

    def emulated(self, host: "HostFacts") -> bool:
        return False

    def doctor_checks(self, host: "HostFacts") -> list[Check]:
        return [availability_check(self, host)]

    def check_io_limits(self) -> None:
        if self.options.io_limits is not None and not self.supports_io_limits:
            raise PlatformError(f"storage=throttled: platform {self.name} cannot apply I/O limits "
                                "in this version")


# -- processes ------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def tail(path: Path, limit: int = 4000) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


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


def lifeline(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child die (SIGKILL) with this process (the thread
    that forks it, i.e. the owner), then runs ``then`` (e.g. joining a cgroup). The death
    signal survives ``exec``, so it covers the worker and QEMU from their first instruction."""
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the owner died between fork and prctl
            os._exit(1)
        if then is not None:
            then()

    return preexec


def worker_command(job_path: Path, *, channel: str = "stdio", channel_dir: Path | None = None,
                   python: str | None = None, die_with_parent: bool = True) -> list[str]:
    """How every platform starts the worker (inside itself)."""
    import sys

    cmd = [python or sys.executable, "-m", "deploybench.worker", "--serve", channel,
           "--job", str(job_path)]
    if channel_dir is not None:
        cmd += ["--channel-dir", str(channel_dir)]
    if die_with_parent:
        cmd.append("--die-with-parent")
    return cmd
