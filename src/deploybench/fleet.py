"""The fleet: a study spread over benchmark hosts with Dask distributed, every run gathered in
the client's store.

Three places, one module:

- **The host** (``deploybench fleet worker --scheduler tcp://HOST:PORT``, or any Dask worker
  started with ``--preload deploybench.fleet``): a Dask worker with one thread. It runs
  ``doctor`` once and advertises ``bench_host=1``, one resource per platform it can run
  (``BM``, ``CN``, ``VM``...), ``kvm`` and ``gpu`` where doctor says they work, and it
  registers its :class:`HostCard` (``describe_host``): the host fingerprint (CPU model,
  cores, memory, kernel, KVM, GPUs: ``host.host_fingerprint``), the deploybench version
  and git revision, what it can run. Its Dask threads are kept off the measured cores: on a
  housekeeping core when the host has cores to spare (``--housekeeping-cpu``), else the
  card and every run record it.
- **A task** (``run_task``): one block set. It runs in a subprocess (``python -m
  deploybench.fleet task``), the same code as a local sweep (``execute.run_block_set``),
  with the thread variables Dask sets (OMP/MKL/OPENBLAS_NUM_THREADS) removed from its
  environment (each run records what was removed). The process gets the block set on its
  stdin and reports on a pipe: what it starts (a launch, a round) and each record as it is
  made; the Dask side forwards them to the client's Dask queue. It dies with its Dask
  worker: the kernel sends it SIGTERM when the worker goes (``PR_SET_PDEATHSIG``), and so
  does its stdin reaching end-of-file; it then closes its sessions as Ctrl-C would. What a
  SIGKILL leaves is in the sessions ledger, and the next deploybench command on that host
  (the next task, ``fleet worker``, any command) reaps it. One task process waits ready
  (imports done) between block sets, so a block set does not wait for Python to start.
- **The client** (``deploybench sweep --fleet``): ``executors.DaskExecutor`` sends block
  sets, takes records off the queue into the store, refuses hosts whose version differs
  (``compatibility_problem``), plans the study on one host of each class (``plan_fleet``:
  skips are decided where the runs will be), and ``LocalFleet`` makes ``--fleet local:N``:
  a LocalCluster scheduler with N ``fleet worker`` processes on disjoint cores of this host.
"""
from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

FLEET_SCHEMA = 1  # HostCard
TASK_SCHEMA = 1  # TaskSpec
DEFAULT_PLATFORM_FACTORY = "deploybench.platforms:create_platform"
#: what Dask's nanny sets to 1 in its workers; a measurement sizes its own thread pools
REMOVED_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: a host with at least this many cores gives one of them to Dask (``--housekeeping-cpu auto``)
HOUSEKEEPING_MIN_CPUS = 4
#: seconds a task process gets to close its sessions after it is told to stop
ABORT_GRACE_S = 20.0
#: seconds a worker waits for the scheduler before it gives up
CONNECT_TIMEOUT_S = 60.0
#: task processes a host keeps started ahead, ready (a block set never waits for Python)
STANDBY_PROCESSES = 2
#: a benchmark host's Dask worker wakes up as little as it can (its threads may share the
#: measured cores): no sampling profiler (every 10 ms by default), no GIL monitor, slow
#: system and event-loop monitors
QUIET_WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.tick.interval": "1s",
}


NOT_A_BENCH_HOST = ("worker {address} is not a deploybench benchmark host (yet): start it with "
                    "`deploybench fleet worker --scheduler ...` or `--preload deploybench.fleet`")


class FleetError(RuntimeError):
    """A fleet that cannot be used as asked; one line naming the fix."""


class TaskProcessDied(RuntimeError):
    """The task process of a block set ended without finishing it (the host is still up)."""


