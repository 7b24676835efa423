"""Virtual machines: ``VM/N/MODE/PROC`` (QEMU ``pc``, virtio-pci) and ``MVM/N/MODE/PROC``
(QEMU ``microvm``, virtio-mmio), both booting the same guest kernel and initramfs.

A session is one guest with a warm worker in it:

1. Guest assets (kernel, initramfs: ``guest/``) and the data disk (a read-only ext4 image of
   the data set, attached as virtio-blk) are prepared once and cached.
2. The session folder is the *job share*: QEMU exports it read-write over virtio-9p; the
   guest mounts it at the same path, so the job's paths mean the same inside, and it is the
   worker's job channel (numbered job and result files: ``worker/channel.py``). The host's
   ``/`` is the guest's read-only root (9p + tmpfs overlay): software comes over 9p, data
   over the block device.
3. QEMU starts paused (``-S``) inside a fresh cgroup, with a death signal tied to its owner
   (it dies when the deploybench process that launched it dies). Over QMP (``qemu.qmp``) we
   read each vCPU's host thread id (``query-cpus-fast``); PIN pins vCPU i to its own host
   core with ``sched_setaffinity``, VNL leaves the threads floating under the cgroup's CFS
   quota of N cores. Then ``cont``.
4. The guest's init and stage-2 script print ``DEPLOYBENCH-MARK`` lines on the serial
   console; the host timestamps every console line as it arrives, so boot times are host
   clock times (a TCG guest's clock may drift): launch -> ``init`` (guest user space) ->
   ``worker-start`` -> worker ready; each round's first query is the worker's guest-clock
   time moved onto the host clock by the offset measured at ``worker-start``.
5. Rounds: a job file in, a result file out. ``pause``/``resume`` are QMP ``stop``/``cont``.
   ``close`` sends ``stop``: the worker exits and the guest powers itself off; a guest that
   hangs is killed; QEMU, its cgroup and the socket folder are removed whatever happens.

Accelerator: ``kvm`` on a host where guests boot under KVM; ``tcg`` (emulation) otherwise.
One function decides (:func:`kvm_decision`); ``auto`` uses a short boot probe, cached per
host and kernel: a nested or paravirtual /dev/kvm can exist and still leave a guest
crawling. TCG runs carry the EMULATED_VM warning, and the store keeps them apart from
native runs by ``accel``.

MVM and Firecracker: the paper's micro-VM is Firecracker. When a ``firecracker`` binary is
present we only detect and report it (doctor); runs use QEMU ``microvm``, which has the same
minimal device model (no PCI, virtio-mmio). Firecracker could not honour PIN (it offers no
per-vCPU affinity; a jailer cgroup cpuset is the closest) nor pass GPUs through, as the
paper notes, so MVM/N/MODE/GPU is refused either way.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ..footprint import VMM, FootprintPart
from ..host import HostFacts, host_facts, usable_cpus
from ..scenario import CpuMode, Processor, Scenario
from ..warnings import WarningCode, warning
from ..worker.channel import FileChannel
from ..worker.job import WorkerJob
from .base import (Check, CheckStatus, LaunchFacts, PlatformBase, PlatformError, RunOutcome, SessionSetup,
                   availability_check, lifeline, tail, worker_command, worker_env)
from .cpu import CgroupError, CgroupManager, CpuLimits, RunCgroup, limits_for, stat_delta
from .guest import GuestAssetError, GuestAssets, cached_assets, guest_home, prepare
from .guest.datadisk import DATA_PATH_LABEL, ensure_data_image
from .session import WorkerSession, session_folder

QEMU = "qemu-system-x86_64"
MARK = "DEPLOYBENCH-MARK"
GUEST_ERROR = "DEPLOYBENCH-ERROR"
KVM_PROBE_DEADLINE_S = 25.0
KVM_PROBE_SCHEMA = 1
ACCELS = ("auto", "kvm", "tcg")
QMP_CONNECT_S = 20.0

#: Guest memory by model size (MiB). Under the hood QEMU allocates lazily, so a generous
#: size costs nothing until the guest touches it.
MEMORY_MIB = {"tiny": 2048, "small": 3072}
DEFAULT_MEMORY_MIB = 4096

#: Environment variables the guest's worker inherits from the host (the rest is the guest's).
_ENV_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH",
               "PYTHONHASHSEED", "DEPLOYBENCH_HOME")


# -- the QEMU command line ------------------------------------------------------------------
@dataclass(frozen=True)
class QemuConfig:
    """Everything the QEMU command line depends on (pure values: unit-testable)."""

    machine: str  # "pc" | "microvm"
    vcpus: int
    memory_mib: int
    accel: str  # "kvm" | "tcg"
    kernel: str
    initrd: str
    name: str = "deploybench"
    share_dir: str | None = None  # the job share (read-write 9p), mounted at the same path
    data_image: str | None = None  # read-only virtio-blk ext4 image
    data_mount: str | None = None  # where the guest mounts it (the job's data_dir)
    qmp_socket: str | None = None
    tsc_khz: int | None = None  # host TSC kHz, for microvm under TCG
    paused: bool = True  # -S: pin vCPUs before the guest runs an instruction
    probe: bool = False  # the KVM boot probe: init powers off as soon as it runs

    @property
    def virtio_suffix(self) -> str:
        return "device" if self.machine == "microvm" else "pci"


def kernel_cmdline(cfg: QemuConfig) -> str:
    parts = ["console=ttyS0", "quiet", "panic=-1"]
    if cfg.machine == "microvm":
        parts.append("pci=off")
        if cfg.accel == "tcg":
            if not cfg.tsc_khz:
                raise PlatformError("microvm under TCG needs the host TSC frequency (tsc_early_khz)")
            parts.append(f"tsc_early_khz={cfg.tsc_khz}")  # else early boot hangs calibrating
    if cfg.probe:
        parts.append("deploybench.probe=1")
    for key, path in (("share", cfg.share_dir), ("data", cfg.data_mount)):
        if path:
            if any(c.isspace() for c in path) or not path.startswith("/"):
                raise PlatformError(f"guest paths must be absolute and without spaces: {path!r}")
            parts.append(f"deploybench.{key}={path}")
    return " ".join(parts)


def qemu_command(cfg: QemuConfig, qemu: str = QEMU) -> list[str]:
    if cfg.machine not in ("pc", "microvm"):
        raise PlatformError(f"unknown machine type {cfg.machine!r}")
    if cfg.accel not in ("kvm", "tcg"):
        raise PlatformError(f"unknown accelerator {cfg.accel!r}: use kvm or tcg")
    machine = "microvm,x-option-roms=off" if cfg.machine == "microvm" else "pc"
    cmd = [qemu, "-M", machine, "-nodefaults", "-no-user-config",
           "-accel", "kvm" if cfg.accel == "kvm" else "tcg,thread=multi",
           "-cpu", "host" if cfg.accel == "kvm" else "max",
           "-smp", str(cfg.vcpus), "-m", str(cfg.memory_mib),
           "-name", f"{cfg.name},debug-threads=on", "-display", "none", "-no-reboot",
           "-serial", "stdio", "-kernel", cfg.kernel, "-initrd", cfg.initrd,
           "-append", kernel_cmdline(cfg)]
    dev = cfg.virtio_suffix
    if not cfg.probe:
        cmd += ["-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device", f"virtio-9p-{dev},fsdev=hostroot,mount_tag=hostroot"]
    if cfg.share_dir:
        cmd += ["-fsdev", f"local,id=jobshare,path={cfg.share_dir},security_model=none",
                "-device", f"virtio-9p-{dev},fsdev=jobshare,mount_tag=jobshare"]
    if cfg.data_image:
        cmd += ["-drive", f"file={cfg.data_image},if=none,id=data,format=raw,readonly=on",
                "-device", f"virtio-blk-{dev},drive=data"]
    if cfg.qmp_socket:
        cmd += ["-qmp", f"unix:{cfg.qmp_socket},server=on,wait=off"]
    if cfg.paused:
        cmd.append("-S")
    return cmd


def host_tsc_khz(cpuinfo: str | None = None) -> int | None:
    """The host's TSC frequency in kHz (``cpu MHz`` of /proc/cpuinfo: on hosts with a
    constant TSC, which TCG's virtual TSC follows, that is the TSC rate)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.M)
    return round(float(match.group(1)) * 1000) if match else None


