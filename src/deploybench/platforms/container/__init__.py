"""Containers (CN): the warm worker in a real container, launched through an OCI runtime (runc
by default, crun) or an engine (Docker, Podman), all by one template (``launchers.py``).

``CN/N/VNL``: the launcher's own CFS quota of N cores over all usable cores (what
``docker run --cpus N`` does); ``CN/N/PIN``: its cpuset of N chosen cores
(``--cpuset-cpus``). The container has its own PID, mount, IPC, UTS, network (only ``lo``)
and cgroup namespaces, a read-only root built by the project (``oci.py``), no new
privileges and no capabilities; the one writable directory is the session folder.

A session is one container whose stdin/stdout are the worker's job channel. ``pause``
freezes it (``runc pause``, ``docker pause``...); each round's cpu.stat delta is read from
the container's cgroup on the host. When the owner dies the worker dies too: it is our
adopted child (we are a child subreaper) and sets ``PR_SET_PDEATHSIG``, and its stdin reaches
end-of-file (engines: their attach client dies with us). Closing kills and deletes the
container, sweeps its cgroup directories and removes its bundle, whatever happened.

Its footprint (``runtime_parts``): the worker, the per-container processes beside it
(conmon, the containerd shim, the engine's attach client) and the engine's shared daemons.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from ...footprint import CLIENT, ENGINE, SHIM, WORKER, FootprintPart
from ...host import CGROUP_ROOT, PREFIX
from ...scenario import CpuMode, Processor, Scenario
from ...worker.channel import StreamChannel
from ...worker.job import WorkerJob
from ..base import (Check, CheckStatus, LaunchFacts, PlatformBase, PlatformError, PlatformOptions,
                    SessionSetup, availability_check, worker_command, worker_env)
from ..cpu import CgroupError, CpuLimits, RunCgroup, limits_for, stat_delta
from .. import procfs
from ..ledger import remove_cgroup_tree
from ..session import WorkerSession, session_folder
from .launchers import (ENGINES, RUNTIMES, Attached, ContainerSpec, Launcher, OciRuntime, EngineCli,
                        create_launcher, reap_child)
from .oci import CONTAINER_PATH, plan_mounts, python_dirs


def container_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment inside a container: a clean base plus exactly what
    :func:`worker_env` adds for the thread budget (not the host's whole environment)."""
    env = {"PATH": CONTAINER_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "container": "deploybench"}
    env.update({k: v for k, v in worker_env(threads).items() if os.environ.get(k) != v})
    env.update(extra or {})
    return env


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
        for controller in ("cpu", "cpuset", "cpuacct", "blkio"):
            if controller in controllers.split(","):
                dirs[controller] = root / controllers / rel
    if "cpu" in dirs:
        return RunCgroup(1, dirs, limits)
    if unified is not None:
        return RunCgroup(2, {"unified": unified}, limits)
    return None