# -- values -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostCard:
    """What a benchmark host registers: who it is, its class, what it can run."""

    name: str  # the Dask worker's name
    hostname: str
    fingerprint: str  # its host class (host.host_fingerprint)
    label: str  # the class, for people
    cpus: list[int]  # the cores measurements get
    version: str
    git_revision: str
    platforms: dict[str, str]  # name -> doctor status (ok, emulated, no, info)
    resources: dict[str, float]
    kvm: str  # doctor's KVM status
    gpus: list[str]
    housekeeping_cpu: int | None  # where the Dask threads run (None: on the measured cores)
    local_peers: int = 0  # other fleet workers of a local:N fleet on this machine
    metadata: dict[str, Any] = field(default_factory=dict)  # run metadata, as runs carry it

    @property
    def cores(self) -> int:
        return len(self.cpus)

    def can_run(self) -> list[str]:
        return [name for name, status in self.platforms.items() if status in ("ok", "emulated")]

    def to_json(self) -> dict[str, Any]:
        return {"schema": FLEET_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "HostCard":
        if not isinstance(data, dict) or data.get("schema") != FLEET_SCHEMA:
            raise FleetError(f"host card schema {data.get('schema') if isinstance(data, dict) else data!r} "
                             f"is not {FLEET_SCHEMA}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class DataSpec:
    """A contender's data set: generated on the host from (app, count, seed) and checked
    against the client's checksums; without them (no manifest), ``path`` is used as it is."""

    path: str
    app: str | None = None
    count: int | None = None
    seed: int | None = None
    sha256: str | None = None  # of the manifest's per-file checksums


@dataclass(frozen=True)
class ContenderSpec:
    scenario: dict[str, Any]
    platform: str
    options: dict[str, Any]  # PlatformOptions without io_limits
    throttle: dict[str, Any] | None  # read_bps, read_iops: resolved on the host's own data disk
    data: DataSpec
    settings: dict[str, Any]  # RunSettings


@dataclass(frozen=True)
class TaskSpec:
    """One block set as it travels to a host (``execute.BlockSet`` without the objects)."""

    contenders: list[ContenderSpec]
    blocks: int
    warmup_rounds: int
    epoch: int
    study: str | None
    seed: int
    allow_concurrent: bool
    platform_factory: str = DEFAULT_PLATFORM_FACTORY

    def to_json(self) -> dict[str, Any]:
        return {"schema": TASK_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TaskSpec":
        if data.get("schema") != TASK_SCHEMA:
            raise FleetError(f"task schema {data.get('schema')!r} is not {TASK_SCHEMA}")
        values = {k: v for k, v in data.items() if k != "schema"}
        values["contenders"] = [ContenderSpec(**{**c, "data": DataSpec(**c["data"])})
                                for c in values["contenders"]]
        return cls(**values)


def data_digest(checksums: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()


def task_spec(block_set: Any, *, platform_factory: str = DEFAULT_PLATFORM_FACTORY) -> TaskSpec:
    """A BlockSet as a TaskSpec: the platform by name and options, the data set by what
    generates it (and its checksums, from the client's manifest)."""
    from .datasets import MANIFEST

    contenders = []
    for c in block_set.contenders:
        data = DataSpec(str(c.data_dir))
        manifest = Path(c.data_dir) / MANIFEST
        if manifest.exists():
            doc = json.loads(manifest.read_text())
            data = DataSpec(str(c.data_dir), doc.get("app"), doc.get("count"), doc.get("seed"),
                            data_digest(doc["sha256"]) if doc.get("sha256") else None)
        options = dataclasses.asdict(c.platform.options)
        limits = options.pop("io_limits", None)
        if options.get("pin_cpus") is not None:
            options["pin_cpus"] = list(options["pin_cpus"])
        throttle = None if limits is None else {"read_bps": limits["read_bps"], "read_iops": limits["read_iops"]}
        contenders.append(ContenderSpec(c.scenario.to_json(), c.platform.name, options, throttle, data,
                                        dataclasses.asdict(c.settings)))
    return TaskSpec(contenders, block_set.blocks, block_set.warmup_rounds, block_set.epoch,
                    block_set.study, block_set.seed, block_set.allow_concurrent, platform_factory)


# -- the host: its card, its cores, its Dask worker ----------------------------------------------
def choose_cores(share: Sequence[int], housekeeping: str = "auto") -> tuple[list[int], int | None]:
    """(the cores measurements get, the housekeeping core for Dask's threads or None).
    ``housekeeping``: ``auto`` (the last core when the share has HOUSEKEEPING_MIN_CPUS or
    more), ``none``, or a CPU number (taken out of the share when it is in it)."""
    from .scenario import ScenarioError, parse_cpu_list

    share = sorted(share)
    if housekeeping == "none":
        return share, None
    if housekeeping == "auto":
        if len(share) >= HOUSEKEEPING_MIN_CPUS:
            return share[:-1], share[-1]
        return share, None
    try:
        (cpu,) = parse_cpu_list(housekeeping)
    except (ScenarioError, ValueError):
        raise FleetError(f"--housekeeping-cpu takes auto, none or one CPU number, got {housekeeping!r}") from None
    from .host import usable_cpus

    if cpu not in usable_cpus():
        raise FleetError(f"--housekeeping-cpu {cpu}: this process may use CPUs {usable_cpus()}")
    measure = [c for c in share if c != cpu]
    if not measure:
        raise FleetError(f"--housekeeping-cpu {cpu} leaves no core to measure on")
    return measure, cpu


def make_card(name: str, housekeeping_cpu: int | None, local_peers: int = 0) -> HostCard:
    """This host's card, for the cores this process may use now (doctor runs here once)."""
    from . import __version__
    from .doctor import doctor_checks
    from .host import git_revision, host_class_label, host_facts, run_metadata

    host_facts.cache_clear()
    facts = host_facts()
    checks = {c.key: c.status.value for c in doctor_checks()}
    platforms = {key.split(".", 1)[1]: status for key, status in checks.items() if key.startswith("platform.")}
    resources: dict[str, float] = {"bench_host": 1}
    resources.update({p: 1 for p, status in platforms.items() if status in ("ok", "emulated")})
    if checks.get("kvm") == "ok":
        resources["kvm"] = 1
    if checks.get("gpu") == "ok":
        resources["gpu"] = 1
    meta = run_metadata()
    return HostCard(name=name, hostname=facts.hostname, fingerprint=meta["fingerprint"],
                    label=host_class_label(meta), cpus=list(facts.usable_cpus), version=__version__,
                    git_revision=git_revision(), platforms=platforms, resources=resources,
                    kvm=checks.get("kvm", "no"), gpus=list(facts.gpus), housekeeping_cpu=housekeeping_cpu,
                    local_peers=local_peers, metadata=meta)


@dataclass
class _HostState:
    """This worker process as a benchmark host (set when it starts)."""

    card: HostCard | None = None
    measure_cpus: list[int] = field(default_factory=list)
    standby: list[Any] = field(default_factory=list)  # task processes started ahead (futures)
    running: dict[str, set["_TaskProcess"]] = field(default_factory=dict)  # sweep id -> processes
    aborted: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    spawner: Any = None  # one long-lived thread that starts every task process (its lifeline)
    low_priority_standby: bool = True  # standbys start at nice 19 (False once that cannot be undone)


HOST = _HostState()


def become_bench_host(name: str, cpus: Sequence[int] | None = None, housekeeping: str = "auto",
                      local_peers: int = 0) -> HostCard:
    """Make this process a benchmark host: measurements on ``cpus`` (default: all usable),
    this process's own threads on the housekeeping core, the card made. Idempotent."""
    from .host import usable_cpus

    if HOST.card is not None:
        return HOST.card
    usable = usable_cpus()
    share = sorted(cpus) if cpus else usable
    bad = sorted(set(share) - set(usable))
    if bad:
        raise FleetError(f"--cpus {','.join(map(str, bad))}: this process may use CPUs "
                         f"{','.join(map(str, usable))}")
    measure, housekeeping_cpu = choose_cores(share, housekeeping)
    os.sched_setaffinity(0, measure)
    card = make_card(name, housekeeping_cpu, local_peers)
    if housekeeping_cpu is not None:
        _pin_process({housekeeping_cpu})
    HOST.card, HOST.measure_cpus = card, measure
    from concurrent.futures import ThreadPoolExecutor

    HOST.spawner = ThreadPoolExecutor(1, thread_name_prefix="deploybench-task-spawner")
    _prepare_standby()
    for future in list(HOST.standby):  # a host that joins is ready to measure at once
        try:
            future.result().wait_ready()
        except TaskProcessDied as exc:
            raise FleetError(f"a task process could not start on this host: {exc}") from None
    return card


def _pin_process(cpus: set[int]) -> None:
    """Every thread of this process (and those it starts later) on ``cpus``."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def describe_host() -> dict[str, Any] | None:
    """This worker's card (``client.run``); None for a Dask worker that is no benchmark host."""
    return HOST.card.to_json() if HOST.card is not None else None


def _preload_command() -> Any:
    """``dask_setup`` for ``dask worker --nthreads 1 --preload deploybench.fleet`` (e.g. under
    SSHCluster, with a nanny): the worker becomes a benchmark host. ``--preload-argv`` may
    give ``--cpus LIST`` and ``--housekeeping-cpu auto|none|N``."""
    import click

    @click.command()
    @click.option("--cpus", default=None, help="measure on these CPUs only")
    @click.option("--housekeeping-cpu", "housekeeping", default="auto", help="auto, none or a CPU")
    async def dask_setup(worker: Any, cpus: str | None, housekeeping: str) -> None:
        from .scenario import parse_cpu_list

        if worker.state.nthreads != 1:
            raise FleetError(f"a benchmark host runs one block set at a time: start the worker with "
                             f"--nthreads 1 (it has {worker.state.nthreads})")
        card = await asyncio.to_thread(become_bench_host, str(worker.name),
                                       parse_cpu_list(cpus) if cpus else None, housekeeping)
        await worker.set_resources(**card.resources)

    return dask_setup


dask_setup = _preload_command()


def serve_worker(scheduler: str, *, name: str | None = None, cpus: Sequence[int] | None = None,
                 housekeeping: str = "auto", local_peers: int = 0,
                 say: Any = print) -> None:
    """``deploybench fleet worker``: a Dask worker with one thread on this host, until the
    scheduler goes or it is stopped (SIGTERM, SIGINT)."""
    import logging

    import dask
    from distributed import Worker

    logging.getLogger("distributed").setLevel(logging.WARNING)
    dask.config.set(QUIET_WORKER_CONFIG)
    card = become_bench_host(name or os.uname().nodename, cpus, housekeeping, local_peers)
    dask_threads = (f"CPU {card.housekeeping_cpu}" if card.housekeeping_cpu is not None
                    else "the measured cores (no core to spare)")
    say(f"fleet worker {card.name}: host class {card.fingerprint} ({card.label}); measures on CPUs "
        f"{','.join(map(str, card.cpus))}, Dask threads on {dask_threads}; can run "
        f"{' '.join(card.can_run()) or 'nothing'}; deploybench {card.version} (git {card.git_revision})")

    async def main() -> None:
        worker = Worker(scheduler, nthreads=1, name=card.name, resources=card.resources,
                        memory_limit=0, dashboard=False, death_timeout=CONNECT_TIMEOUT_S,
                        validate=False)
        loop = asyncio.get_running_loop()

        async def shutdown() -> None:
            await asyncio.to_thread(_stop_all)  # a running block set first: its task ends then
            await worker.close()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(shutdown()))
        try:
            await worker
        except Exception as exc:  # noqa: BLE001 - one line for people
            raise FleetError(f"could not join the fleet at {scheduler} ({_one_line(exc)}): is "
                             "`dask scheduler` running there, and is the name unique (--name)?") from None
        say(f"fleet worker {card.name}: joined {scheduler} as {worker.address}")
        await worker.finished()

    try:
        asyncio.run(main())
    finally:
        _stop_all()


def _stop_all() -> None:
    """Stop every task process of this host (the worker is going): each closes its sessions;
    the Dask task reading it then ends by itself."""
    with HOST.lock:
        procs = [p for group in HOST.running.values() for p in group]
        futures, HOST.standby = HOST.standby, []
    standby = [f.result() for f in futures]
    for p in procs + standby:
        p.terminate()
    for p in procs + standby:
        p.stop()
    for p in standby:
        p.close()


# -- the task process, seen from the worker ---------------------------------------------------------
def task_environment(environ: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the environment of a task process, the thread variables removed from it)."""
    env = dict(environ)
    removed = {name: env.pop(name) for name in REMOVED_THREAD_VARIABLES if name in env}
    env["PYTHONUNBUFFERED"] = "1"
    return env, removed


_PR_SET_PDEATHSIG = 1


class _TaskProcess:
    """``python -m deploybench.fleet task``: started ahead (it imports, says ready, waits for
    its block set on stdin), pinned to the measured cores, dying with this worker. A standby
    starts at the lowest priority (``low``: nice 19), so that its start-up takes next to
    nothing from a block set measuring meanwhile; ``promote`` gives it back the normal
    priority before it gets its own block set."""

    def __init__(self, cpus: Sequence[int], low: bool = False) -> None:
        self.env, self.removed = task_environment(dict(os.environ))
        self.low = low
        read_fd, write_fd = os.pipe()
        self.log = tempfile.NamedTemporaryFile(prefix="deploybench-task-", suffix=".log", delete=False)
        parent = os.getpid()
        cpus = set(cpus)

        def preexec() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)
            os.sched_setaffinity(0, cpus)
            if low:
                os.setpriority(os.PRIO_PROCESS, 0, 19)

        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploybench.fleet", "task", "--events-fd", str(write_fd)],
                stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                pass_fds=(write_fd,), preexec_fn=preexec, start_new_session=True)
        finally:
            os.close(write_fd)
        self.events = _Lines(read_fd)
        self.ready = False

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TaskProcessDied(f"the task process was not ready within {timeout_s:g} s")
            lines = self.events.read(min(left, 1.0))
            if lines is None:
                raise TaskProcessDied(f"the task process ended before it was ready{self.exit_detail()}")
            for line in lines:
                if json.loads(line).get("kind") == "ready":
                    self.ready = True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def promote(self) -> bool:
        """Every thread back to nice 0 (the platforms it launches inherit it); False when this
        process may not (lowering a nice value needs root or CAP_SYS_NICE)."""
        if not self.low:
            return True
        try:
            for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
                os.setpriority(os.PRIO_PROCESS, int(tid), 0)
            if os.getpriority(os.PRIO_PROCESS, self.proc.pid) != 0:
                return False
        except (PermissionError, ProcessLookupError, FileNotFoundError):
            return False
        self.low = False
        return True

    def exit_detail(self) -> str:
        code = self.proc.poll()
        said = _last_line(self.log_tail())
        return (f" (exit status {code})" if code is not None else "") + (f": {said}" if said else "")

    def log_tail(self, limit: int = 4000) -> str:
        try:
            self.log.flush()
            return Path(self.log.name).read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return ""

    def terminate(self) -> None:
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float = ABORT_GRACE_S, *, ending: bool = False) -> None:
        """Ask it to stop (it closes its sessions), wait, then kill what is left.
        ``ending``: it said it is done and ends by itself: wait a moment first."""
        if ending:
            try:
                self.proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                pass
        self.terminate()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self.events.close()
        try:
            self.log.close()
            os.unlink(self.log.name)
        except OSError:
            pass


class _Lines:
    """JSON lines from a pipe, read with a timeout (None at end-of-file)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def read(self, timeout_s: float) -> list[str] | None:
        if self.eof:
            return None
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout_s))
        if not ready:
            return []
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.eof = True
            return None if not self.buffer.strip() else [self.buffer.decode()]
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line.decode() for line in lines if line.strip()]

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _spawn(low: bool = False) -> Any:
    """A new task process (a future of it), started by the spawner thread: the death signal
    follows the thread that forks, and that one lives as long as the worker."""
    return HOST.spawner.submit(_TaskProcess, HOST.measure_cpus, low and HOST.low_priority_standby)