def memory_for(model_size: str, host_memory_gib: float | None = None, extra_mib: int = 0) -> int:
    mib = MEMORY_MIB.get(model_size, DEFAULT_MEMORY_MIB) + extra_mib
    if host_memory_gib:
        mib = min(mib, max(1024, int(host_memory_gib * 1024 / 2)))
    return mib


# -- the accelerator -------------------------------------------------------------------------
def kvm_device_problem(path: str = "/dev/kvm") -> str | None:
    """None when /dev/kvm can be opened read-write, else why not."""
    if not os.path.exists(path):
        return f"no {path} (no hardware virtualisation here)"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as exc:
        return f"cannot open {path}: {exc.strerror}"
    return None


@dataclass(frozen=True)
class KvmVerdict:
    usable: bool
    detail: str
    boot_s: float | None = None
    checked_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"schema": KVM_PROBE_SCHEMA, "usable": self.usable, "detail": self.detail,
                "boot_s": self.boot_s, "checked_at": self.checked_at}


def _probe_path(assets: GuestAssets) -> Path:
    """The cached verdict's file: one per host (name, kernel) and guest (kernel, initrd)."""
    key = f"{os.uname().nodename}\0{os.uname().release}"
    for path in (assets.kernel, assets.initrd):
        st = Path(path).stat()
        key += f"\0{Path(path).resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    return guest_home() / f"kvm-probe-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


