"""How a CN container is launched: one template, four launchers (runc, crun, Docker, Podman).

Every launcher runs the same container -- the read-only root of ``oci.py`` with the host's
system, Python, project and data bind-mounted read-only and the session folder read-write;
no network, no capabilities, no new privileges, private PID/mount/IPC/UTS/network/cgroup
namespaces; the scenario's CPU limits through the launcher's own cgroup settings -- and the
template is always:

    prepare   the bundle (OCI runtimes), the root directory (Podman) or the image (Docker)
    create    the container, not started
    attach    its stdin and stdout become the worker's job channel (OCI runtimes: pipes
              handed to ``create``; engines: ``start --attach --interactive`` as our child,
              which dies with us, closing the container's stdin)
    pause / resume   (the runtime's or the engine's freezer)
    remove    kill, delete, and (by the caller) the cgroup sweep and the bundle

Engines are driven through their command lines, the same way: ``docker`` (Debian's client,
``DOCKER_HOST`` or the default socket) and ``podman`` (cgroupfs, file events, runc: the flags
that work on this kind of host). The OCI runtimes are driven directly: ``create`` /
``start`` / ``kill`` / ``delete`` are separate commands, so each latency is measured.

crun 1.8 refuses a hybrid cgroup layout (v1 plus ``/sys/fs/cgroup/unified``); it runs inside
a private mount namespace (``unshare -m``) where the unified mount is detached.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from ...host import CGROUP_ROOT
from ...scenario import format_cpu_list
from ..base import PlatformError, last_line, lifeline, tail
from ..cpu import CpuLimits
from .oci import (SKELETON_DIRS, SYSTEM_DIRS, BindMount, bundles_root, host_mems, make_rootfs,
                  mounts_under, remove_bundle, rootfs_tarball, write_bundle)

RUNTIMES = ("runc", "crun")
ENGINES = ("docker", "podman")
CONTROL_TIMEOUT_S = 60.0  # one runtime or engine command
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: Debian's client; /usr/local/bin/docker may be another one that shadows it
DOCKER_CLI = "/usr/bin/docker"


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run, whatever launches it."""

    container_id: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[BindMount]
    limits: CpuLimits
    stderr: Path  # the container's console (the worker's stderr)
    gpu: Any = None  # a platforms.gpu.GpuPassthrough for CN/N/MODE/GPU, else None

    @property
    def cgroup_name(self) -> str:
        return self.container_id


@dataclass
class Attached:
    """A created container whose stdio is the job channel."""

    read_fd: int  # the worker's stdout
    write_fd: int  # the worker's stdin
    pid: int  # the container's init (the worker), as the host sees it
    attach: subprocess.Popen | None = None  # the engine's attach client, when there is one


class Launcher(Protocol):
    name: str

    def problem(self) -> str | None: ...

    def version(self) -> str | None: ...

    def describe(self) -> str: ...

    def delete_command(self, cid: str) -> list[str]:
        """A command that kills and deletes the container ``cid`` (for the ledger's reaper)."""

    def launch(self, spec: ContainerSpec, facts: dict[str, Any]) -> Attached:
        """prepare + create + attach; fills ``facts`` (create_s, start_s, image, bundle...)."""

    def pause(self, cid: str) -> None: ...

    def resume(self, cid: str) -> None: ...

    def remove(self, spec: ContainerSpec, facts: dict[str, Any]) -> str | None:
        """Kill and delete the container and what ``launch`` prepared; returns a problem."""

    def container_ids(self) -> list[str]: ...

    def daemon_socket(self) -> str | None:
        """The unix socket of the daemon that runs this launcher's containers (dockerd's),
        None when there is none (runc, crun, Podman)."""


