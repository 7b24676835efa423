"""Container engines for CN: Docker (through the Docker SDK for Python) and Podman (through
its command line), as an alternative to driving an OCI runtime directly.

Both run the same container as :class:`~.container.OciRuntime` does -- same mounts, same
read-only root, no network, no capabilities, no new privileges, private cgroup namespace --
with the engine's own CPU settings: ``--cpus N`` (VNL: a CFS quota of N cores) or
``--cpuset-cpus`` (PIN).

DESIGN: nothing can be pulled here, so the image is the project's rootfs skeleton imported
as a tarball (``docker import``); it holds only mount points and links, so it is tiny and
kept between runs (tag ``deploybench-rootfs:<hash of its layout>``). Podman runs the
skeleton directly (``--rootfs``). Engines remove a container's cgroup as it exits, so its
``cpu.stat`` is sampled from the host while it runs (every 0.25 s; the last sample is
kept) -- the OCI path reads it exactly after exit. Each container is placed under a
``deploybench-<id>`` cgroup parent (cgroupfs driver), which is removed after the run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..scenario import format_cpu_list
from .base import PlatformError, ProcessRun
from .container import (CONTROL_TIMEOUT_S, ContainerSpec, Launch, RunCgroup, _last_line,
                        cgroup_of, remove_cgroup_dirs, sigint_deferred, wait_pid)
from .oci import (SKELETON_DIRS, SYSTEM_DIRS, bundles_root, host_mems, make_rootfs, mounts_under,
                  remove_bundle, rootfs_tarball)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: Debian's client; /usr/local/bin/docker may be another one that shadows it
DOCKER_CLI = "/usr/bin/docker"


def create_engine(name: str, runtime: str = "runc") -> Any:
    if name == "docker":
        return DockerEngine()
    if name == "podman":
        return PodmanEngine(runtime)
    raise PlatformError(f"unknown container engine {name!r}: use docker or podman")


class _Sampler:
    """Keeps the last cpu.stat of a cgroup that disappears when its container exits."""

    def __init__(self, cgroup: RunCgroup | None) -> None:
        self.cgroup = cgroup
        self.last: dict[str, Any] = {}

    def __call__(self) -> None:
        if self.cgroup is not None:
            stat = self.cgroup.stat()
            if stat:
                self.last = stat


def skeleton_layout() -> list[str]:
    """What the image holds, as text (its hash names the image)."""
    links = [f"{d}->{os.readlink(d)}" for d in SYSTEM_DIRS if os.path.islink(d)]
    return sorted([*SKELETON_DIRS, *links])


# -- Docker --------------------------------------------------------------------------------
class DockerEngine:
    name = "docker"

    def __init__(self) -> None:
        self.host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.DockerClient(base_url=self.host, timeout=int(CONTROL_TIMEOUT_S))
        return self._client

    def problem(self) -> str | None:
        try:
            import docker  # noqa: F401
        except ImportError:
            return "the Docker SDK for Python is missing: pip install docker (scripts/install.sh does)"
        if self.host.startswith("unix://") and not Path(self.host[len("unix://"):]).exists():
            return (f"no Docker daemon: {self.host[len('unix://'):]} does not exist: start dockerd "
                    "(systemctl start docker) or set DOCKER_HOST")
        try:
            self.client().ping()
        except Exception as exc:  # noqa: BLE001 - any failure means: no usable daemon
            why = _last_line(str(exc)) or type(exc).__name__
            return (f"no Docker daemon answers at {self.host} ({why[:120]}): start dockerd "
                    "or set DOCKER_HOST")
        return None

    def describe(self) -> str:
        info = self.client().version()
        return f"dockerd {info.get('Version')} at {self.host}"

    def image(self) -> str:
        """The rootfs skeleton imported as an image (once per layout)."""
        tag = hashlib.sha256("\n".join(skeleton_layout()).encode()).hexdigest()[:12]
        name = f"deploybench-rootfs:{tag}"
        client = self.client()
        import docker

        try:
            client.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="deploybench-image-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            make_rootfs(rootfs, [])
            tarball = rootfs_tarball(rootfs, Path(tmp) / "rootfs.tar")
            client.api.import_image_from_file(str(tarball), repository="deploybench-rootfs", tag=tag)
        return name

    def _create_kwargs(self, spec: ContainerSpec, driver: str) -> dict[str, Any]:
        from docker.types import Mount

        limits = spec.limits
        kwargs: dict[str, Any] = dict(
            command=list(spec.args), name=spec.container_id, hostname=spec.container_id,
            environment=dict(spec.env), working_dir=spec.cwd, network_mode="none",
            read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            ipc_mode="private", cgroupns="private", detach=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=256m,mode=1777"},
            mounts=[Mount(target=m.destination, source=m.source, type="bind",
                          read_only=m.readonly) for m in spec.mounts],
            cpuset_cpus=format_cpu_list(limits.cpus), cpuset_mems=host_mems(),
            ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": 1024}],
        )
        if limits.quota_cores is not None:  # docker run --cpus N
            kwargs["nano_cpus"] = int(round(limits.quota_cores * 1e9))
        if driver == "cgroupfs":
            kwargs["cgroup_parent"] = f"/{spec.cgroup_name}"
        if spec.gpu is not None:  # docker run --gpus all
            kwargs.update(spec.gpu.docker_create_kwargs())
        return kwargs

    def launch(self, spec: ContainerSpec, timeout_s: float) -> Launch:
        import docker

        client = self.client()
        facts: dict[str, Any] = {"engine_host": self.host, "container_id": spec.container_id}
        container = None
        exited, status, timed_out, interrupted, error = False, None, False, False, None
        sampler = _Sampler(None)
        launch_wall = time.time()
        try:
            info = client.version()
            facts["runtime"] = "docker"
            facts["runtime_version"] = info.get("Version")
            driver = client.info().get("CgroupDriver", "cgroupfs")
            image = self.image()
            facts["image"] = image
            launch_wall = time.time()  # the image import is a one-off, not a start cost
            deadline = time.monotonic() + timeout_s
            t = time.perf_counter()
            container = client.containers.create(image, **self._create_kwargs(spec, driver))
            facts["create_s"] = round(time.perf_counter() - t, 4)
            t = time.perf_counter()
            container.start()
            facts["start_s"] = round(time.perf_counter() - t, 4)
            container.reload()
            pid = int(container.attrs["State"].get("Pid") or 0)
            if pid:
                sampler = _Sampler(cgroup_of(pid, spec.limits))
                if sampler.cgroup is not None:
                    facts["cgroup"] = str(sampler.cgroup.dirs.get("cpu") or next(iter(sampler.cgroup.dirs.values())))
                    facts["cgroup_version"] = sampler.cgroup.version
                sampler()
                exited, _ = wait_pid(pid, deadline, tick=sampler)
            else:  # exited before we looked
                exited = True
            timed_out = not exited
            if exited:
                status = int(container.wait(timeout=CONTROL_TIMEOUT_S).get("StatusCode", -1))
        except KeyboardInterrupt:
            interrupted = True
        except (docker.errors.DockerException, OSError, ValueError, PlatformError) as exc:
            error = f"docker: {_last_line(str(exc)) or type(exc).__name__}"
        finally:
            end_wall = time.time()
            with sigint_deferred():
                if sampler.last:
                    facts["cpu_stat"] = sampler.last
                    facts["cpu_stat_sampled"] = True
                if container is not None:
                    try:
                        spec.stdout.write_bytes(container.logs(stdout=True, stderr=False))
                        spec.stderr.write_bytes(container.logs(stdout=False, stderr=True))
                    except docker.errors.DockerException:
                        pass
                    t = time.perf_counter()
                    try:
                        container.remove(force=True)
                    except docker.errors.NotFound:
                        pass
                    except docker.errors.DockerException as exc:
                        error = error or f"docker: cannot remove {spec.container_id}: {_last_line(str(exc))}"
                    facts["delete_s"] = round(time.perf_counter() - t, 4)
                remove_cgroup_dirs(spec.cgroup_name)
        return Launch(ProcessRun(status if exited else None, timed_out, interrupted, launch_wall,
                                 end_wall), facts, error)

    def container_ids(self) -> list[str]:
        return [c.name for c in self.client().containers.list(all=True)]


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
            raise PlatformError(f"cannot start a private dockerd: {_last_line(log_path.read_text(errors='replace'))}")
        yield f"unix://{sock}"
    finally:
        if proc is not None:
            _stop(proc)
        for point in sorted(mounts_under(root), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if not mounts_under(root):
            shutil.rmtree(root, ignore_errors=True)


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- Podman --------------------------------------------------------------------------------
class PodmanEngine:
    """Podman with the flags that work on this kind of host (cgroupfs, file events, runc,
    explicit ulimits: no CAP_SYS_RESOURCE to raise them)."""

    name = "podman"

    def __init__(self, runtime: str = "runc") -> None:
        self.binary = shutil.which("podman")
        self.runtime = runtime

    def base(self) -> list[str]:
        assert self.binary is not None
        return [self.binary, "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", self.runtime]

    def _control(self, *args: str, timeout: float = CONTROL_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, start_new_session=True)

    def problem(self) -> str | None:
        if self.binary is None:
            return "podman is not installed (apt-get install podman; scripts/install.sh does)"
        if self.runtime != "runc":
            return f"podman here works with --runtime runc only (asked: {self.runtime})"
        try:
            out = self._control("info", "--format", "{{.Host.CgroupManager}}", timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"podman does not answer: {exc}"
        if out.returncode != 0:
            return f"podman does not work here: {_last_line(out.stderr)}"
        return None

    def describe(self) -> str:
        out = self._control("version", "--format", "{{.Client.Version}}", timeout=30)
        return f"podman {out.stdout.strip()} (cgroupfs, runtime {self.runtime})"

    def create_args(self, spec: ContainerSpec, rootfs: Path) -> list[str]:
        limits = spec.limits
        args = ["create", "--name", spec.container_id, "--hostname", spec.container_id,
                "--network", "none", "--read-only", "--read-only-tmpfs=false",
                "--cap-drop", "all", "--security-opt", "no-new-privileges",
                "--cgroupns", "private", "--ipc", "private",
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
                "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m,mode=1777",
                "--cgroup-parent", f"/{spec.cgroup_name}", "--workdir", spec.cwd,
                "--cpuset-cpus", format_cpu_list(limits.cpus), "--cpuset-mems", host_mems()]
        if limits.quota_cores is not None:
            args += ["--cpus", f"{limits.quota_cores:g}"]
        for key, value in sorted(spec.env.items()):
            args += ["--env", f"{key}={value}"]
        for m in spec.mounts:
            args += ["--volume", f"{m.source}:{m.destination}:{'ro' if m.readonly else 'rw'}"]
        if spec.gpu is not None:  # the NVIDIA nodes as --device
            args += spec.gpu.podman_args()
        return [*args, "--rootfs", str(rootfs), *spec.args]  # every flag before --rootfs

    def launch(self, spec: ContainerSpec, timeout_s: float) -> Launch:
        cid = spec.container_id
        facts: dict[str, Any] = {"runtime": "podman", "container_id": cid}
        bundle = bundles_root() / cid
        created = False
        exited, status, timed_out, interrupted, error = False, None, False, False, None
        sampler = _Sampler(None)
        launch_wall = time.time()
        try:
            facts["runtime_version"] = self.describe()
            make_rootfs(bundle / "rootfs", spec.mounts, extra_dirs=[spec.cwd])
            launch_wall = time.time()
            deadline = time.monotonic() + timeout_s
            t = time.perf_counter()
            out = self._control(*self.create_args(spec, bundle / "rootfs"))
            facts["create_s"] = round(time.perf_counter() - t, 4)
            created = True
            if out.returncode != 0:
                raise PlatformError(f"podman create failed: {_last_line(out.stderr)}")
            t = time.perf_counter()
            out = self._control("start", cid)
            facts["start_s"] = round(time.perf_counter() - t, 4)
            if out.returncode != 0:
                raise PlatformError(f"podman start failed: {_last_line(out.stderr)}")
            pid_text = self._control("inspect", "--format", "{{.State.Pid}}", cid).stdout.strip()
            pid = int(pid_text or 0)
            if pid:
                sampler = _Sampler(cgroup_of(pid, spec.limits))
                if sampler.cgroup is not None:
                    facts["cgroup"] = str(sampler.cgroup.dirs.get("cpu") or next(iter(sampler.cgroup.dirs.values())))
                sampler()
                exited, _ = wait_pid(pid, deadline, tick=sampler)
            else:
                exited = True
            timed_out = not exited
            if exited:
                waited = self._control("wait", cid)
                status = int(waited.stdout.strip().splitlines()[-1]) if waited.returncode == 0 and waited.stdout.strip() else None
        except KeyboardInterrupt:
            interrupted = True
        except (PlatformError, OSError, ValueError, subprocess.SubprocessError) as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            end_wall = time.time()
            with sigint_deferred():
                if sampler.last:
                    facts["cpu_stat"] = sampler.last
                    facts["cpu_stat_sampled"] = True
                if created:
                    logs = subprocess.run([*self.base(), "logs", cid], capture_output=True,
                                          timeout=CONTROL_TIMEOUT_S, stdin=subprocess.DEVNULL)
                    spec.stdout.write_bytes(logs.stdout)
                    spec.stderr.write_bytes(logs.stderr)
                    t = time.perf_counter()
                    removed = self._control("rm", "--force", "--time", "0", cid)
                    facts["delete_s"] = round(time.perf_counter() - t, 4)
                    if removed.returncode != 0 and "no such container" not in removed.stderr.lower():
                        error = error or f"podman rm failed: {_last_line(removed.stderr)}"
                remove_cgroup_dirs(spec.cgroup_name)
                if bundle.exists():
                    remove_bundle(bundle, allow_empty_files=True)
        return Launch(ProcessRun(status if exited else None, timed_out, interrupted, launch_wall,
                                 end_wall), facts, error)

    def container_ids(self) -> list[str]:
        out = self._control("ps", "--all", "--format", "{{.Names}}")
        return out.stdout.split() if out.returncode == 0 else []