def cached_kvm_verdict(assets: GuestAssets) -> KvmVerdict | None:
    try:
        data = json.loads(_probe_path(assets).read_text())
    except (OSError, ValueError):
        return None
    if data.get("schema") != KVM_PROBE_SCHEMA:
        return None
    return KvmVerdict(bool(data["usable"]), str(data["detail"]), data.get("boot_s"),
                      float(data.get("checked_at", 0)))


def probe_kvm(assets: GuestAssets, deadline_s: float = KVM_PROBE_DEADLINE_S) -> KvmVerdict:
    """Boot the guest under KVM to its first user-space instruction (init) and power off;
    usable when that takes less than ``deadline_s``. The verdict is cached."""
    cfg = QemuConfig("pc", 1, 512, "kvm", assets.kernel, assets.initrd, name="deploybench-kvm-probe",
                     paused=False, probe=True)
    launched = time.time()
    proc = subprocess.Popen(qemu_command(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    console = ConsoleReader(proc.stdout, None)
    try:
        seen = console.wait_for("init", deadline_s)
    finally:
        _kill_group(proc)
        console.join()
    if seen is not None:
        boot = round(seen - launched, 2)
        verdict = KvmVerdict(True, f"KVM usable: a guest reaches user space in {boot:g} s", boot, time.time())
    else:
        verdict = KvmVerdict(False, f"/dev/kvm present but guests do not boot under it in {deadline_s:g} s "
                             "(paravirtual/nested KVM)", None, time.time())
    path = _probe_path(assets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(verdict.to_json(), indent=1))
    return verdict


@dataclass(frozen=True)
class AccelChoice:
    """KVM or TCG for guests here, and why. ``kvm_usable`` is None when nobody knows yet
    (doctor does not boot the probe)."""

    accel: str  # "kvm" | "tcg"
    reason: str
    kvm_usable: bool | None


def kvm_decision(requested: str = "auto", kernel: str | None = None, initrd: str | None = None,
                 *, probe: bool = True) -> AccelChoice:
    """The one place that decides whether guests run under KVM: runs, the sweep planner
    (``VirtualMachine.emulated``) and doctor all ask it. ``probe=False`` boots nothing (and
    prepares no assets): it answers from /dev/kvm and the cached boot-probe verdict."""
    if requested not in ACCELS:
        raise PlatformError(f"unknown accelerator {requested!r}: use one of {', '.join(ACCELS)}")
    if requested == "tcg":
        return AccelChoice("tcg", "TCG emulation requested (--accel tcg)", None)
    problem = kvm_device_problem()
    if requested == "kvm":
        if problem:
            raise PlatformError(f"--accel kvm: {problem}; use --accel auto or tcg")
        return AccelChoice("kvm", "KVM requested (--accel kvm)", True)
    if problem:
        return AccelChoice("tcg", f"{problem}: TCG emulation is used", False)
    if probe:
        assets = prepare(kernel, initrd)
    else:
        assets = cached_assets() if not kernel else None
    verdict = cached_kvm_verdict(assets) if assets is not None else None
    if verdict is None and probe and assets is not None:
        verdict = probe_kvm(assets)
    if verdict is None:
        return AccelChoice("kvm", "/dev/kvm present; whether guests boot under it is not probed yet "
                           "(the first VM run with --accel auto probes it, ~25 s at most)", None)
    if verdict.usable:
        return AccelChoice("kvm", verdict.detail, True)
    return AccelChoice("tcg", f"{verdict.detail}: TCG emulation is used", False)


# -- the console -------------------------------------------------------------------------------
class ConsoleReader:
    """Reads the guest's serial console in a thread, timestamps every line on the host clock,
    copies it to a log file and remembers the ``DEPLOYBENCH-MARK`` lines."""

    def __init__(self, stream: Any, log_path: Path | None) -> None:
        self.stream = stream
        self.log_path = log_path
        self.markers: dict[str, tuple[float, list[str]]] = {}
        self.errors: list[str] = []
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="guest-console", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        log = open(self.log_path, "w", errors="replace") if self.log_path else None
        try:
            for raw in iter(self.stream.readline, b""):
                now = time.time()
                line = raw.decode(errors="replace").rstrip("\r\n")
                if log is not None:
                    log.write(f"{now:.3f} {line}\n")
                    log.flush()
                with self._cond:
                    self.lines.append(line)
                    del self.lines[:-200]
                    if MARK in line:
                        words = line.split(MARK, 1)[1].split()
                        if words:
                            self.markers.setdefault(words[0], (now, words[1:]))
                    elif GUEST_ERROR in line:
                        self.errors.append(line.split(GUEST_ERROR, 1)[1].strip())
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            if log is not None:
                log.close()
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, marker: str, timeout_s: float) -> float | None:
        """The host time ``marker`` was seen, waiting up to ``timeout_s``; None if not."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while marker not in self.markers:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    break
                self._cond.wait(min(left, 0.5))
            return self.markers[marker][0] if marker in self.markers else None

    def last_line(self) -> str:
        with self._cond:
            for line in reversed(self.lines):
                if line.strip():
                    return line.strip()[:200]
        return ""

    def join(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass


# -- vCPU threads ----------------------------------------------------------------------------
def thread_affinity(pid: int, tid: int) -> list[int] | None:
    """A thread's allowed CPUs, read from the host side (/proc)."""
    try:
        return sorted(os.sched_getaffinity(tid))
    except OSError:
        return None


class Qmp:
    """The QMP connection of one guest (``qemu.qmp``'s synchronous client)."""

    def __init__(self, socket_path: Path, proc: subprocess.Popen, timeout_s: float = QMP_CONNECT_S,
                 stderr_path: Path | None = None) -> None:
        try:
            from qemu.qmp.legacy import QEMUMonitorProtocol
        except ImportError:
            raise PlatformError("the qemu.qmp library is missing: re-run scripts/install.sh") from None
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                said = tail(stderr_path, 2000).strip().splitlines() if stderr_path else []
                raise PlatformError(f"QEMU exited with status {proc.returncode} before QMP was up"
                                    f"{': ' + said[-1][:300] if said else ''}")
            if socket_path.exists():
                monitor = QEMUMonitorProtocol(str(socket_path))
                try:
                    monitor.connect()
                    monitor.settimeout(10)
                    self.monitor = monitor
                    return
                except Exception as exc:  # noqa: BLE001 - qemu.qmp raises several types
                    last = exc
            time.sleep(0.05)
        raise PlatformError(f"no QMP connection to QEMU within {timeout_s:g} s ({last})")

    def vcpu_threads(self) -> dict[int, int]:
        """vCPU index -> host thread id."""
        return {int(c["cpu-index"]): int(c["thread-id"]) for c in self.monitor.cmd("query-cpus-fast")}

    def cont(self) -> None:
        self.monitor.cmd("cont")

    def stop(self) -> None:
        self.monitor.cmd("stop")

    def close(self) -> None:
        try:
            self.monitor.close()
        except Exception:  # noqa: BLE001 - QEMU may be gone already
            pass


def pin_vcpus(threads: dict[int, int], cores: Sequence[int]) -> dict[int, int]:
    """Pin vCPU i's thread to ``cores[i]``; returns vCPU -> host core."""
    if len(cores) < len(threads):
        raise PlatformError(f"{len(threads)} vCPUs but only {len(cores)} cores to pin them to")
    mapping = {}
    for index, core in zip(sorted(threads), cores):
        try:
            os.sched_setaffinity(threads[index], {core})
        except OSError as exc:
            raise PlatformError(f"cannot pin vCPU {index} (thread {threads[index]}) to CPU {core}: "
                                f"{exc.strerror}") from None
        mapping[index] = core
    return mapping


# -- the stage-2 script ------------------------------------------------------------------------
def guest_env(threads: int) -> dict[str, str]:
    host = worker_env(threads)
    env = {k: host[k] for k in _ENV_PASSED if k in host}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["HOME"] = "/root"
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "OMP_WAIT_POLICY", "PYTHONUNBUFFERED"):
        env[k] = host[k]
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def stage2_script(share: Path, command: Sequence[str], env: dict[str, str], prelude: str = "",
                  data_mount: str | None = None) -> str:
    """The guest's PID 1 after switch_root: run ``command`` (the warm worker, which serves
    rounds until it is told to stop) with its output in the share, leave its exit status
    there, mark each step on the console, power off."""
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    q = shlex.quote
    data_line = ""
    if data_mount:  # what really serves the data: file system and device, from the guest
        data_line = (f"echo \"{MARK} data-mount $(awk -v d={q(data_mount)} '$2 == d {{print $3 \",\" $1}}' "
                     "/proc/mounts)\" > /dev/console")
    return f"""#!/bin/sh
# deploybench stage 2: PID 1 of the guest after switch_root (written by the host)
{exports}
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mkdir -p /dev/shm /dev/pts && mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
cd /
{data_line}
{prelude}
CS=/sys/devices/system/clocksource/clocksource0/current_clocksource
echo "{MARK} clocksource-start $(cat $CS)" > /dev/console
echo "{MARK} worker-start $(date +%s.%N)" > /dev/console
{shlex.join(command)} > {q(str(share / "stdout.txt"))} 2> {q(str(share / "stderr.txt"))}
rc=$?
echo "$rc" > {q(str(share / "rc"))}
echo "{MARK} worker-exit $(date +%s.%N) $rc" > /dev/console
echo "{MARK} clocksource-end $(cat $CS)" > /dev/console
sync
echo o > /proc/sysrq-trigger
sleep 60
"""