def _run(cmd: list[str], timeout: float = CONTROL_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


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


# -- the subreaper ----------------------------------------------------------------------------
_PR_SET_CHILD_SUBREAPER = 36


@functools.lru_cache(maxsize=1)
def become_subreaper() -> bool:
    """Adopt orphaned descendants for the rest of this process's life: the container's init,
    orphaned when ``runtime create`` returns, becomes our child, so its death signal
    (``PR_SET_PDEATHSIG``, which the worker sets) fires when *we* die."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_child(pid: int) -> int | None:
    """Collect an adopted child's exit status without blocking (None if not ours or running)."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if got else None


# -- OCI runtimes -----------------------------------------------------------------------------
class OciRuntime:
    """runc or crun, driven through its command line."""

    def __init__(self, name: str) -> None:
        if name not in RUNTIMES:
            raise PlatformError(f"unknown OCI runtime {name!r}: use one of {', '.join(RUNTIMES)}")
        self.name = name
        self.binary = shutil.which(name)

    def version(self) -> str | None:
        return _version(self.binary) if self.binary else None

    def describe(self) -> str:
        return f"{self.name} {self.version()}"

    def problem(self) -> str | None:
        if self.binary is None:
            return f"{self.name} is not installed (apt-get install {self.name}; scripts/install.sh does)"
        if self.name == "crun" and _hybrid_cgroups() and shutil.which("unshare") is None:
            return "crun refuses hybrid cgroups and unshare(1) is missing to hide the unified mount"
        return None

    def command(self, *args: str) -> list[str]:
        if self.binary is None:
            raise PlatformError(self.problem() or f"{self.name} is not installed")
        cmd = [self.binary, *args]
        if self.name == "crun" and _hybrid_cgroups():
            # crun 1.8 refuses v1 + unified; a private mount namespace without the unified
            # mount shows it a plain v1 host (the container is created from this namespace).
            script = 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"'
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *cmd]
        return cmd

    def delete_command(self, cid: str) -> list[str]:
        return self.command("delete", "--force", cid)

    def daemon_socket(self) -> str | None:
        return None  # runc and crun exit once the container runs: no daemon, no shim

    def container_ids(self) -> list[str]:
        if self.binary is None:
            return []
        out = _run(self.command("list", "-q"))
        return out.stdout.split() if out.returncode == 0 else []

    def launch(self, spec: ContainerSpec, facts: dict[str, Any]) -> Attached:
        cid = spec.container_id
        facts.update({"runtime": self.name, "runtime_version": self.version(),
                      "cgroups_path": f"/{spec.cgroup_name}"})
        become_subreaper()
        bundle = write_bundle(cid, dict(
            args=spec.args, env=spec.env, cwd=spec.cwd, hostname=cid, limits=spec.limits,
            cgroups_path=f"/{spec.cgroup_name}", mems=host_mems(), gpu=spec.gpu), spec.mounts)
        facts["bundle"] = str(bundle.path)
        worker_in, host_out = os.pipe()  # host writes jobs -> worker's stdin
        host_in, worker_out = os.pipe()  # worker's stdout -> host reads events
        try:
            t = time.perf_counter()
            with open(spec.stderr, "ab") as err:
                # The container's stdio are the ones `create` gets (pass-through).
                created = subprocess.run(
                    self.command("create", "--bundle", str(bundle.path), "--pid-file",
                                 str(bundle.path / "init.pid"), cid),
                    stdin=worker_in, stdout=worker_out, stderr=err,
                    timeout=CONTROL_TIMEOUT_S, start_new_session=True)
            facts["create_s"] = round(time.perf_counter() - t, 4)
            if created.returncode != 0:
                raise PlatformError(f"{self.name} create failed: {last_line(tail(spec.stderr))}")
            pid = int((bundle.path / "init.pid").read_text().strip())
            t = time.perf_counter()
            started = _run(self.command("start", cid))
            facts["start_s"] = round(time.perf_counter() - t, 4)
            if started.returncode != 0:
                raise PlatformError(f"{self.name} start failed: {last_line(started.stderr)}")
        except BaseException:
            for fd in (host_in, host_out):
                os.close(fd)
            raise
        finally:
            os.close(worker_in)
            os.close(worker_out)
        return Attached(host_in, host_out, pid)

    def pause(self, cid: str) -> None:
        out = _run(self.command("pause", cid))
        if out.returncode != 0:
            raise PlatformError(f"{self.name} pause failed: {last_line(out.stderr)}")

    def resume(self, cid: str) -> None:
        out = _run(self.command("resume", cid))
        if out.returncode != 0:
            raise PlatformError(f"{self.name} resume failed: {last_line(out.stderr)}")

    def remove(self, spec: ContainerSpec, facts: dict[str, Any]) -> str | None:
        cid = spec.container_id
        problem = None
        if self.binary is not None:
            _run(self.command("kill", cid, "KILL"))
            t = time.perf_counter()
            deleted = _run(self.delete_command(cid))
            facts["delete_s"] = round(time.perf_counter() - t, 4)
            if deleted.returncode != 0 and cid in self.container_ids():
                problem = f"{self.name} delete failed: {last_line(deleted.stderr)}"
        bundle = bundles_root() / cid
        if bundle.exists():
            remove_bundle(bundle)
        return problem


