"""What every platform session shares: talking to the warm worker over its channel.

A platform's session class launches its own things (a cgroup and a process, a container, a
guest) and hands this base class the channel and a way to tell whether the worker is still
there; the base class waits for ``ready``, measures rounds (one ``job`` message, one result
document), turns every way a round can end into a RunOutcome, and closes idempotently.

Round paths: each round gets ``<session folder>/round-NNNN/`` for its result and LoadGen
logs, removed once the result has been read (the record keeps what matters).

Around every round the base class also samples, from the host side, the processes the
session launched (``_footprint_parts``: the worker, QEMU with its vCPU threads, a shim, an
engine...) and the host's RAPL energy counters: each round's facts carry its
``footprint`` (``footprint.RoundFootprint``) and, where the host has RAPL, its ``energy``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .. import footprint
from ..energy import EnergyMeter
from ..worker.channel import Channel, ChannelError, message
from ..worker.job import SchemaError, WorkerJob, WorkerResult
from . import procfs
from .base import LaunchError, LaunchFacts, RunOutcome, last_line, tail
from .ledger import LedgerHandle

#: how long ``close`` lets a worker end by itself after ``stop`` before killing it
STOP_GRACE_S = 5.0


class WorkerSession:
    """Base class of every platform session (see the module docstring). Subclasses set
    ``channel`` and implement ``_alive``, ``_kill``, ``_release`` (remove what they made),
    ``pause``/``resume`` and, optionally, ``_round_snapshot``/``_round_facts`` and
    ``_console``."""

    def __init__(self, facts: LaunchFacts, folder: Path, ledger: LedgerHandle) -> None:
        self.facts = facts
        self.folder = folder
        self.ledger = ledger
        self.channel: Channel | None = None
        self.rounds = 0
        self.ended: str | None = None  # why the session is over (None while it is alive)
        self.paused = False
        self._closed = False
        self._energy = EnergyMeter()

    # -- to implement ------------------------------------------------------------------------
    def _alive(self) -> bool:
        raise NotImplementedError

    def _kill(self) -> None:
        """Stop the worker (and the platform) now, whatever it is doing."""
        raise NotImplementedError

    def _release(self) -> None:
        """Remove everything the launch made (after the worker is gone)."""
        raise NotImplementedError

    def _round_snapshot(self) -> Any:
        return None

    def _round_facts(self, before: Any, after: Any) -> dict[str, Any]:
        return {}

    def _footprint_parts(self) -> list[footprint.FootprintPart]:
        """The host processes this session's footprint is made of (the worker first)."""
        return []

    def _console(self) -> str:
        """The tail of what the worker (or the guest) printed, for failures."""
        return tail(self.folder / "stderr.txt")

    def _exit_detail(self) -> str:
        return ""

    def pause(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.ended is None and not self._closed and self._alive()

    def _after_ready(self) -> None:
        """The platform's own steps once its worker is warm (limits, boot facts)."""

    def ready(self, timeout_s: float) -> None:
        """Wait until the worker is warm, at most ``timeout_s`` after the launch began (so
        sessions started together each get their own full timeout), then take the
        platform's after-ready steps. Raises LaunchError (one line) having closed the session."""
        try:
            self.wait_ready(max(self.facts.launch_wall + timeout_s - time.time(), 0.0))
            self._after_ready()
        except BaseException:
            self.close()
            raise

    def wait_ready(self, timeout_s: float) -> None:
        """Wait for the worker's ``ready``; raise LaunchError (one line) when it fails."""
        assert self.channel is not None
        try:
            msg = self.channel.receive(timeout_s)
        except TimeoutError:
            self._fail_launch(f"the worker was not ready within {timeout_s:g} s")
        except ChannelError as exc:
            self._fail_launch(f"the worker spoke nonsense: {exc}")
        if msg is None:
            detail = self._exit_detail()
            said = last_line(self._console())
            self._fail_launch(f"the worker ended before it was ready{detail}{': ' + said if said else ''}")
        if msg["type"] == "error":
            self._fail_launch(f"the worker could not load the app: {msg.get('error')}")
        if msg["type"] != "ready":
            self._fail_launch(f"the worker sent {msg['type']!r} instead of ready")
        timings = msg.get("timings") or {}
        self.facts.ready_wall = time.time()
        self.facts.details["worker_pid"] = msg.get("pid")
        for key in ("load_s", "warmup_s"):
            if key in timings:
                self.facts.details[f"worker_{key}"] = round(float(timings[key]), 4)

    def _fail_launch(self, why: str) -> None:
        console = self._console()
        self.ended = why
        self.close()
        raise LaunchError(f"{self.facts.platform} launch failed: {why}", console, self.facts.to_json())

    def measure(self, job: WorkerJob, timeout_s: float) -> RunOutcome:
        facts = self.facts.to_json()
        if not self.alive:
            return RunOutcome("failed", error=f"the session is over: {self.ended or 'its worker is gone'}",
                              host_facts=facts)
        assert self.channel is not None
        if self.paused:
            self.resume()
        self.rounds += 1
        number = self.rounds
        round_dir = self.folder / f"round-{number:04d}"
        round_dir.mkdir(mode=0o777)
        round_dir.chmod(0o777)  # a container or guest may write as another user
        job = job.with_(result_path=str(round_dir / "result.json"), log_dir=str(round_dir / "loadgen"))
        before = self._round_snapshot()
        parts = self._footprint_parts()
        cpu_before = sample_cpu(parts)
        energy_before = self._energy.sample()
        clock = time.monotonic()
        started = time.time()
        status, error, result = "failed", None, None
        try:
            self.channel.send(message("job", seq=number, job=job.to_json()))
            reply = self.channel.receive(timeout_s)
            if reply is None:
                self.ended = "the worker died during a round"
                error = f"the worker died during the round{self._exit_detail()}"
            elif reply["type"] != "result":
                error = f"the worker sent {reply['type']!r} instead of a result"
            else:
                result, problem = _read_result(Path(job.result_path))
                if result is None:
                    error = problem
                elif result.status != "ok":
                    error = result.error or reply.get("error") or "the worker failed"
                else:
                    status = "ok"
        except TimeoutError:
            status, error = "timeout", f"killed after the {timeout_s:g} s timeout"
            self.ended = error
            self._kill()
        except ChannelError as exc:
            self.ended = error = f"the job channel broke: {exc}"
        except KeyboardInterrupt:
            status, error = "interrupted", "interrupted (Ctrl-C)"
            self.ended = error
            self._kill()
        ended = time.time()
        after = self._round_snapshot() if self.ended is None or status == "timeout" else None
        facts.update({"launch_round": number, "round_wall": started, "round_end_wall": ended})
        facts.update(self._round_facts(before, after))
        if result is not None and self.ended is None:
            facts.update(self._round_costs(parts, cpu_before, energy_before, clock, result))
        if result is not None and "first_query_wall" in result.timings:
            facts["round_start_latency_s"] = round(result.timings["first_query_wall"] - started, 4)
        console = "" if status == "ok" else self._console()
        if status == "failed" and result is None and error:
            said = last_line(console)
            if said and said not in error:
                error = f"{error}: {said}"
        shutil.rmtree(round_dir, ignore_errors=True)
        return RunOutcome(status, result, error, facts, console)

    def _round_costs(self, parts: list[footprint.FootprintPart], cpu_before: dict[int, footprint.CpuSample],
                     energy_before: Any, clock: float, result: WorkerResult) -> dict[str, Any]:
        """The round's footprint and energy (see the module docstring)."""
        interval = time.monotonic() - clock
        out: dict[str, Any] = {}
        if parts:
            out["footprint"] = footprint.assemble(
                parts, cpu_before, sample_cpu(parts), sample_memory(parts), result.environment,
                ram_mib=self.facts.details.get("memory_mib"), interval_s=interval).to_json()
        requests = len(result.samples.get("preprocess_ns") or [])
        energy = self._energy.round(energy_before, self._energy.sample(), requests)
        if energy is not None:
            out["energy"] = energy.to_json()
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.channel is not None and self.ended is None and self._alive():
                if self.paused:
                    try:
                        self.resume()
                    except Exception:  # noqa: BLE001 - it is killed below anyway
                        pass
                try:
                    self.channel.send(message("stop"))
                except ChannelError:
                    pass
                deadline = time.monotonic() + STOP_GRACE_S
                while self._alive() and time.monotonic() < deadline:
                    time.sleep(0.02)
            self._kill()
        finally:
            try:
                self._release()
            finally:
                if self.channel is not None:
                    self.channel.close()
                shutil.rmtree(self.folder, ignore_errors=True)
                self.ledger.close()

    def __enter__(self) -> "WorkerSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sample_cpu(parts: list[footprint.FootprintPart]) -> dict[int, footprint.CpuSample]:
    """CPU seconds of each part (by pid) and of a VMM's vCPU threads, now."""
    out: dict[int, footprint.CpuSample] = {}
    for part in parts:
        vcpu = None
        if part.vcpu_threads:
            values = [procfs.thread_cpu_s(part.pid, tid) for tid in part.vcpu_threads]
            vcpu = None if any(v is None for v in values) else sum(v for v in values if v is not None)
        out[part.pid] = footprint.CpuSample(procfs.process_cpu_s(part.pid), vcpu)
    return out


def sample_memory(parts: list[footprint.FootprintPart]) -> dict[int, footprint.MemorySample]:
    out: dict[int, footprint.MemorySample] = {}
    for part in parts:
        mem = procfs.memory(part.pid)
        if mem is not None:
            out[part.pid] = footprint.MemorySample(mem.rss_kb, mem.peak_rss_kb)
    return out


def _read_result(path: Path) -> tuple[WorkerResult | None, str | None]:
    if not path.exists():
        return None, "the worker wrote no result"
    try:
        return WorkerResult.read(path), None
    except (ValueError, SchemaError, OSError) as exc:
        return None, f"unreadable worker result: {exc}"


def session_folder(runs_root: Path, launch_id: str) -> Path:
    """A fresh, world-writable folder for one session (containers and guests write in it)."""
    runs_root.mkdir(parents=True, exist_ok=True)
    folder = runs_root / f"{launch_id[:12]}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    return folder