# -- the platform ------------------------------------------------------------------------------
@dataclass
class GuestPlan:
    """What one session's guest is made of."""

    assets: GuestAssets
    accel: str
    accel_reason: str
    config: QemuConfig
    pinned_cores: list[int] | None
    cgroup_limits: CpuLimits
    extra_facts: dict[str, Any] = field(default_factory=dict)


class VirtualMachine(PlatformBase):
    """``VM``: QEMU's ``pc`` machine with virtio-pci devices."""

    name: ClassVar[str] = "VM"
    machine: ClassVar[str] = "pc"
    extra_memory_mib: ClassVar[int] = 0

    def __init__(self, options=None, cgroups: CgroupManager | None = None) -> None:
        super().__init__(options)
        self.cgroups = cgroups or CgroupManager()

    # -- availability --------------------------------------------------------------------------
    def unavailable_reason(self, host: HostFacts) -> str | None:
        if not shutil.which(QEMU):
            return f"{QEMU} is not installed (apt-get install qemu-system-x86)"
        if host.machine not in ("x86_64", "amd64"):
            return f"guests are x86-64 only; this host is {host.machine}"
        if self.options.accel not in ACCELS:
            return f"unknown accelerator {self.options.accel!r}: use one of {', '.join(ACCELS)}"
        if self.options.accel == "kvm" and kvm_device_problem():
            return f"--accel kvm: {kvm_device_problem()}; use --accel auto or tcg"
        return host.cgroup_problem

    def emulated(self, host: HostFacts) -> bool:
        """Whether runs here will be emulated (TCG), as the sweep planner asks to pick a
        study's ``[overrides.emulated]``. With ``--accel auto`` this may prepare the guest
        assets and boot the KVM probe once (both cached), exactly as the first run would."""
        try:
            return kvm_decision(self.options.accel, self.options.kernel, self.options.initrd).accel == "tcg"
        except GuestAssetError:
            return True  # the runs will fail with this reason; plan them as the cheap case

    def scenario_problem(self, scenario: Scenario, host: HostFacts) -> str | None:
        if scenario.processor is Processor.GPU:
            if not host.gpus:
                return "no GPU on this host: use .../CPU"
            return (f"{self.name} with a GPU needs VFIO passthrough, which deploybench does not "
                    "set up yet (README, GPUs: the VFIO host preparation): use .../CPU or CN")
        return None

    def doctor_checks(self, host: HostFacts) -> list[Check]:
        """This platform's line (``emulated`` under TCG: it works, but its times are not
        overheads; ``info`` while KVM is not probed yet); the VM platform adds KVM, the
        guest assets and Firecracker. Boots nothing (the one KVM decision, without probing)."""
        choice = kvm_decision(self.options.accel, probe=False) if self.options.accel in ACCELS else None
        if choice is None or choice.accel == "kvm" and choice.kvm_usable is not None:
            own = availability_check(self, host)
        elif choice.accel == "tcg":
            own = availability_check(self, host, emulated=choice.reason.removesuffix(": TCG emulation is used"))
        else:  # not probed yet
            own = availability_check(self, host)
            if own.status is CheckStatus.OK:
                own = Check(own.key, own.name, CheckStatus.INFO,
                            f"available; native (KVM) or emulated (TCG) is not known yet: {choice.reason}")
        checks = [own]
        if self.name != "VM":  # one set of VM lines is enough
            return checks
        auto = kvm_decision("auto", probe=False)
        kvm_status = (CheckStatus.NO if auto.kvm_usable is False else
                      CheckStatus.OK if auto.kvm_usable else CheckStatus.INFO)
        detail = auto.reason if auto.kvm_usable is not False else \
            auto.reason.replace(": TCG emulation is used", ": VMs use TCG emulation (functional only, not comparable)")
        checks.append(Check("kvm", "kvm", kvm_status, detail))
        assets = cached_assets()
        checks.append(Check("guest_assets", "guest assets", CheckStatus.OK if assets else CheckStatus.INFO,
                            f"kernel {assets.release} and initramfs cached in {guest_home()}" if assets else
                            "not prepared yet: `deploybench prepare vm` (or the first VM run) fetches "
                            "Debian's kernel with apt-get and builds the initramfs"))
        fc = shutil.which("firecracker")
        checks.append(Check("firecracker", "firecracker", CheckStatus.INFO,
                            f"{fc} found, but MVM runs use QEMU microvm (Firecracker cannot pin vCPUs "
                            "or pass through GPUs)" if fc else
                            "not installed (optional): MVM uses QEMU microvm (the same minimal "
                            "virtio-mmio machine)"))
        return checks

    # -- planning ----------------------------------------------------------------------------------
    def plan(self, scenario: Scenario, prototype: WorkerJob, share: Path, qmp_socket: Path,
             data_image: Path | None) -> GuestPlan:
        choice = kvm_decision(self.options.accel, self.options.kernel, self.options.initrd)
        assets = prepare(self.options.kernel, self.options.initrd)
        pinned = scenario.cpu_mode is CpuMode.PIN
        try:
            limits = limits_for(scenario.cores, pinned, list(self.options.pin_cpus or ()))
        except CgroupError as exc:
            raise PlatformError(str(exc)) from None
        if pinned:
            # vCPU threads are pinned one by one; QEMU's other threads (main loop, 9p, block
            # I/O) float over the host like a hypervisor's housekeeping threads do.
            cgroup_limits = CpuLimits(cpus=usable_cpus(), quota_cores=None)
            cores = limits.cpus
        else:
            cgroup_limits, cores = limits, None
        config = QemuConfig(
            machine=self.machine, vcpus=scenario.cores,
            memory_mib=memory_for(scenario.model_size, host_facts().memory_gib, self.extra_memory_mib),
            accel=choice.accel, kernel=assets.kernel, initrd=assets.initrd,
            name=f"deploybench-{self.name.lower()}-{share.name[:8]}",
            share_dir=str(share), data_image=str(data_image) if data_image else None,
            data_mount=str(Path(prototype.data_dir).resolve()) if data_image else None,
            qmp_socket=str(qmp_socket),
            tsc_khz=host_tsc_khz() if (self.machine == "microvm" and choice.accel == "tcg") else None)
        return GuestPlan(assets, choice.accel, choice.reason, config, cores, cgroup_limits)

    def guest_command(self, scenario: Scenario, prototype: WorkerJob, share: Path,
                      plan: GuestPlan) -> tuple[list[str], str]:
        """The command the guest runs (and shell lines to run before it)."""
        return worker_command(share / "job.json", channel="files", channel_dir=share), ""

    def open(self, scenario: Scenario, setup: SessionSetup) -> "GuestSession":
        return GuestSession.launch(self, scenario, setup)


