"""``python -m deploybench.worker --serve stdio|files [--channel-dir DIR] --job PROTOTYPE.json``

A warm worker. It loads the prototype job's app and model once (untimed), warms it up and
says ``ready``; then every ``job`` message is one *round*: one LoadGen test whose result
document (:class:`WorkerResult`) goes to the job's ``result_path``, answered by a ``result``
message. It ends on ``stop`` and at end-of-file of its channel (its owner is gone: it exits
at once, in the middle of a round too); on bare metal and in runc/crun containers it also
dies with its parent process (``PR_SET_PDEATHSIG``). See ``channel.py`` for the protocol.

Exit status 0 after ``stop`` or end-of-file (at once: no interpreter shutdown), 1 when the
app could not be loaded (the ``error`` message says why), 2 when the prototype job file or
the arguments are unusable.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..apps.base import INPUT_READS
from ..warnings import WarningCode, warning
from . import environment as env
from .channel import Channel, ChannelError, FileChannel, StreamChannel, message
from .job import SchemaError, WorkerJob, WorkerResult

_PR_SET_PDEATHSIG = 1
#: what a round's job may not change: the worker loaded exactly this
LOADED_FIELDS = ("app", "data_dir", "model_size", "backend", "threads", "device")


def _budget(affinity: list[int], quota_cores: float | None) -> int:
    budget = len(affinity)
    if quota_cores is not None:
        budget = min(budget, max(1, math.ceil(quota_cores - 1e-9)))
    return budget


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent != 0 and os.getppid() != parent:  # orphaned before the prctl
        os._exit(0)


@dataclass
class Loaded:
    """The app as the worker loaded it, once per launch."""

    job: WorkerJob
    app: Any
    torch: Any
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)


def load(job: WorkerJob, started_wall: float) -> Loaded:
    """Build the app and its model (untimed) and warm it up; raises on failure."""
    env.set_thread_env(job.threads)
    from ..apps import create_app
    from .driver import LoadgenDriver

    timings: dict[str, float] = {"worker_start_wall": started_wall}
    if job.debug_hang_s:
        time.sleep(job.debug_hang_s)
    app = create_app(job.app)
    if job.device != "cpu":  # the CUDA context is created now, and timed apart
        from .gpu import start_cuda

        timings["cuda_init_s"] = start_cuda(job.device)
    t = time.perf_counter()
    kwargs = {"device": job.device} if job.device != "cpu" else {}
    app.load(Path(job.data_dir), job.model_size, job.backend, job.threads, **kwargs)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(job.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already started by the app's load: leave it
            pass
    timings["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    LoadgenDriver(app, batch_size=job.batch_size, inference_only=False).warm_up(job.warmup_batches)
    timings["warmup_s"] = time.perf_counter() - t
    frozen = freeze_startup_heap()
    timings["ready_wall"] = time.time()
    return Loaded(job, app, torch, timings, {"isolation": env.isolation_facts(),
                                             "os_cpu_count": os.cpu_count(),
                                             "gc_frozen_objects": frozen})


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now (the interpreter's, torch's import-time
    objects, the app and its model) out of the collector's sight (``gc.freeze``); returns how
    many. Without it the collector's first full pass over that start-up heap lands in a timed
    round: for nlp tiny a 49 ms pause in the third round of every launch (+20% on its mean),
    which a long-running server pays once at start. The garbage the requests make is still
    collected, and timed, as in any server; only the start-up heap is no longer rescanned."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def mismatch(loaded: Loaded, job: WorkerJob) -> str | None:
    changed = [f for f in LOADED_FIELDS if getattr(job, f) != getattr(loaded.job, f)]
    if changed:
        return (f"this worker loaded {loaded.job.app} ({loaded.job.model_size}, {loaded.job.backend}); "
                f"a round may not change {', '.join(changed)}: open another session")
    return None


def run_round(loaded: Loaded, job: WorkerJob) -> WorkerResult:
    """One LoadGen test in the warm worker; the result says what happened, whatever it was."""
    from .driver import LoadgenDriver

    result = WorkerResult(status="error", job=job.to_json())
    result.timings.update({k: v for k, v in loaded.timings.items()})
    try:
        problem = mismatch(loaded, job)
        if problem:
            raise ValueError(problem)
        if job.debug_hang_s:  # test hook: a round that hangs
            time.sleep(job.debug_hang_s)
        affinity = sorted(os.sched_getaffinity(0))
        limits = env.cgroup_limits()
        torch = loaded.torch
        driver = LoadgenDriver(loaded.app, batch_size=job.batch_size,
                               inference_only=job.inference_only)
        log_dir = Path(job.log_dir) if job.log_dir else Path(job.result_path).parent / "loadgen"
        INPUT_READS.reset()
        before = env.round_counters()
        result.timings["first_query_wall"] = time.time()
        t = time.perf_counter()
        result.loadgen = driver.run(scenario=job.loadgen_scenario, requests=job.requests,
                                    log_dir=log_dir, server_target_qps=job.server_target_qps,
                                    server_target_latency_ms=job.server_target_latency_ms,
                                    server_latency_percentile=job.server_latency_percentile)
        result.timings["run_s"] = time.perf_counter() - t
        after = env.round_counters()
        result.samples = driver.log.to_json()
        result.samples["sample_id"] = [driver.ids[i] for i in driver.log.sample_index]

        budget = _budget(affinity, limits["cpu_quota_cores"])
        pools = env.thread_pools()
        result.environment = {
            **loaded.environment,
            "affinity": affinity,
            "cgroup": limits,
            "cpu_budget": budget,
            "threads_requested": job.threads,
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "torch_interop_threads": torch.get_num_interop_threads() if torch is not None else None,
            "thread_pools": pools,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            **env.counter_deltas(before, after), **INPUT_READS.to_json(),
            # the memory of the kernel the worker runs on, after the round: in a guest the
            # guest's own (its kernel and page cache are the host's footprint.py reads it)
            "system_meminfo_kb": env.meminfo(),
        }
        if job.device != "cpu":  # the GPU used and its memory in use after the round
            from .gpu import cuda_environment

            result.environment["gpu"] = cuda_environment(job.device)
        if job.device != "cpu":  # the GPU used and its memory in use after the run
            from .gpu import cuda_environment
            result.environment["gpu"] = cuda_environment(job.device)
        over = [p for p in pools if (p.get("threads") or 0) > budget]
        if torch is not None and torch.get_num_threads() > budget:
            over.append({"api": "torch", "threads": torch.get_num_threads()})
        if over:
            names = ", ".join(f"{p['api']}={p['threads']}" for p in over)
            result.warnings.append(warning(
                WarningCode.THREADS_OVER_BUDGET,
                f"thread pools larger than the CPU budget of {budget}: {names}"))
        if job.requests < 20:
            result.warnings.append(warning(WarningCode.FEW_SAMPLES,
                                           f"only {job.requests} requests per run"))
        result.status = "ok"
    except Exception as exc:  # the result must say why, whatever happened
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        traceback.print_exc(file=sys.stderr)
    finally:
        result.metadata = env.metadata(job.cores, job.host_cores, job.git_revision)
        result.timings["worker_end_wall"] = time.time()
    return result


class Serving:
    """The worker's loop over its channel; end-of-file ends it at once, busy or not."""

    def __init__(self) -> None:
        self.busy = threading.Event()

    def on_eof(self) -> None:
        if self.busy.is_set():
            os._exit(0)  # the owner is gone mid-round: nobody will read this round

    def serve(self, channel: Channel, prototype: WorkerJob, started_wall: float) -> int:
        try:
            loaded = load(prototype, started_wall)
        except BaseException as exc:  # noqa: BLE001 - say why, then exit
            traceback.print_exc(file=sys.stderr)
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            _send(channel, message("error", error=error))
            return 1
        _send(channel, message("ready", pid=os.getpid(), timings=loaded.timings,
                               environment=loaded.environment))
        while True:
            msg = channel.receive()
            if msg is None or msg["type"] == "stop":
                return 0
            if msg["type"] != "job":
                print(f"deploybench worker: ignoring a {msg['type']!r} message", file=sys.stderr)
                continue
            self.busy.set()
            try:
                try:
                    job = WorkerJob.from_json(msg["job"])
                except (SchemaError, TypeError, KeyError) as exc:
                    _send(channel, message("result", seq=msg.get("seq"), status="error", path=None,
                                           error=f"unusable job: {exc}"))
                    continue
                result = run_round(loaded, job)
                result.write(Path(job.result_path))
                _send(channel, message("result", seq=msg.get("seq"), status=result.status,
                                       path=job.result_path, error=result.error))
            finally:
                self.busy.clear()