def cgroup_dirs_named(name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """``<hierarchy>/<name>`` in every cgroup hierarchy (where a runtime or an engine puts a
    container's cgroup, or its parent)."""
    if not name.startswith(PREFIX) or "/" in name.strip("/"):
        raise ValueError(f"refusing cgroup name {name!r}")
    try:
        hierarchies = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        hierarchies = []
    return [h / name for h in [root, *hierarchies]]


def remove_cgroup_dirs(name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Remove every cgroup directory called ``name`` (with its children) in every
    hierarchy: what a runtime or engine may leave behind. Returns what was removed."""
    removed = []
    for path in cgroup_dirs_named(name, root):
        if path.is_dir() and remove_cgroup_tree(path):
            removed.append(path)
    return removed


class Container(PlatformBase):
    name: ClassVar[str] = "CN"

    def __init__(self, options=None, *, extra_env: dict[str, str] | None = None,
                 extra_mounts: tuple[str, ...] = ()) -> None:
        """``extra_env`` / ``extra_mounts`` (read-only host dirs) let a user's app or a test
        bring its own code into the container."""
        super().__init__(options)
        self.extra_env = dict(extra_env or {})
        self.extra_mounts = tuple(extra_mounts)
        if self.options.engine is not None and self.options.engine not in ENGINES:
            raise PlatformError(f"unknown container engine {self.options.engine!r}: use one of "
                                f"{', '.join(ENGINES)} (or none for the runtime directly)")
        if self.options.runtime not in RUNTIMES:
            raise PlatformError(f"unknown OCI runtime {self.options.runtime!r}: use one of {', '.join(RUNTIMES)}")

    def launcher(self) -> Launcher:
        return create_launcher(self.options.runtime, self.options.engine)

    def unavailable_reason(self, host) -> str | None:
        if host.cgroup_problem:
            return host.cgroup_problem
        return self.launcher().problem()

    def spec_for(self, scenario: Scenario, prototype: WorkerJob, folder: Path, *,
                 channel: str = "stdio", limits: CpuLimits | None = None) -> ContainerSpec:
        """The container a session of ``scenario`` runs (also VMCN's, inside its guest)."""
        if limits is None:
            try:
                limits = limits_for(scenario.cores, scenario.cpu_mode is CpuMode.PIN,
                                    list(self.options.pin_cpus or ()))
            except CgroupError as exc:
                raise PlatformError(str(exc)) from None
        read_only = [*python_dirs(), prototype.data_dir, *self.extra_mounts]
        gpu = None
        if scenario.processor is Processor.GPU:  # device nodes + the driver's libraries
            from ..gpu import nvidia_passthrough

            gpu = nvidia_passthrough()
            if gpu.problem:
                raise PlatformError(f"no GPU for the container: {gpu.problem}")
            read_only += gpu.library_dirs()
        job_path = folder / "job.json"
        args = worker_command(job_path, channel=channel,
                              channel_dir=folder if channel == "files" else None)
        return ContainerSpec(
            container_id=f"{PREFIX}{uuid.uuid4().hex[:12]}", args=args,
            env=container_env(prototype.threads, self.extra_env), cwd=str(folder.resolve()),
            mounts=plan_mounts(read_only, str(folder)), limits=limits,
            stderr=folder / "stderr.txt", gpu=gpu)

    def open(self, scenario: Scenario, setup: SessionSetup) -> "ContainerSession":
        return ContainerSession.launch(self, scenario, setup)

    def doctor_checks(self, host) -> list[Check]:
        """CN's line, then which runtimes and engines work here, and why not. The default
        runtime (runc) missing is a ``no``; an optional one (crun, docker, podman) that is
        not installed is ``info``; one installed but not working is ``no``."""
        checks = [availability_check(self, host)]
        default_runtime = PlatformOptions().runtime
        for name in RUNTIMES:
            runtime = OciRuntime(name)
            t = time.perf_counter()
            problem = probe(runtime)
            detail = problem or (f"{name} {runtime.version()}: ran a test container in "
                                 f"{time.perf_counter() - t:.2f} s (--runtime {name})")
            status = (CheckStatus.OK if problem is None else
                      CheckStatus.INFO if name != default_runtime and not shutil.which(name) else
                      CheckStatus.NO)
            checks.append(Check(f"runtime.{name}", f"runtime {name}", status, detail))
        for name in ENGINES:
            engine = EngineCli(name, "runc")
            problem = engine.problem()
            installed = engine.binary is not None and (name != "docker" or shutil.which("dockerd"))
            status = (CheckStatus.OK if problem is None else
                      CheckStatus.NO if installed else CheckStatus.INFO)
            checks.append(Check(f"engine.{name}", f"engine {name}", status,
                                problem or f"{engine.describe()} (--engine {name})"))
        return checks


def probe(runtime: OciRuntime) -> str | None:
    """Run ``true`` in a real container; None when it worked, else why not."""
    problem = runtime.problem()
    if problem:
        return problem
    from ...datasets.cache import home
    from ..ledger import Ledger

    ledger = Ledger().open("CN", f"doctor: test container ({runtime.name})")
    folder = session_folder(home() / "runs", uuid.uuid4().hex)
    ledger.add(folders=[str(folder)])
    cid = f"{PREFIX}probe-{uuid.uuid4().hex[:8]}"
    spec = ContainerSpec(cid, ["/bin/true"], {"PATH": CONTAINER_PATH}, str(folder),
                         plan_mounts([], str(folder)), limits_for(1, True), folder / "err")
    ledger.add(containers=[{"id": cid, "delete": runtime.delete_command(cid)}],
               cgroups=[str(p) for p in cgroup_dirs_named(cid)])
    facts: dict[str, Any] = {}
    try:
        attached = runtime.launch(spec, facts)
        for fd in (attached.read_fd, attached.write_fd):
            os.close(fd)
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            status = reap_child(attached.pid)
            if status is not None or not Path(f"/proc/{attached.pid}").exists():
                break
            time.sleep(0.02)
        if status not in (0, None):
            return f"a test container exited with status {status}: {(folder / 'err').read_text(errors='replace')[-200:]}"
        return None
    except PlatformError as exc:
        return str(exc)
    finally:
        runtime.remove(spec, facts)
        remove_cgroup_dirs(cid)
        shutil.rmtree(folder, ignore_errors=True)
        ledger.close()


def runtime_parts(attached: Attached, launcher: Launcher) -> list[FootprintPart]:
    """The host processes that run for a container beside its worker: its ancestors up to
    us or init (conmon for Podman, the containerd shim for Docker; runc and crun leave
    none), the engine's attach client, and the daemons every container of an engine shares
    (dockerd and its containerd, found from the socket the client talks to)."""
    own = {os.getpid(), 1, 0}
    parts: list[FootprintPart] = []
    pid = procfs.parent(attached.pid)
    seen: set[int] = set()
    while pid is not None and pid not in own and pid not in seen:
        seen.add(pid)
        name = procfs.command_name(pid) or "?"
        if name in ("containerd", "dockerd"):
            break
        parts.append(FootprintPart(SHIM, pid, name))
        pid = procfs.parent(pid)
    if attached.attach is not None:
        parts.append(FootprintPart(CLIENT, attached.attach.pid, launcher.name))
    daemon = launcher.daemon_socket()
    if daemon is not None:
        server = procfs.unix_socket_server(daemon)
        if server is not None:
            parts.append(FootprintPart(ENGINE, server, procfs.command_name(server) or "daemon", shared=True))
            for child in procfs.children(server):
                if procfs.command_name(child) == "containerd":
                    parts.append(FootprintPart(ENGINE, child, "containerd", shared=True))
    return parts


class ContainerSession(WorkerSession):
    launcher: Launcher
    spec: ContainerSpec
    attached: Attached | None = None
    cgroup: RunCgroup | None = None
    runtime_parts: list[FootprintPart] = []

    @classmethod
    def launch(cls, platform: Container, scenario: Scenario, setup: SessionSetup) -> "ContainerSession":
        platform.check_io_limits()
        launcher = platform.launcher()
        problem = launcher.problem()
        if problem:
            raise PlatformError(problem)
        ledger = setup.ledger.open(platform.name, scenario.label)
        try:
            folder = session_folder(setup.runs_root, setup.launch_id)
        except BaseException:
            ledger.close()
            raise
        ledger.add(folders=[str(folder)])
        spec = platform.spec_for(scenario, setup.prototype, folder)
        facts = LaunchFacts(setup.launch_id, platform.name, "stdio", time.time(),
                            pinned_cpus=spec.limits.cpus if scenario.cpu_mode is CpuMode.PIN else None,
                            details={"limits": spec.limits.to_json(), "engine": platform.options.engine,
                                     "container_id": spec.container_id})
        session = cls(facts, folder, ledger)
        session.launcher, session.spec = launcher, spec
        try:
            session._start(setup)
        except BaseException:
            session.close()
            raise
        return session

    def _start(self, setup: SessionSetup) -> None:
        from .oci import bundles_root

        cid = self.spec.container_id
        self.ledger.add(containers=[{"id": cid, "delete": self.launcher.delete_command(cid)}],
                        cgroups=[str(p) for p in cgroup_dirs_named(self.spec.cgroup_name)],
                        bundles=[str(bundles_root() / cid)])
        setup.prototype.write(self.folder / "job.json")
        self.facts.launch_wall = time.time()
        self.attached = self.launcher.launch(self.spec, self.facts.details)
        self.ledger.process(self.attached.pid, "worker (container init)")
        self.runtime_parts = runtime_parts(self.attached, self.launcher)
        self.facts.details["runtime_processes"] = [p.to_json() for p in self.runtime_parts]
        self.cgroup = cgroup_of(self.attached.pid, self.spec.limits)
        if self.cgroup is not None:
            self.facts.details["cgroup"] = str(self.cgroup.dirs.get("cpu") or next(iter(self.cgroup.dirs.values())))
            self.facts.details["cgroup_version"] = self.cgroup.version
        self.channel = StreamChannel(self.attached.read_fd, self.attached.write_fd)

    def _alive(self) -> bool:
        if self.attached is None:
            return False
        if self.attached.attach is not None and self.attached.attach.poll() is not None:
            return False
        if reap_child(self.attached.pid) is not None:
            return False
        return Path(f"/proc/{self.attached.pid}").exists() and not _zombie(self.attached.pid)

    def _kill(self) -> None:
        if self.attached is not None:
            try:
                os.kill(self.attached.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass

    def _release(self) -> None:
        facts = self.facts.details
        problem = self.launcher.remove(self.spec, facts)
        if problem:
            facts["remove_problem"] = problem
        if self.attached is not None:
            reap_child(self.attached.pid)
            if self.attached.attach is not None:
                if self.attached.attach.poll() is None:
                    self.attached.attach.kill()
                self.attached.attach.wait()
        swept = remove_cgroup_dirs(self.spec.cgroup_name)
        if swept:
            facts["cgroups_swept"] = [str(p) for p in swept]

    def _round_snapshot(self) -> Any:
        return self.cgroup.stat() if self.cgroup is not None else None

    def _round_facts(self, before: Any, after: Any) -> dict[str, Any]:
        if before is None or after is None:
            return {}
        return {"cpu_stat": stat_delta(before, after)}

    def _footprint_parts(self) -> list[FootprintPart]:
        if self.attached is None:
            return []
        return [FootprintPart(WORKER, self.attached.pid, "worker"), *self.runtime_parts]

    def pause(self) -> None:
        if self.alive and not self.paused:
            self.launcher.pause(self.spec.container_id)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.launcher.resume(self.spec.container_id)
            self.paused = False


def _zombie(pid: int) -> bool:
    from ..ledger import is_zombie

    return is_zombie(pid)


__all__ = ["Container", "ContainerSession", "ContainerSpec", "cgroup_of", "container_env",
           "remove_cgroup_dirs", "cgroup_dirs_named", "probe"]