class GuestSession(WorkerSession):
    proc: subprocess.Popen | None = None
    console: ConsoleReader | None = None
    qmp: "Qmp | None" = None
    cgroup: RunCgroup | None = None
    plan: GuestPlan
    sockets: Path
    vcpu_threads: dict[int, int]

    @classmethod
    def launch(cls, platform: VirtualMachine, scenario: Scenario, setup: SessionSetup) -> "GuestSession":
        platform.check_io_limits()
        ledger = setup.ledger.open(platform.name, scenario.label)
        try:
            share = session_folder(setup.runs_root, setup.launch_id)
            sockets = Path(tempfile.mkdtemp(prefix="deploybench-vm-"))
        except BaseException:
            ledger.close()
            raise
        ledger.add(folders=[str(share), str(sockets)])
        facts = LaunchFacts(setup.launch_id, platform.name, "files", time.time())
        session = cls(facts, share, ledger)
        session.sockets = sockets
        session.vcpu_threads = {}
        try:
            session._start(platform, scenario, setup)
        except BaseException:
            session.close()
            raise
        return session

    def _start(self, platform: VirtualMachine, scenario: Scenario, setup: SessionSetup) -> None:
        share = self.folder
        prototype = setup.prototype
        prototype.write(share / "job.json")
        data_image = ensure_data_image(Path(prototype.data_dir), guest_home() / "disks")
        plan = platform.plan(scenario, prototype, share, self.sockets / "qmp.sock", data_image)
        self.plan = plan
        command, prelude = platform.guest_command(scenario, prototype, share, plan)
        (share / "guest-run.sh").write_text(stage2_script(share, command, guest_env(prototype.threads),
                                                          prelude, plan.config.data_mount))
        cfg = plan.config
        self.facts.pinned_cpus = plan.pinned_cores
        self.facts.details.update({
            "machine": cfg.machine, "vmm": f"qemu-{cfg.machine}",
            "accel": plan.accel, "accel_reason": plan.accel_reason, "vcpus": cfg.vcpus,
            "memory_mib": cfg.memory_mib, "guest_kernel": plan.assets.release,
            "guest_assets": plan.assets.source, "data_path": DATA_PATH_LABEL,
            "data_image": cfg.data_image, "software_path": "virtio-9p (host root, read-only) + tmpfs overlay",
            "cpu_mode": scenario.cpu_mode.value, "qemu_limits": plan.cgroup_limits.to_json(),
            "kernel_cmdline": kernel_cmdline(cfg), "qemu_command": shlex.join(qemu_command(cfg)),
            "limits": (limits_for(scenario.cores, True, list(platform.options.pin_cpus or ())).to_json()
                       if plan.pinned_cores is not None else plan.cgroup_limits.to_json()),
            **plan.extra_facts,
        })
        name = self.ledger.entry.session_id
        self.ledger.add(cgroups=platform.cgroups.planned_dirs(name))
        try:
            self.cgroup = platform.cgroups.create(plan.cgroup_limits, name=name)
        except CgroupError as exc:
            raise PlatformError(str(exc)) from None
        self.facts.details["qemu_cgroup"] = str(next(iter(self.cgroup.dirs.values())))
        self.facts.launch_wall = time.time()
        with open(share / "qemu-stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(qemu_command(cfg), stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL, preexec_fn=lifeline(self.cgroup.attach),
                                         start_new_session=True)
        self.ledger.process(self.proc.pid, "qemu")
        self.console = ConsoleReader(self.proc.stdout, share / "console.log")
        self.facts.details["qemu_pid"] = self.proc.pid
        self.qmp = Qmp(Path(cfg.qmp_socket or ""), self.proc, min(QMP_CONNECT_S, setup.launch_timeout_s),
                       share / "qemu-stderr.txt")
        self.vcpu_threads = self.qmp.vcpu_threads()
        self.facts.details["vcpu_threads"] = {str(k): v for k, v in self.vcpu_threads.items()}
        if plan.pinned_cores is not None:
            mapping = pin_vcpus(self.vcpu_threads, plan.pinned_cores)
            self.facts.details["vcpu_pinning"] = {str(k): v for k, v in mapping.items()}
        self.qmp.cont()
        self.facts.details["vcpu_affinity_at_start"] = self._affinity()
        self.channel = FileChannel(share, side="host", alive=self._alive)

    def _affinity(self) -> dict[str, list[int] | None]:
        assert self.proc is not None
        return {str(k): thread_affinity(self.proc.pid, t) for k, t in self.vcpu_threads.items()}

    def _after_ready(self) -> None:  # the boot's facts, from the console's markers
        markers = self.console.markers if self.console is not None else {}
        launch = self.facts.launch_wall
        for name, key in (("init", "boot_userspace_s"), ("switch-root", "boot_rootfs_s"),
                          ("worker-start", "worker_start_s")):
            if name in markers:
                self.facts.details[key] = round(markers[name][0] - launch, 3)
        if "data-mount" in markers:
            self.facts.details["data_mount_seen"] = (markers["data-mount"][1] or ["none"])[0]
        if "clocksource-start" in markers and markers["clocksource-start"][1]:
            # the clock the worker's timers read; a switch away from tsc/kvm-clock
            # (an unstable TSC) coarsens every phase time
            self.facts.details["guest_clocksource_start"] = markers["clocksource-start"][1][0]
        if "worker-start" in markers and markers["worker-start"][1]:
            try:
                offset = markers["worker-start"][0] - float(markers["worker-start"][1][0])
                self.facts.details["guest_clock_offset_s"] = round(offset, 3)
            except ValueError:
                pass

    # -- the session -------------------------------------------------------------------------------
    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _exit_detail(self) -> str:
        if self.proc is None:
            return ""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        rc_file = self.folder / "rc"
        worker = rc_file.read_text().strip() if rc_file.exists() else None
        detail = ""
        if self.console is not None:
            self.console.join()
            detail = "; ".join(self.console.errors)
            if not detail:
                panic = [line for line in self.console.lines if "Kernel panic" in line]
                detail = panic[-1].strip() if panic else ""
        return (f" (QEMU exit status {code}{'' if worker is None else f', worker exit status {worker}'})"
                f"{': ' + detail if detail else ''}")

    def _console(self) -> str:
        text = tail(self.folder / "console.log")
        for name in ("stderr.txt", "qemu-stderr.txt"):
            extra = tail(self.folder / name, 3000)
            if extra.strip():
                text += f"\n--- {name} ---\n{extra}"
        return text

    def _kill(self) -> None:
        if self.cgroup is not None and not self.cgroup.removed:
            self.cgroup.kill_all()
        if self.proc is not None:
            _kill_group(self.proc)

    def _release(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
        if self.console is not None:
            self.console.join()
        if self.proc is not None:
            self.facts.details["qemu_exit_status"] = self.proc.returncode
        if self.cgroup is not None:
            self.facts.details["cpu_stat_total"] = self.cgroup.stat()
            self.cgroup.remove()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def _round_snapshot(self) -> Any:
        return self.cgroup.stat() if self.cgroup is not None and not self.cgroup.removed else None

    def _round_facts(self, before: Any, after: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if before is not None and after is not None:
            out["cpu_stat"] = stat_delta(before, after)
        if self._alive():
            out["vcpu_affinity_at_round"] = self._affinity()
        return out

    def measure(self, job: WorkerJob, timeout_s: float) -> RunOutcome:
        outcome = super().measure(job, timeout_s)
        facts, result = outcome.host_facts, outcome.result
        offset = self.facts.details.get("guest_clock_offset_s")
        if result is not None and offset is not None and "first_query_wall" in result.timings:
            # the round's first query on the host clock, by the offset seen at worker-start;
            # a guest clock that drifted since (TCG under a CPU quota loses time) would put it
            # before the round was sent: then the drift is recorded instead of a wrong time
            first = result.timings["first_query_wall"] + offset
            if first >= facts["round_wall"]:
                facts["first_query_s"] = round(first - self.facts.launch_wall, 3)
                facts["round_start_latency_s"] = round(first - facts["round_wall"], 4)
            else:
                facts["guest_clock_drift_s"] = round(facts["round_wall"] - first, 3)
        pinned = self.facts.details.get("vcpu_pinning")
        seen = facts.get("vcpu_affinity_at_round")
        if result is not None and pinned and seen and any(seen.get(v) != [c] for v, c in pinned.items()):
            result.warnings.append(warning(
                WarningCode.AFFINITY_MISMATCH, f"vCPUs pinned as {pinned} but the host saw {seen}"))
        if result is not None and self.plan.accel == "tcg":
            result.warnings.append(warning(
                WarningCode.EMULATED_VM, f"emulated (TCG): not comparable with native runs ({self.plan.accel_reason})"))
        return outcome

    def _footprint_parts(self) -> list[FootprintPart]:
        """QEMU: its resident memory holds the guest's; its vCPU threads are the guest's own
        CPU time, every other thread (main loop, virtio and 9p I/O) the VMM's."""
        if self.proc is None:
            return []
        return [FootprintPart(VMM, self.proc.pid, QEMU, vcpu_threads=tuple(sorted(self.vcpu_threads.values())))]

    def pause(self) -> None:
        if self.qmp is not None and self.alive and not self.paused:
            self.qmp.stop()
            self.paused = True

    def resume(self) -> None:
        if self.qmp is not None and self.paused:
            self.qmp.cont()
            self.paused = False


class MicroVM(VirtualMachine):
    """``MVM``: QEMU's ``microvm`` machine (no PCI, no firmware option ROMs, virtio-mmio)."""

    name: ClassVar[str] = "MVM"
    machine: ClassVar[str] = "microvm"

    def scenario_problem(self, scenario: Scenario, host: HostFacts) -> str | None:
        if scenario.processor is Processor.GPU:
            return "micro-VMs have no PCI bus to pass a GPU through (as Firecracker): use .../CPU"
        return None
