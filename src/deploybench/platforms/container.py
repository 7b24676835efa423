"""Containers (CN): the worker in a real container, launched through an OCI runtime (runc by
default, crun) or an engine (Docker through its Python SDK, Podman through its CLI).

``CN/N/VNL``: the runtime's own CFS quota of N cores over all usable cores (what
``docker run --cpus N`` does); ``CN/N/PIN``: its cpuset of N chosen cores
(``--cpuset-cpus``). The container has its own PID, mount, IPC, UTS, network (only ``lo``)
and cgroup namespaces, a read-only root built by the project (:mod:`.oci`), no new
privileges and no capabilities; the one writable directory is the run's result folder.

DESIGN: the OCI path is ``create`` / ``start`` / wait / ``delete`` rather than one ``run``,
so create, start and delete latencies are measured separately, and the container's
``cpu.stat`` is read from the host after the worker exited but before ``delete`` removes
the cgroup. While a container runs, this process is a *child subreaper*
(``PR_SET_CHILD_SUBREAPER``, as containerd's shim and conmon are): the container's init,
orphaned when ``runtime create`` returns, becomes our child, so we wait for it exactly
(pidfd) and get its exit status. Kill and delete happen in ``finally`` -- after success,
failure, timeout and Ctrl-C -- followed by a sweep for the container's cgroup directories
and the removal of its bundle.

crun 1.8 refuses a hybrid cgroup layout (v1 plus ``/sys/fs/cgroup/unified``); it runs
inside a private mount namespace (``unshare -m``) where the unified mount is detached.
"""
from __future__ import annotations

import ctypes
import functools
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from ..scenario import CpuMode, Processor, Scenario
from ..host import HostFacts
from ..worker.job import WorkerJob
from .base import Check, PlatformError, PlatformOptions, ProcessRun, RunOutcome, outcome_from, tail, worker_env
from .baremetal import gpu_reason, worker_command
from ..host import CGROUP_ROOT, PREFIX
from .cpu import CgroupError, CpuLimits, RunCgroup, limits_for
from .oci import (CONTAINER_PATH, BindMount, host_mems, plan_mounts, python_dirs,
                  remove_bundle, write_bundle)

RUNTIMES = ("runc", "crun")
ENGINES = ("docker", "podman")
CONTROL_TIMEOUT_S = 60.0  # one runtime command (create, start, kill, delete)


# -- small host helpers ---------------------------------------------------------------------
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0)


@contextmanager
def child_subreaper() -> Iterator[bool]:
    """Adopt orphaned descendants (the container's init) while inside; yields whether it
    worked (it needs Linux >= 3.4)."""
    previous = ctypes.c_int(0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0)
        ok = _prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0
    except (OSError, AttributeError):
        ok = False
    try:
        yield ok
    finally:
        if ok and not previous.value:
            _prctl(_PR_SET_CHILD_SUBREAPER, 0)


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Clean-up must not be cut short by a second Ctrl-C: hold SIGINT until it is done."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def wait_pid(pid: int, deadline: float, tick: Callable[[], None] | None = None,
             tick_s: float = 0.25) -> tuple[bool, int | None]:
    """Wait until ``pid`` exits or the monotonic ``deadline`` passes.

    Returns (exited, exit status); the status is known only when ``pid`` is our child
    (or adopted one). ``tick`` runs every ``tick_s`` while waiting (cgroup sampling).
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True, _reap(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, None
            step = min(remaining, tick_s) if tick else remaining
            if poller.poll(max(1, int(step * 1000))):
                return True, _reap(pid)
            if tick:
                tick()
    finally:
        os.close(fd)


def _reap(pid: int, block: bool = True) -> int | None:
    try:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if got else None


def cgroup_of(pid: int, limits: CpuLimits, root: Path = CGROUP_ROOT) -> RunCgroup | None:
    """The cgroup a (runtime-created) process lives in, as a RunCgroup whose ``stat()``
    reads its cpu.stat and CPU usage from the host. v1 controllers win on a hybrid host."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    dirs: dict[str, Path] = {}
    unified: Path | None = None
    for line in text.splitlines():
        hid, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if hid == "0" and controllers == "":
            base = root / "unified" if (root / "unified").is_dir() else root
            unified = base / rel
            continue
        for controller in ("cpu", "cpuset", "cpuacct"):
            if controller in controllers.split(","):
                dirs[controller] = root / controllers / rel
    if "cpu" in dirs:
        return RunCgroup(1, dirs, limits)
    if unified is not None:
        return RunCgroup(2, {"unified": unified}, limits)
    return None