def _prepare_standby() -> None:
    """Top the standby task processes up to STANDBY_PROCESSES, now, while nothing is
    measured here: the next block set takes one that has long been ready (imports done;
    an idle standby costs no CPU), and the one started now is ready for the block set after."""
    with HOST.lock:
        while len(HOST.standby) < STANDBY_PROCESSES:
            HOST.standby.append(_spawn(low=True))


def _take_standby() -> _TaskProcess:
    """A ready task process at the normal priority, for the block set about to start."""
    with HOST.lock:
        future = HOST.standby.pop(0) if HOST.standby else None
    process = future.result() if future is not None else None
    if process is not None and process.alive():
        process.wait_ready()
        if process.promote():
            return process
        HOST.low_priority_standby = False  # it cannot be undone here: start them normally
    if process is not None:
        process.stop(grace_s=5)
        process.close()
    process = _spawn().result()
    process.wait_ready()
    return process


def run_task(spec_json: dict[str, Any], queue_name: str, ticket: int, sweep_id: str) -> dict[str, Any]:
    """The Dask task of one block set (runs on a benchmark host, in the worker's one thread):
    hand it to a task process, forward what it reports to the client's queue, stop it when
    the client cancels. Returns a summary; raises TaskProcessDied when the process ended
    without finishing."""
    from distributed import Queue, get_worker

    if HOST.card is None:
        raise FleetError("this Dask worker is not a benchmark host: start it with `deploybench fleet "
                         "worker` (or `dask worker --nthreads 1 --preload deploybench.fleet`)")
    began = time.monotonic()
    marks: dict[str, float] = {}  # where a block set's time goes on the host (benchmarks)
    worker = get_worker()
    key = worker.get_current_task()
    attempt = uuid.uuid4().hex
    process = _take_standby()
    marks["ready_s"] = time.monotonic() - began
    with HOST.lock:
        HOST.running.setdefault(sweep_id, set()).add(process)
    card = HOST.card
    context = {"worker": card.name, "address": worker.address, "removed_env": process.removed,
               "housekeeping_cpu": card.housekeeping_cpu, "measure_cpus": card.cpus,
               "local_peers": card.local_peers}
    done: dict[str, Any] | None = None
    detail = ""
    try:
        # the block set first, the scheduler after: its two round trips (the queue, "begun")
        # take 50-100 ms on a busy scheduler, and the host measures meanwhile. Nothing the
        # process reports is forwarded before "begun", so the client still hears it first.
        assert process.proc.stdin is not None
        process.proc.stdin.write((json.dumps({"spec": spec_json, "context": context}) + "\n").encode())
        process.proc.stdin.flush()
        queue = Queue(queue_name)
        queue.put({"kind": "begun", "ticket": ticket, "attempt": attempt, "host": card.name,
                   "address": worker.address, "metadata": card.metadata, "context": context,
                   "wall": time.time()})
        marks["queue_s"] = time.monotonic() - began
        stopping_since: float | None = None
        spec = TaskSpec.from_json(spec_json)
        rounds = len(spec.contenders) * (spec.warmup_rounds + spec.blocks)
        records = 0
        while True:
            lines = process.events.read(0.5)
            if lines is None:
                break
            burst = []
            for line in lines:
                event = json.loads(line)
                if event.get("kind") == "done":
                    done = event
                    marks["done_s"] = time.monotonic() - began
                elif event.get("kind") in ("start", "record"):
                    burst.append({**event, "ticket": ticket, "attempt": attempt})
                    records += event["kind"] == "record"
                    if records == rounds:  # the last round is in: sessions close, nothing measures
                        _prepare_standby()
            if burst:  # one trip to the scheduler for what came together
                queue.put(burst if len(burst) > 1 else burst[0])
            if done is not None:
                break  # nothing comes after "done": the process is ending
            if stopping_since is None and (_cancelled(worker, key) or sweep_id in HOST.aborted):
                stopping_since = time.monotonic()
                process.terminate()
            if stopping_since is not None and time.monotonic() - stopping_since > ABORT_GRACE_S:
                break
        marks["ended_s"] = time.monotonic() - began
    finally:
        process.stop(grace_s=ABORT_GRACE_S, ending=done is not None)
        detail = process.exit_detail()
        process.close()
        with HOST.lock:
            HOST.running.get(sweep_id, set()).discard(process)
    marks["returned_s"] = time.monotonic() - began
    if done is None:
        _top_up()
        raise TaskProcessDied(f"the task process on host {card.name} ended without finishing its "
                              f"block set{detail}")
    summary = {"host": card.name, "records": done.get("records", 0),
               "launch_failures": done.get("launch_failures", {}), "marks": marks,
               "began_wall": time.time() - (time.monotonic() - began), "done_wall": time.time()}
    # the client may plan and send the next block set now: this host takes it as soon as
    # this task returns (one thread: never two block sets at once)
    queue.put({"kind": "done", "ticket": ticket, "attempt": attempt, "summary": summary})
    _top_up()
    return summary