def quick_exit(code: int) -> None:
    """Exit now, after flushing what the app printed. Every round's result is already
    written and answered, so nothing is left to do; an interpreter's ordinary shutdown, with
    torch loaded, takes 0.5-0.7 s on a 2-core host, which every closed session paid (a
    launch epoch of five scenarios spent 3 s closing them)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _send(channel: Channel, msg: dict[str, Any]) -> None:
    try:
        channel.send(msg)
    except ChannelError:  # the owner is gone
        os._exit(0)


def stdio_channel(on_eof: Any) -> StreamChannel:
    """The channel on a private copy of stdin/stdout; fd 1 then goes to stderr and fd 0 to
    /dev/null, so nothing an app prints can reach the channel."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    return StreamChannel(read_fd, write_fd, on_eof=on_eof)


def main(argv: list[str] | None = None) -> int:
    started_wall = time.time()
    parser = argparse.ArgumentParser(prog="python -m deploybench.worker")
    parser.add_argument("--serve", choices=("stdio", "files"), required=True,
                        help="the job channel: stdin/stdout, or numbered files in --channel-dir")
    parser.add_argument("--channel-dir", help="the shared folder of the files channel")
    parser.add_argument("--job", required=True, help="the prototype job (app and model to load)")
    parser.add_argument("--die-with-parent", action="store_true",
                        help="exit when the parent process dies (PR_SET_PDEATHSIG)")
    args = parser.parse_args(argv)
    if args.die_with_parent:
        die_with_parent()
    try:
        prototype = WorkerJob.read(Path(args.job))
    except (OSError, ValueError, SchemaError, TypeError) as exc:
        print(f"deploybench worker: unusable job file {args.job}: {exc}", file=sys.stderr)
        return 2
    serving = Serving()
    if args.serve == "stdio":
        channel: Channel = stdio_channel(serving.on_eof)
    else:
        if not args.channel_dir:
            print("deploybench worker: --serve files needs --channel-dir", file=sys.stderr)
            return 2
        channel = FileChannel(Path(args.channel_dir), side="worker")
    return serving.serve(channel, prototype, started_wall)


if __name__ == "__main__":
    quick_exit(main())