def remove_cgroup_dirs(name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Remove every cgroup directory called ``name`` (with its empty children) in every
    hierarchy: what a runtime or engine may leave when a run is killed. Returns what was
    removed; a group that still holds processes is left (and stays in ``leftovers()``)."""
    removed: list[Path] = []
    if not name.startswith(PREFIX) or "/" in name.strip("/"):
        raise ValueError(f"refusing to remove cgroup {name!r}")
    name = name.strip("/")
    try:
        hierarchies = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return removed
    hierarchies.append(root)
    for hierarchy in hierarchies:
        top = hierarchy / name
        if not top.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(top, topdown=False):
            for d in dirnames:
                try:
                    (Path(dirpath) / d).rmdir()
                except OSError:
                    pass
        try:
            top.rmdir()
            removed.append(top)
        except OSError:
            pass
    return removed


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run, whatever launches it."""

    container_id: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[BindMount]
    limits: CpuLimits
    stdout: Path
    stderr: Path
    gpu: Any = None  # a platforms.gpu.GpuPassthrough for CN/N/MODE/GPU, else None

    @property
    def cgroup_name(self) -> str:
        return self.container_id


@dataclass
class Launch:
    """What a backend reports: the process facts and the host-side facts."""

    proc: ProcessRun
    facts: dict[str, Any]
    error: str | None = None  # the runtime/engine itself failed (not the worker)


# -- OCI runtimes --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    return first.split()[-1] if first else None


def _hybrid_cgroups(root: Path = CGROUP_ROOT) -> bool:
    return (root / "unified" / "cgroup.controllers").exists() and (root / "cpu").is_dir()


class OciRuntime:
    """runc or crun, driven through its command line."""

    def __init__(self, name: str) -> None:
        if name not in RUNTIMES:
            raise PlatformError(f"unknown OCI runtime {name!r}: use one of {', '.join(RUNTIMES)}")
        self.name = name
        self.binary = shutil.which(name)

    def version(self) -> str | None:
        return _version(self.binary) if self.binary else None

    def problem(self) -> str | None:
        if self.binary is None:
            return f"{self.name} is not installed (apt-get install {self.name}; scripts/install.sh does)"
        if self.name == "crun" and _hybrid_cgroups() and shutil.which("unshare") is None:
            return "crun refuses hybrid cgroups and unshare(1) is missing to hide the unified mount"
        return None

    def command(self, *args: str) -> list[str]:
        assert self.binary is not None
        cmd = [self.binary, *args]
        if self.name == "crun" and _hybrid_cgroups():
            # crun 1.8 refuses v1 + unified; a private mount namespace without the unified
            # mount shows it a plain v1 host (the container is created from this namespace).
            script = 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"'
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *cmd]
        return cmd

    def _control(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=CONTROL_TIMEOUT_S, start_new_session=True)

    def container_ids(self) -> list[str]:
        """Containers this runtime knows (any state)."""
        if self.binary is None:
            return []
        out = self._control("list", "-q")
        return out.stdout.split() if out.returncode == 0 else []

    def launch(self, spec: ContainerSpec, timeout_s: float) -> Launch:
        cid = spec.container_id
        facts: dict[str, Any] = {"runtime": self.name, "runtime_version": self.version(),
                                 "container_id": cid, "cgroups_path": f"/{spec.cgroup_name}"}
        bundle = None
        created = False
        pid: int | None = None
        cgroup: RunCgroup | None = None
        exited, status, timed_out, interrupted, error = False, None, False, False, None
        launch_wall = time.time()
        with child_subreaper() as adopting:
            try:
                bundle = write_bundle(cid, dict(
                    args=spec.args, env=spec.env, cwd=spec.cwd, hostname=cid,
                    limits=spec.limits, cgroups_path=f"/{spec.cgroup_name}", mems=host_mems(),
                    gpu=spec.gpu),
                    spec.mounts)
                facts["bundle"] = str(bundle.path)
                deadline = time.monotonic() + timeout_s
                t = time.perf_counter()
                with open(spec.stdout, "ab") as out, open(spec.stderr, "ab") as err:
                    # The container's stdio are the ones `create` gets.
                    created_proc = subprocess.run(
                        self.command("create", "--bundle", str(bundle.path), "--pid-file",
                                     str(bundle.path / "init.pid"), cid),
                        stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                        timeout=CONTROL_TIMEOUT_S, start_new_session=True)
                facts["create_s"] = round(time.perf_counter() - t, 4)
                created = True  # even a failed create may leave state behind: delete it
                if created_proc.returncode != 0:
                    raise PlatformError(f"{self.name} create failed: {_last_line(tail(spec.stderr))}")
                pid = int((bundle.path / "init.pid").read_text().strip())
                cgroup = cgroup_of(pid, spec.limits)
                if cgroup is not None:
                    facts["cgroup"] = str(cgroup.dirs.get("cpu") or next(iter(cgroup.dirs.values())))
                    facts["cgroup_version"] = cgroup.version
                t = time.perf_counter()
                started = self._control("start", cid)
                facts["start_s"] = round(time.perf_counter() - t, 4)
                if started.returncode != 0:
                    raise PlatformError(f"{self.name} start failed: {_last_line(started.stderr)}")
                exited, status = wait_pid(pid, deadline)
                timed_out = not exited
            except KeyboardInterrupt:
                interrupted = True
            except (PlatformError, OSError, ValueError, subprocess.SubprocessError) as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            finally:
                end_wall = time.time()
                with sigint_deferred():
                    if cgroup is not None:
                        facts["cpu_stat"] = cgroup.stat()
                    if created:
                        self._control("kill", cid, "KILL")
                        if pid is not None and adopting and not exited:
                            _reap(pid)  # it was killed: collect the zombie
                        t = time.perf_counter()
                        deleted = self._control("delete", "--force", cid)
                        facts["delete_s"] = round(time.perf_counter() - t, 4)
                        if deleted.returncode != 0 and cid in self.container_ids():
                            error = error or f"{self.name} delete failed: {_last_line(deleted.stderr)}"
                    swept = remove_cgroup_dirs(spec.cgroup_name)
                    if swept:
                        facts["cgroups_swept"] = [str(p) for p in swept]
                    if bundle is not None:
                        remove_bundle(bundle.path)
        proc = ProcessRun(status if exited else None, timed_out, interrupted, launch_wall, end_wall)
        return Launch(proc, facts, error)

    def probe(self) -> str | None:
        """Run ``true`` in a real container; None when it worked, else why not."""
        problem = self.problem()
        if problem:
            return problem
        with tempfile.TemporaryDirectory(prefix="deploybench-probe-") as tmp:
            tmp_path = Path(tmp)
            tmp_path.chmod(0o777)
            cid = f"{PREFIX}probe-{uuid.uuid4().hex[:8]}"
            spec = ContainerSpec(cid, ["/bin/true"], {"PATH": CONTAINER_PATH}, tmp,
                                 plan_mounts([], tmp), limits_for(1, True), tmp_path / "out",
                                 tmp_path / "err")
            launched = self.launch(spec, 30.0)
            if launched.error:
                return launched.error
            if launched.proc.returncode != 0:
                return f"a test container exited with status {launched.proc.returncode}: {_last_line(tail(tmp_path / 'err'))}"
        return None