# -- engines ----------------------------------------------------------------------------------
def skeleton_layout() -> list[str]:
    """What the Docker image holds, as text (its hash names the image)."""
    links = [f"{d}->{os.readlink(d)}" for d in SYSTEM_DIRS if os.path.islink(d)]
    return sorted([*SKELETON_DIRS, *links])


class EngineCli:
    """Docker or Podman through its command line (one template, two dialects)."""

    def __init__(self, name: str, runtime: str = "runc") -> None:
        if name not in ENGINES:
            raise PlatformError(f"unknown container engine {name!r}: use docker or podman")
        self.name = name
        self.runtime = runtime
        if name == "docker":
            self.host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
            self.binary = DOCKER_CLI if os.path.exists(DOCKER_CLI) else shutil.which("docker")
        else:
            self.host = ""
            self.binary = shutil.which("podman")

    def base(self) -> list[str]:
        if self.binary is None:
            raise PlatformError(self.problem() or f"{self.name} is not installed")
        if self.name == "docker":
            return [self.binary, "-H", self.host]
        return [self.binary, "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", self.runtime]

    def _control(self, *args: str, timeout: float = CONTROL_TIMEOUT_S) -> subprocess.CompletedProcess:
        return _run([*self.base(), *args], timeout)

    def version(self) -> str | None:
        if self.binary is None:
            return None
        key = "{{.Server.Version}}" if self.name == "docker" else "{{.Client.Version}}"
        try:
            out = self._control("version", "--format", key, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    def describe(self) -> str:
        where = f" at {self.host}" if self.name == "docker" else f" (cgroupfs, runtime {self.runtime})"
        return f"{'dockerd' if self.name == 'docker' else 'podman'} {self.version()}{where}"

    def problem(self) -> str | None:
        if self.binary is None:
            package = "docker.io" if self.name == "docker" else "podman"
            return f"{self.name} is not installed (apt-get install {package}; scripts/install.sh does)"
        if self.name == "podman" and self.runtime != "runc":
            return f"podman here works with --runtime runc only (asked: {self.runtime})"
        if self.name == "docker" and self.host.startswith("unix://") and \
                not Path(self.host[len("unix://"):]).exists():
            return (f"no Docker daemon: {self.host[len('unix://'):]} does not exist: start dockerd "
                    "(systemctl start docker) or set DOCKER_HOST")
        try:
            out = self._control("info", "--format", "{{json .}}" if self.name == "docker"
                                else "{{.Host.CgroupManager}}", timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{self.name} does not answer: {exc}"
        if out.returncode != 0:
            what = "no Docker daemon answers" if self.name == "docker" else "podman does not work here"
            return f"{what}{' at ' + self.host if self.host else ''}: {last_line(out.stderr)[:160]}"
        return None

    def daemon_socket(self) -> str | None:
        if self.name == "docker" and self.host.startswith("unix://"):
            return self.host[len("unix://"):]
        return None  # Podman has no daemon (conmon, per container, is found as the worker's parent)

    def delete_command(self, cid: str) -> list[str]:
        extra = ["--time", "0"] if self.name == "podman" else []
        return [*self.base(), "rm", "--force", *extra, cid]

    def container_ids(self) -> list[str]:
        if self.problem():
            return []
        out = self._control("ps", "--all", "--format", "{{.Names}}")
        return out.stdout.split() if out.returncode == 0 else []

    def image(self) -> str:
        """Docker: the rootfs skeleton imported as an image (once per layout)."""
        tag = hashlib.sha256("\n".join(skeleton_layout()).encode()).hexdigest()[:12]
        name = f"deploybench-rootfs:{tag}"
        if self._control("image", "inspect", name).returncode == 0:
            return name
        with tempfile.TemporaryDirectory(prefix="deploybench-image-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            make_rootfs(rootfs, [])
            tarball = rootfs_tarball(rootfs, Path(tmp) / "rootfs.tar")
            with open(tarball, "rb") as f:
                out = subprocess.run([*self.base(), "import", "-", name], stdin=f,
                                     capture_output=True, text=True, timeout=CONTROL_TIMEOUT_S)
            if out.returncode != 0:
                raise PlatformError(f"docker import of the root skeleton failed: {last_line(out.stderr)}")
        return name

    def create_args(self, spec: ContainerSpec, target: list[str]) -> list[str]:
        """The create command's arguments; ``target`` is the image (Docker) or
        ``["--rootfs", DIR]`` (Podman), which must follow every flag."""
        limits = spec.limits
        args = ["create", "--interactive", "--name", spec.container_id, "--hostname", spec.container_id,
                "--network", "none", "--read-only", "--cap-drop", "all",
                "--security-opt", "no-new-privileges", "--cgroupns", "private", "--ipc", "private",
                "--ulimit", "nofile=1024:1024",
                "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m,mode=1777", "--workdir", spec.cwd,
                "--cpuset-cpus", format_cpu_list(limits.cpus), "--cpuset-mems", host_mems()]
        if self.name == "podman":
            args += ["--read-only-tmpfs=false", "--ulimit", "nproc=4096:4096",
                     "--cgroup-parent", f"/{spec.cgroup_name}"]
        elif self._docker_cgroup_driver() == "cgroupfs":
            args += ["--cgroup-parent", f"/{spec.cgroup_name}"]
        if limits.quota_cores is not None:  # --cpus N: a CFS quota of N cores
            args += ["--cpus", f"{limits.quota_cores:g}"]
        for key, value in sorted(spec.env.items()):
            args += ["--env", f"{key}={value}"]
        for m in spec.mounts:
            args += ["--volume", f"{m.source}:{m.destination}:{'ro' if m.readonly else 'rw'}"]
        if spec.gpu is not None:  # the GPU: --gpus all (Docker), the nodes as --device (Podman)
            args += spec.gpu.docker_args() if self.name == "docker" else spec.gpu.podman_args()
        return [*args, *target, *spec.args]

    def _docker_cgroup_driver(self) -> str:
        out = self._control("info", "--format", "{{.CgroupDriver}}", timeout=30)
        return out.stdout.strip() or "cgroupfs"

    def launch(self, spec: ContainerSpec, facts: dict[str, Any]) -> Attached:
        cid = spec.container_id
        facts.update({"runtime": self.name, "runtime_version": self.version()})
        if self.name == "docker":
            facts["engine_host"] = self.host
            image = self.image()
            facts["image"] = image
            target = [image]
        else:
            rootfs = bundles_root() / cid / "rootfs"
            make_rootfs(rootfs, spec.mounts, extra_dirs=[spec.cwd])
            facts["bundle"] = str(rootfs.parent)
            target = ["--rootfs", str(rootfs)]
        t = time.perf_counter()
        out = self._control(*self.create_args(spec, target))
        facts["create_s"] = round(time.perf_counter() - t, 4)
        if out.returncode != 0:
            raise PlatformError(f"{self.name} create failed: {last_line(out.stderr)}")
        t = time.perf_counter()
        with open(spec.stderr, "ab") as err:
            attach = subprocess.Popen([*self.base(), "start", "--attach", "--interactive", cid],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                      preexec_fn=lifeline(), start_new_session=True)
        read_fd, write_fd = os.dup(attach.stdout.fileno()), os.dup(attach.stdin.fileno())
        attach.stdout.close()
        attach.stdin.close()
        pid = 0
        deadline = time.monotonic() + CONTROL_TIMEOUT_S
        while time.monotonic() < deadline and attach.poll() is None:
            state = self._control("inspect", "--format", "{{.State.Pid}}", cid)
            pid = int(state.stdout.strip() or 0) if state.returncode == 0 else 0
            if pid:
                break
            time.sleep(0.02)
        facts["start_s"] = round(time.perf_counter() - t, 4)
        if not pid:
            os.close(read_fd)
            os.close(write_fd)
            raise PlatformError(f"{self.name} start failed: {last_line(tail(spec.stderr))}")
        return Attached(read_fd, write_fd, pid, attach)

    def pause(self, cid: str) -> None:
        out = self._control("pause", cid)
        if out.returncode != 0:
            raise PlatformError(f"{self.name} pause failed: {last_line(out.stderr)}")

    def resume(self, cid: str) -> None:
        out = self._control("unpause", cid)
        if out.returncode != 0:
            raise PlatformError(f"{self.name} unpause failed: {last_line(out.stderr)}")

    def remove(self, spec: ContainerSpec, facts: dict[str, Any]) -> str | None:
        cid = spec.container_id
        t = time.perf_counter()
        out = _run(self.delete_command(cid))
        facts["delete_s"] = round(time.perf_counter() - t, 4)
        problem = None
        if out.returncode != 0 and "no such container" not in out.stderr.lower():
            problem = f"{self.name} rm failed: {last_line(out.stderr)}"
        bundle = bundles_root() / cid
        if bundle.exists():
            remove_bundle(bundle, allow_empty_files=True)
        return problem


def create_launcher(runtime: str = "runc", engine: str | None = None) -> Launcher:
    return EngineCli(engine, runtime) if engine else OciRuntime(runtime)


def all_launchers() -> list[Launcher]:
    """Every launcher that is installed here (for doctor and the stray search)."""
    out: list[Launcher] = [OciRuntime(name) for name in RUNTIMES if shutil.which(name)]
    for name in ENGINES:
        engine = EngineCli(name)
        if engine.binary is not None:
            out.append(engine)
    return out


# -- a private dockerd (tests and benchmarks) -------------------------------------------------

@contextmanager
def private_dockerd(storage_drivers: tuple[str, ...] = ("overlay2", "vfs"),
                    ready_s: float = 30.0) -> Iterator[str]:
    """A dockerd of our own for tests and benchmarks: private data and exec roots, its own
    socket, no iptables/bridge set-up; stopped and removed on exit. Yields its DOCKER_HOST.
    Raises PlatformError (one line) when it cannot start."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise PlatformError("dockerd is not installed (apt-get install docker.io)")
    root = Path(tempfile.mkdtemp(prefix="deploybench-dockerd-"))
    sock = root / "docker.sock"
    proc: subprocess.Popen | None = None
    log_path = root / "dockerd.log"
    try:
        with open(log_path, "wb") as log:
            for driver in storage_drivers:
                proc = subprocess.Popen(
                    [dockerd, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                     "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{sock}",
                     "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                     f"--storage-driver={driver}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
                deadline = time.monotonic() + ready_s
                while time.monotonic() < deadline and proc.poll() is None and not sock.exists():
                    time.sleep(0.05)
                if sock.exists():
                    break
                _stop(proc)
                proc = None
        if proc is None:
            raise PlatformError(f"cannot start a private dockerd: {last_line(log_path.read_text(errors='replace'))}")
        yield f"unix://{sock}"
    finally:
        if proc is not None:
            _stop(proc)
        for point in sorted(mounts_under(root), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if not mounts_under(root):
            shutil.rmtree(root, ignore_errors=True)


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    import signal

    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