def _top_up() -> None:
    try:
        _prepare_standby()
    except Exception:  # noqa: BLE001 - the next task starts one itself
        pass



def _cancelled(worker: Any, key: str) -> bool:
    """Whether the scheduler gave this task up (the client cancelled it, or went away)."""
    state = worker.state.tasks.get(key)
    return state is None or state.state in ("cancelled", "released", "forgotten")


async def abort_sweep(sweep_id: str) -> None:
    """(``client.run``) Stop this sweep's task processes here; return once they are gone."""
    HOST.aborted.add(sweep_id)
    with HOST.lock:
        procs = list(HOST.running.get(sweep_id, ()))
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + ABORT_GRACE_S
    while time.monotonic() < deadline:
        with HOST.lock:
            if not HOST.running.get(sweep_id):
                return
        await asyncio.sleep(0.05)


async def plan_here(study_text: str, source: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """(``client.run``) The study planned on this host, as a local sweep would plan it here:
    each scenario with its skip reason, stopping rule, settings and data set."""
    return await asyncio.to_thread(_plan_here, study_text, source, options)


def _plan_here(study_text: str, source: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    from .host import host_facts
    from .planning import plan_study
    from .platforms.base import PlatformOptions
    from .study import Study

    study = Study.from_toml(study_text, source=source)
    opts = PlatformOptions(**{**options, "pin_cpus": tuple(options["pin_cpus"]) if options.get("pin_cpus") else None})
    out = []
    for p in plan_study(study, host_facts(), options=opts):
        limits = p.platform.options.io_limits if p.platform is not None else None
        throttle = None
        if limits is not None:
            throttle = {"read_bps": limits.read_bps, "read_iops": limits.read_iops}
        elif p.scenario.storage.value == "throttled":
            t = study.model.host.throttle
            throttle = {"read_bps": int(t.read_mb_s * 1_000_000), "read_iops": t.read_iops}
        out.append({"scenario": p.scenario.to_json(), "skip_reason": p.skip_reason, "notes": list(p.notes),
                    "emulated": p.emulated, "rule": dataclasses.asdict(p.rule),
                    "settings": dataclasses.asdict(p.settings), "throttle": throttle,
                    "data": {"app": p.scenario.app, "count": study.model.data_count, "seed": study.model.seed}})
    return out


# -- the task process itself ------------------------------------------------------------------------
class _Events:
    """The task process's report pipe (JSON lines)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.broken = False

    def send(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, default=str) + "\n").encode()
        with self.lock:
            if self.broken:
                raise BrokenPipeError("the worker is gone")
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:
                self.broken = True
                raise BrokenPipeError("the worker is gone") from None


def task_main(events_fd: int) -> int:
    """``python -m deploybench.fleet task --events-fd N``: one block set (see the module
    docstring). Exit status 0 when it was measured, 130 when stopped."""
    terminating = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        if terminating.is_set():
            return
        terminating.set()
        # whatever happens now, the process ends; the ledger reaps what it could not close
        watchdog = threading.Timer(ABORT_GRACE_S * 3, lambda: os._exit(3))
        watchdog.daemon = True  # not a reason to outlive the block set
        watchdog.start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    events = _Events(events_fd)
    # everything a block set needs is done now, before saying ready (a standby's head start)
    from . import execute  # noqa: F401
    from .host import git_revision, host_facts
    from .platforms.ledger import reap_dead

    host_facts()
    git_revision()
    try:
        events.send({"kind": "ready", "pid": os.getpid()})
        line = b""
        while not line.endswith(b"\n"):  # unbuffered: nothing after the line is read here
            chunk = os.read(0, 1)
            if not chunk:
                return 0  # the worker went before it had a block set for us
            line += chunk
        payload = json.loads(line)

        def lifeline() -> None:  # end-of-file on stdin: the worker is gone
            while os.read(0, 1 << 16):
                pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=lifeline, daemon=True, name="deploybench-lifeline").start()
        reap_dead()  # what a dead task process left on this host
        summary = _measure(TaskSpec.from_json(payload["spec"]), payload.get("context") or {}, events)
        events.send({"kind": "done", **summary})
    except (KeyboardInterrupt, BrokenPipeError):
        return 130
    # every session is closed and every record sent: end now, without waiting for the
    # interpreter to tear itself down (the next block set waits for this process to end)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _measure(spec: TaskSpec, context: dict[str, Any], events: _Events) -> dict[str, Any]:
    from .execute import BlockSet, EpochResult, run_block_set
    from .warnings import WarningCode, warning

    extra = []
    if context.get("local_peers"):
        cpus = ",".join(map(str, context.get("measure_cpus") or []))
        extra.append(warning(WarningCode.CONCURRENT_RUN,
                             f"one of {context['local_peers'] + 1} fleet workers on this machine "
                             f"(local:N), each on its own cores (this one: {cpus}); the others "
                             "measure at the same time"))

    def sink(record: Any) -> None:
        record.host["fleet"] = context
        record.warnings += extra
        try:
            events.send({"kind": "record", "record": record.to_json()})
        except BrokenPipeError:
            raise KeyboardInterrupt from None  # the worker is gone: stop, closing every session

    def on_start(contender: Any, slot: Any) -> None:
        event: dict[str, Any] = {"kind": "start", "scenario": contender.key, "started": time.time(),
                                 "what": "launch" if slot is None else "round"}
        if slot is not None:
            event.update(block=slot.block, block_id=slot.block_id, position=slot.position,
                         warmup_index=slot.warmup_index)
        try:
            events.send(event)
        except BrokenPipeError:
            raise KeyboardInterrupt from None

    contenders, failed = _contenders(spec)
    for record in failed:
        sink(record)
    out = EpochResult()
    if contenders:
        block_set = BlockSet(tuple(contenders), blocks=spec.blocks, warmup_rounds=spec.warmup_rounds,
                             epoch=spec.epoch, study=spec.study, seed=spec.seed,
                             allow_concurrent=spec.allow_concurrent)
        out = run_block_set(block_set, sink, on_start=on_start)
    return {"records": len(out.records) + len(failed), "launch_failures": out.launch_failures}


def _factory(spec: str) -> Any:
    import importlib

    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _contenders(spec: TaskSpec) -> tuple[list[Any], list[Any]]:
    """The block set's contenders, made here; a contender that cannot be (its data set, its
    platform) is a failed record instead."""
    from .conditions import io_limits_for
    from .execute import Contender, RunSettings
    from .host import host_facts, run_metadata
    from .platforms.base import PlatformOptions
    from .scenario import PlatformName, Scenario
    from .store import RunRecord

    make_platform = _factory(spec.platform_factory)
    out, failed = [], []
    for c in spec.contenders:
        scenario = Scenario.from_json(c.scenario)
        try:
            data_dir = _data_dir(c.data)
            options = PlatformOptions(**{**c.options, "pin_cpus": tuple(c.options["pin_cpus"])
                                         if c.options.get("pin_cpus") else None})
            if c.throttle is not None:
                limits, problem = io_limits_for(data_dir, c.throttle.get("read_bps"), c.throttle.get("read_iops"))
                if problem:
                    raise FleetError(f"storage=throttled on host {os.uname().nodename}: {problem}")
                options = dataclasses.replace(options, io_limits=limits)
            platform = make_platform(PlatformName(c.platform), options)
            why = platform.unavailable_reason(host_facts()) or platform.scenario_problem(scenario, host_facts())
            if why:
                raise FleetError(f"{scenario.name} cannot run on host {os.uname().nodename}: {why}")
            out.append(Contender(scenario, platform, data_dir, RunSettings(**c.settings)))
        except Exception as exc:  # noqa: BLE001 - a contender that cannot be made is a failed run
            now = time.time()
            failed.append(RunRecord(scenario=scenario, status="failed", started_at=now, finished_at=now,
                                    study=spec.study, repetition=spec.epoch, host=run_metadata(),
                                    error=_one_line(exc)))
    return out, failed


def _data_dir(data: DataSpec) -> Path:
    """The data set on this host: generated (or verified) from its recipe, then checked
    against the client's checksums."""
    if data.app is None or data.count is None or data.seed is None:
        path = Path(data.path)
        if not path.is_dir():
            raise FleetError(f"data folder {path} does not exist on host {os.uname().nodename}")
        return path
    from .apps import create_app
    from .datasets import read_manifest
    from .datasets.cache import ensure_data

    path = ensure_data(create_app(data.app), data.count, data.seed)
    if data.sha256 is not None:
        mine = read_manifest(path).get("sha256")
        if not mine or data_digest(mine) != data.sha256:
            raise FleetError(f"the {data.app} data set on host {os.uname().nodename} ({path}) differs from "
                             "the client's (file checksums): generate both with the same deploybench and "
                             "library versions")
    return path


# -- the client side -----------------------------------------------------------------------------------
def worker_addresses(client: Any) -> list[str]:
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def describe_workers(client: Any, addresses: Sequence[str]) -> dict[str, tuple[HostCard | None, str | None]]:
    """Each worker's card, or why there is none (one line)."""
    if not addresses:
        return {}
    try:
        answers = client.run(describe_host, workers=list(addresses), on_error="return")
    except Exception as exc:  # noqa: BLE001 - the whole call failed
        return {a: (None, f"worker {a}: cannot describe itself ({_one_line(exc)})") for a in addresses}
    out: dict[str, tuple[HostCard | None, str | None]] = {}
    for address in addresses:
        answer = answers.get(address)
        if isinstance(answer, BaseException):
            out[address] = (None, f"worker {address}: it cannot describe itself as a deploybench host "
                                  f"({_one_line(answer)}): install this deploybench version there")
        elif answer is None:  # a plain Dask worker, or one whose preload is still starting
            out[address] = (None, None)
        else:
            try:
                out[address] = (HostCard.from_json(answer), None)
            except (FleetError, TypeError) as exc:
                out[address] = (None, f"worker {address}: {_one_line(exc)}: install this deploybench "
                                      "version there")
    return out


def compatibility_problem(card: HostCard) -> str | None:
    """Why this client cannot use a host (one line), None when it can: the deploybench
    version and git revision must be this client's."""
    from . import __version__
    from .host import git_revision

    mine = (__version__, git_revision())
    if (card.version, card.git_revision) != mine:
        return (f"host {card.name} ({card.hostname}): it runs deploybench {card.version} (git "
                f"{card.git_revision}), this client {mine[0]} (git {mine[1]}): install the same "
                "version on every host")
    return None


def host_died(error: BaseException | None) -> bool:
    return error is not None and type(error).__name__ in ("KilledWorker", "CommClosedError")


def task_failure_text(error: BaseException) -> str:
    if type(error).__name__ == "KilledWorker":
        return "its host died"
    return _one_line(error)


def plan_fleet(executor: Any, study_path: Path, options: Any) -> list[Any]:
    """The study planned for every host class of the fleet, each on one of its hosts (skips
    are decided where the runs will be made): PlannedScenarios with their ``host_class``."""
    from .datasets.cache import data_dir_for
    from .execute import RunSettings
    from .platforms import create_platform
    from .platforms.cpu import IoLimits
    from .scenario import PlatformName, Scenario
    from .sweep import PlannedScenario, RaceRule

    text = Path(study_path).read_text()
    wire = dataclasses.asdict(options)
    wire.pop("io_limits", None)
    if wire.get("pin_cpus") is not None:
        wire["pin_cpus"] = list(wire["pin_cpus"])
    planned = []
    for host_class in executor.host_classes():
        address = executor.hosts_of(host_class.fingerprint)[0]
        try:
            items = executor.client.run(plan_here, text, Path(study_path).name, wire, workers=[address])[address]
        except Exception as exc:  # noqa: BLE001 - one line for people
            raise FleetError(f"host {executor.cards[address].name} could not plan the study: {_one_line(exc)}") from None
        for item in items:
            scenario = Scenario.from_json(item["scenario"])
            platform = None
            if item["skip_reason"] is None:
                throttle = item["throttle"]
                limits = None if throttle is None else IoLimits("auto", throttle["read_bps"], throttle["read_iops"])
                platform = create_platform(PlatformName(scenario.platform.value),
                                           dataclasses.replace(options, io_limits=limits))
            data = item["data"]
            planned.append(PlannedScenario(
                scenario, platform=platform, data_dir=data_dir_for(data["app"], data["count"], data["seed"]),
                rule=RaceRule(**item["rule"]), settings=RunSettings(**item["settings"]),
                skip_reason=item["skip_reason"], notes=list(item["notes"]), emulated=item["emulated"],
                host_class=host_class.fingerprint))
    return planned


def parse_fleet(text: str) -> tuple[str, str | int]:
    """``local:N`` -> ("local", N); ``tcp://HOST:PORT`` (or HOST:PORT) -> ("tcp", address)."""
    value = text.strip()
    if value.startswith("local:"):
        try:
            n = int(value.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise FleetError(f"--fleet {text!r}: local:N takes a number of workers >= 1, e.g. local:2")
        return "local", n
    if "://" not in value and value.count(":") == 1 and value.split(":")[1].isdigit():
        value = f"tcp://{value}"
    if "://" not in value or not value.split("://", 1)[1]:
        raise FleetError(f"--fleet takes tcp://HOST:PORT (a Dask scheduler) or local:N (N workers on this "
                         f"host), got {text!r}")
    return "tcp", value


def local_shares(n: int, usable: Sequence[int]) -> tuple[list[list[int]], int | None]:
    """Disjoint, equal shares of ``usable`` for ``n`` local workers (so they form one host
    class), and a housekeeping core from what is left over (None when nothing is)."""
    usable = sorted(usable)
    if n > len(usable):
        raise FleetError(f"--fleet local:{n}: this host has {len(usable)} usable CPUs and each local "
                         f"worker needs its own: use at most local:{len(usable)}")
    per = len(usable) // n
    shares = [usable[i * per:(i + 1) * per] for i in range(n)]
    rest = usable[n * per:]
    return shares, (rest[0] if rest else None)


class LocalFleet:
    """``--fleet local:N``: a LocalCluster scheduler in this process and N ``deploybench fleet
    worker`` processes, each on its own cores (``shares``: default disjoint equal shares of
    this host), which die with this process. ``pin=False`` leaves their cores alone
    (benchmarks of the fleet itself, whose platforms only sleep)."""

    def __init__(self, workers: int, *, pin: bool = True, env: dict[str, str] | None = None,
                 start_timeout_s: float = 180.0) -> None:
        self.n = workers
        self.pin = pin
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.cluster: Any = None
        self.client: Any = None

    def __enter__(self) -> "LocalFleet":
        import logging

        import dask
        from distributed import Client, LocalCluster

        from .host import usable_cpus

        shares: list[list[int] | None]
        housekeeping: int | None = None
        if self.pin:
            shares_, housekeeping = local_shares(self.n, usable_cpus())
            shares = list(shares_)
        else:
            shares = [None] * self.n
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            # the scheduler in this process; its workers are processes of their own (tcp)
            self.cluster = LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                                        dashboard_address=None, silence_logs=logging.CRITICAL)
        try:
            self.client = Client(self.cluster)
            folder = Path(tempfile.mkdtemp(prefix="deploybench-fleet-"))
            hostname = os.uname().nodename
            for i, share in enumerate(shares):
                cmd = [sys.executable, "-m", "deploybench", "fleet", "worker", "--scheduler",
                       self.cluster.scheduler_address, "--name", f"{hostname}/w{i}",
                       "--local-peers", str(self.n - 1)]
                if share is not None:
                    cmd += ["--cpus", ",".join(map(str, share)),
                            "--housekeeping-cpu", "none" if housekeeping is None else str(housekeeping)]
                log = folder / f"worker-{i}.log"
                self.logs.append(log)
                with open(log, "wb") as out:
                    self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                                       stderr=subprocess.STDOUT, env=self.env,
                                                       preexec_fn=_die_with_me(), start_new_session=True))
            self._wait_for_workers()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_for_workers(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while len(worker_addresses(self.client)) < self.n:
            for proc, log in zip(self.procs, self.logs):
                if proc.poll() is not None:
                    said = _last_line(log.read_text(errors="replace"))
                    raise FleetError(f"a local fleet worker ended as it started (exit status "
                                     f"{proc.returncode}){': ' + said if said else ''}")
            if time.monotonic() > deadline:
                raise FleetError(f"the {self.n} local fleet workers did not start within "
                                 f"{self.start_timeout_s:g} s (logs: {self.logs[0].parent})")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def __exit__(self, *exc: Any) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + ABORT_GRACE_S + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        for log in self.logs:
            log.unlink(missing_ok=True)
        if self.logs:
            try:
                self.logs[0].parent.rmdir()
            except OSError:
                pass


def _die_with_me() -> Any:
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class _Connection:
    """``--fleet tcp://HOST:PORT``: a client of a running scheduler."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Any = None

    def __enter__(self) -> "_Connection":
        import logging

        from distributed import Client

        logging.getLogger("distributed").setLevel(logging.ERROR)
        try:
            self.client = Client(self.address, timeout=10)
        except Exception as exc:  # noqa: BLE001 - one line for people
            raise FleetError(f"cannot reach the Dask scheduler at {self.address} ({_one_line(exc)}): start one "
                             "with `dask scheduler --port 8786` on that host, or check the address") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.client is not None:
            self.client.close()


def open_fleet(text: str) -> Any:
    """A context manager with ``.client``: a local fleet or a connection to a scheduler."""
    kind, value = parse_fleet(text)
    if kind == "local":
        return LocalFleet(int(value))
    return _Connection(str(value))


def host_lines(cards: dict[str, tuple[HostCard | None, str | None]]) -> list[str]:
    """``fleet hosts``: one line per host, then one per host class."""
    lines = []
    classes: dict[str, list[HostCard]] = {}
    for address, (card, problem) in sorted(cards.items()):
        if card is None:
            lines.append(f"refused  {address}: {problem or NOT_A_BENCH_HOST.format(address=address)}")
            continue
        problem = compatibility_problem(card)
        state = "refused" if problem else "ok"
        lines.append(f"{state:<8} {card.name} ({card.hostname}, {address}): class {card.fingerprint}, "
                     f"CPUs {','.join(map(str, card.cpus))}, can run {' '.join(card.can_run()) or 'nothing'}"
                     f"{', KVM' if card.kvm == 'ok' else ''}{', GPU' if 'gpu' in card.resources else ''}; "
                     f"deploybench {card.version} (git {card.git_revision})"
                     + (f"; Dask threads on CPU {card.housekeeping_cpu}" if card.housekeeping_cpu is not None
                        else "; Dask threads share the measured cores")
                     + (f": {problem}" if problem else ""))
        if not problem:
            classes.setdefault(card.fingerprint, []).append(card)
    for fingerprint, members in sorted(classes.items()):
        lines.append(f"class {fingerprint}: {members[0].label}; {len(members)} host(s): "
                     f"{', '.join(sorted(c.name for c in members))}")
    return lines


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deploybench.fleet")
    sub = parser.add_subparsers(dest="command", required=True)
    task = sub.add_parser("task", help="(started by a fleet worker) measure one block set")
    task.add_argument("--events-fd", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "task":
        return task_main(args.events_fd)
    return 2


if __name__ == "__main__":
    sys.exit(main())