# -- the platform --------------------------------------------------------------------------
def container_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment inside a container: a clean base plus exactly what
    :func:`worker_env` adds for the thread budget (not the host's whole environment)."""
    env = {"PATH": CONTAINER_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "container": "deploybench"}
    env.update({k: v for k, v in worker_env(threads).items() if os.environ.get(k) != v})
    env.update(extra or {})
    return env


class Container:
    name: ClassVar[str] = "CN"

    def __init__(self, options: PlatformOptions | None = None, *,
                 extra_env: dict[str, str] | None = None,
                 extra_mounts: tuple[str, ...] = ()) -> None:
        """``extra_env`` / ``extra_mounts`` (read-only host dirs) let a user's app or a test
        bring its own code into the container."""
        self.options = options or PlatformOptions()
        self.extra_env = dict(extra_env or {})
        self.extra_mounts = tuple(extra_mounts)
        if self.options.engine is not None and self.options.engine not in ENGINES:
            raise PlatformError(f"unknown container engine {self.options.engine!r}: use one of "
                                f"{', '.join(ENGINES)} (or none for the runtime directly)")
        if self.options.runtime not in RUNTIMES:
            raise PlatformError(f"unknown OCI runtime {self.options.runtime!r}: use one of {', '.join(RUNTIMES)}")

    def backend(self) -> Any:
        if self.options.engine is None:
            return OciRuntime(self.options.runtime)
        from .engines import create_engine

        return create_engine(self.options.engine, self.options.runtime)

    def unavailable_reason(self, host: HostFacts) -> str | None:
        if host.cgroup_problem:
            return host.cgroup_problem
        return self.backend().problem()

    def scenario_problem(self, scenario: Scenario, host: HostFacts) -> str | None:
        return gpu_reason(scenario, host)

    def spec_for(self, scenario: Scenario, job: WorkerJob) -> ContainerSpec:
        run_dir = Path(job.result_path).parent
        try:
            limits = limits_for(scenario.cores, scenario.cpu_mode is CpuMode.PIN,
                                list(self.options.pin_cpus or ()))
        except CgroupError as exc:
            raise PlatformError(str(exc)) from None
        read_only = [*python_dirs(), job.data_dir, *self.extra_mounts]
        gpu = None
        if scenario.processor is Processor.GPU:  # device nodes + the driver's libraries
            from .gpu import nvidia_passthrough

            gpu = nvidia_passthrough()
            if gpu.problem:
                raise PlatformError(f"no GPU for the container: {gpu.problem}")
            read_only += gpu.library_dirs()
        if job.log_dir and not Path(job.log_dir).resolve().is_relative_to(run_dir.resolve()):
            raise PlatformError(f"the LoadGen log folder {job.log_dir} must be inside the run folder {run_dir}")
        return ContainerSpec(
            container_id=f"{PREFIX}{uuid.uuid4().hex[:12]}",
            args=worker_command(run_dir / "job.json"),
            env=container_env(job.threads, self.extra_env),
            cwd=str(run_dir.resolve()),
            mounts=plan_mounts(read_only, str(run_dir)),
            limits=limits,
            stdout=run_dir / "stdout.txt",
            stderr=run_dir / "stderr.txt",
            gpu=gpu,
        )

    def run(self, scenario: Scenario, job: WorkerJob, timeout_s: float) -> RunOutcome:
        spec = self.spec_for(scenario, job)
        run_dir = Path(job.result_path).parent
        job.write(run_dir / "job.json")
        backend = self.backend()
        problem = backend.problem()
        if problem:
            raise PlatformError(problem)
        launched = backend.launch(spec, timeout_s)
        facts = {"platform": self.name, "limits": spec.limits.to_json(),
                 "engine": self.options.engine, **launched.facts}
        outcome = outcome_from(launched.proc, job, spec.stderr, facts, timeout_s)
        if launched.error and outcome.status == "ok":
            outcome.status, outcome.error = "failed", launched.error
        elif launched.error and outcome.status == "failed" and outcome.result is None:
            outcome.error = launched.error
        return outcome

    def doctor_checks(self) -> list[Check]:
        """Which runtimes and engines work here, and why not."""
        checks = []
        for name in RUNTIMES:
            runtime = OciRuntime(name)
            t = time.perf_counter()
            problem = runtime.probe()
            detail = problem or (f"{name} {runtime.version()}: ran a test container in "
                                 f"{time.perf_counter() - t:.2f} s (--runtime {name})")
            checks.append(Check(f"runtime {name}", problem is None, detail))
        from .engines import create_engine

        for name in ENGINES:
            engine = create_engine(name, "runc")
            problem = engine.problem()
            checks.append(Check(f"engine {name}", problem is None,
                                problem or f"{engine.describe()} (--engine {name})"))
        return checks
