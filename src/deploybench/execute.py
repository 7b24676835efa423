"""Measuring on this host: launch epochs of warm sessions, interleaved blocks, one stored
record per round.

The unit of work is a :class:`BlockSet`: the scenarios to compare (one app and workload on
one host), how many blocks to run and how many warm-up rounds each launch gets first. Its
execution (:func:`run_block_set`) is one *launch epoch*:

1. every scenario's platform is launched once (``Platform.open``, then ``ready``: a warm
   worker that has loaded the app and model) and paused. The first epoch (``epoch`` 0)
   launches one session at a time, so its start latencies are the platform's own (the
   footprint's "starts in"); later epochs start sessions in waves of as many as the host has
   usable CPUs, each loading while the others do, and wait for each wave to be ready: on
   this 2-core host 8 nlp launches took 10 s one after the other, a fifth to a half of every
   epoch. Each launch records ``launched_with`` (the sessions of its wave); nothing is
   measured until every session is launched and paused;
2. each launch does its warm-up rounds (stored with status ``warmup``, never averaged);
3. each *block* runs one round of every scenario, in a fresh random order, resuming the
   session being measured and pausing it after, so a session not being measured costs the
   host nothing and drift of the host hits every scenario of a block alike (randomized
   multiple interleaved trials);
4. every session is closed, whatever happened.

A round becomes a :class:`RunRecord` here and only here: the job, the host conditions
around it (``conditions.applied``), the host-side warnings, the launch and block it belongs
to, and a run key that makes a study resumable. A failed launch is a failed record too.
The ``sink`` stores each record as soon as it exists, so an interrupted epoch loses at most
the round in flight, and that one is stored as ``interrupted``.
"""
from __future__ import annotations

import hashlib
import random
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import conditions
from .datasets.cache import home
from .host import git_revision, host_facts, run_metadata
from .platforms.base import LaunchError, Platform, PlatformError, RunOutcome, SessionSetup
from .platforms.ledger import Ledger
from .scenario import CpuMode, HostLoad, Processor, Scenario
from .store import RunRecord
from .warnings import WarningCode, warning
from .worker.job import WorkerJob


@dataclass(frozen=True)
class RunSettings:
    timeout_s: float = 900.0  # one round, and one launch
    warmup_batches: int = 1  # untimed batches when the worker loads
    seed: int = 0
    #: Server only: the latency bound LoadGen's VALID checks (a capacity search sets its SLO);
    #: None keeps LoadGen's defaults (100 ms at p99)
    server_target_latency_ms: float | None = None
    server_latency_percentile: float | None = None
    #: share of the host's CPU capacity used outside the session above which a round gets a
    #: HOST_BUSY warning (0 turns the check off)
    busy_threshold: float = 0.25


@dataclass(frozen=True)
class Contender:
    """One scenario ready to be measured here."""

    scenario: Scenario
    platform: Platform
    data_dir: Path
    settings: RunSettings = RunSettings()
    #: sets apart two contenders of one scenario in a block set (an A/A study: the same
    #: scenario on two cpusets); None: the scenario's key
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.scenario.key

    def data_set(self) -> dict[str, Any]:
        """The data set's identity (file count and seed, from its manifest): part of a row's."""
        import json

        try:
            manifest = json.loads((Path(self.data_dir) / "manifest.json").read_text())
        except (OSError, ValueError):
            return {"path": str(self.data_dir)}
        return {"count": manifest.get("count"), "seed": manifest.get("seed"), "path": str(self.data_dir)}


@dataclass(frozen=True)
class BlockSet:
    """One launch epoch of ``contenders``: ``blocks`` blocks after ``warmup_rounds`` per launch.

    ``epoch`` numbers the launch epoch within the study (run keys and block ids use it);
    ``study`` None means the runs belong to no study (``deploybench run``)."""

    contenders: tuple[Contender, ...]
    blocks: int
    warmup_rounds: int = 0
    epoch: int = 0
    study: str | None = None
    seed: int = 0
    allow_concurrent: bool = False


def build_job(scenario: Scenario, *, data_dir: Path, settings: RunSettings) -> WorkerJob:
    """The job of every round of ``scenario`` (its paths are filled in by the session). A
    Server scenario's arrival rate is its ``target_qps`` (the worker's default when a stored
    scenario predates it)."""
    rate = {} if scenario.target_qps is None else {"server_target_qps": scenario.target_qps}
    if settings.server_target_latency_ms is not None:
        rate["server_target_latency_ms"] = settings.server_target_latency_ms
    if settings.server_latency_percentile is not None:
        rate["server_latency_percentile"] = settings.server_latency_percentile
    return WorkerJob(
        app=scenario.app,
        data_dir=str(data_dir),
        result_path="",
        model_size=scenario.model_size,
        backend=scenario.backend,
        device="cuda" if scenario.processor is Processor.GPU else "cpu",
        loadgen_scenario=scenario.loadgen_scenario.value,
        requests=scenario.requests,
        batch_size=scenario.batch_size,
        inference_only=scenario.inference_only,
        threads=scenario.cores,
        cores=scenario.cores,
        host_cores=host_facts().cores,
        warmup_batches=settings.warmup_batches,
        seed=settings.seed,
        scenario_name=scenario.name,
        git_revision=git_revision(),
        **rate,
    )


def run_key(study: str, scenario: Scenario, slot: str) -> str:
    """Idempotent id of a study's round ``slot`` (e.g. ``e3b1``: epoch 3, block 1) of ``scenario``."""
    return hashlib.sha256(f"{study}\0{scenario.key}\0{slot}".encode()).hexdigest()[:32]


def host_warnings(scenario: Scenario, outcome: RunOutcome) -> list[dict[str, str]]:
    """Warnings only the host can see: throttling, and cores other than those given."""
    warnings: list[dict[str, str]] = []
    facts = outcome.host_facts
    stat = facts.get("cpu_stat") or {}
    periods, throttled = stat.get("nr_periods", 0), stat.get("nr_throttled", 0)
    if periods and throttled / periods >= 0.05:
        warnings.append(warning(
            WarningCode.CGROUP_THROTTLED,
            f"throttled in {throttled} of {periods} CFS periods "
            f"({stat.get('throttled_ms', 0):.0f} ms held back)"))
    limits = facts.get("limits") or {}
    result = outcome.result
    if result is not None and result.environment and limits and facts.get("platform") in ("BM", "CN"):
        got = result.environment.get("affinity")
        if scenario.cpu_mode is CpuMode.PIN and got is not None and got != limits.get("cpus"):
            warnings.append(warning(
                WarningCode.AFFINITY_MISMATCH,
                f"pinned to {limits.get('cpus')} but the worker ran on {got}"))
        quota = (result.environment.get("cgroup") or {}).get("cpu_quota_cores")
        wanted = limits.get("quota_cores")
        if scenario.cpu_mode is CpuMode.VNL and wanted and quota is not None and abs(quota - wanted) > 1e-6:
            warnings.append(warning(
                WarningCode.AFFINITY_MISMATCH,
                f"a quota of {wanted} cores was set but the worker saw {quota}"))
    return warnings


@dataclass
class Slot:
    """Where a round sits: its launch epoch, its block (None for a warm-up) and position."""

    epoch: int
    block: int | None
    block_id: str | None
    position: int | None
    warmup_index: int | None = None
    key: str | None = None  # a slot name of its own (a capacity probe's), for the run key

    @property
    def name(self) -> str:
        if self.key is not None:
            return self.key
        return f"e{self.epoch}w{self.warmup_index}" if self.block is None else f"e{self.epoch}b{self.block}"


@dataclass
class EpochResult:
    records: list[RunRecord] = field(default_factory=list)
    launch_failures: dict[str, str] = field(default_factory=dict)  # scenario key -> why


def make_record(contender: Contender, outcome: RunOutcome, *, slot: Slot, study: str | None,
                started: float, finished: float, host: dict[str, Any],
                extra_warnings: Sequence[dict[str, str]] = (), warmup: bool = False) -> RunRecord:
    """A round (or a failed launch) as a stored record."""
    scenario = contender.scenario
    result = outcome.result
    status = "warmup" if (warmup and outcome.status == "ok") else outcome.status
    facts = outcome.host_facts
    record = RunRecord(
        scenario=scenario, status=status, started_at=started, finished_at=finished,
        run_key=(run_key(study, scenario, slot.name) if study is not None and outcome.status != "interrupted"
                 else None),
        study=study, repetition=slot.epoch, error=outcome.error, host=host, platform=facts,
        console_tail=outcome.console_tail if outcome.status != "ok" else "",
        launch_id=facts.get("launch_id"), launch_round=facts.get("launch_round"),
        block_id=slot.block_id, block_pos=slot.position)
    if result is not None:
        record.environment = result.environment
        record.metadata = result.metadata
        record.loadgen = result.loadgen
        record.timings = result.timings
        record.warnings = list(result.warnings)
        if result.status == "ok":
            record.samples = result.samples
    record.warnings += host_warnings(scenario, outcome) + list(extra_warnings)
    if result is not None and result.status == "ok":
        record.warnings += conditions.evidence_warnings(scenario, result.environment, facts)
        validity = str(result.loadgen.get("validity", "")).upper()
        if validity == "INVALID":
            record.warnings.append(warning(
                WarningCode.LOADGEN_INVALID,
                f"LoadGen judged the run INVALID: {loadgen_reason(result.loadgen) or 'see its log'}"))
    return record


def loadgen_reason(loadgen: Mapping[str, Any]) -> str:
    """LoadGen's own words on why a run is INVALID (from its detail log), else the early
    stopping or latency-bound verdict behind it."""
    why = str(loadgen.get("invalid_reason") or "").strip() or "; ".join(
        str(e) for e in loadgen.get("errors", []) if e and "Max query count reached" not in str(e))
    if not why and loadgen.get("early_stopping_met") is False:
        text = " ".join(str(loadgen.get("early_stopping_result") or "").split())
        why = "early stopping: " + (text.replace("* ", "").strip() or "not met")
    if not why and loadgen.get("perf_constraints_met") is False:
        why = "its latency bound was not met"
    return why[:200]


class RoundMeasurer:
    """Measures one round of an open session, with the host conditions around it; the
    record is returned, not stored (the caller hands it to its sink)."""

    def __init__(self, study: str | None, ledger: Ledger) -> None:
        self.study = study
        self.ledger = ledger
        self.usable = host_facts().usable_cpus

    def __call__(self, contender: Contender, session: Any, slot: Slot, warmup: bool) -> RunRecord:
        import time

        scenario = contender.scenario
        host = run_metadata()
        host["data_set"] = contender.data_set()
        job = build_job(scenario, data_dir=contender.data_dir, settings=contender.settings)
        extra: list[dict[str, str]] = []
        started = time.time()
        with conditions.applied(scenario, usable=self.usable, scenario_cpus=session.facts.pinned_cpus,
                                io_limits=contender.platform.options.io_limits) as (facts, warns):
            host["conditions"] = facts
            extra += warns
            others_before = self.ledger.live_others()
            session.resume()
            with conditions.HostMeter() as meter:
                started = time.time()
                outcome = session.measure(job, contender.settings.timeout_s)
            if session.alive:
                session.pause()
            others = {e.session_id for e in others_before} | {e.session_id for e in self.ledger.live_others()}
        finished = time.time()
        cpu_ms = (outcome.host_facts.get("cpu_stat") or {}).get("cpu_usage_ms")
        share = meter.other_share(cpu_ms, len(self.usable)) if contender.settings.busy_threshold > 0 else None
        if share is not None:
            host["other_cpu_share"] = round(share, 4)
        if scenario.host_load is HostLoad.IDLE:  # a busy host of our own making is no warning
            extra += conditions.busy_warning(share, contender.settings.busy_threshold) \
                if contender.settings.busy_threshold > 0 else []
        if others:
            extra.append(warning(WarningCode.CONCURRENT_RUN,
                                 f"{len(others)} other deploybench session(s) were live on this host "
                                 "during the round"))
        return make_record(contender, outcome, slot=slot, study=self.study, started=started,
                           finished=finished, host=host, extra_warnings=extra, warmup=warmup)


def start(contender: Contender, *, ledger: Ledger, runs_root: Path) -> Any:
    """Start ``contender``'s platform session (``Platform.open``): its worker loads while
    the caller goes on, and ``session.ready(contender.settings.timeout_s)`` waits for it."""
    prototype = build_job(contender.scenario, data_dir=contender.data_dir, settings=contender.settings)
    setup = SessionSetup(prototype=prototype, runs_root=runs_root, ledger=ledger,
                         launch_timeout_s=contender.settings.timeout_s)
    return contender.platform.open(contender.scenario, setup)


def launch(contender: Contender, *, ledger: Ledger, runs_root: Path) -> Any:
    """``contender``'s session, warm (:func:`start`, then ``ready``); raises as
    ``Platform.open`` and ``ready``."""
    session = start(contender, ledger=ledger, runs_root=runs_root)
    session.ready(contender.settings.timeout_s)
    return session


def launch_width(epoch: int, usable_cpus: int) -> int:
    """How many sessions of a launch epoch start together (see the module docstring)."""
    return 1 if epoch == 0 else max(1, usable_cpus)


def launch_failure_record(contender: Contender, exc: BaseException, *, study: str | None, epoch: int,
                          started: float) -> RunRecord:
    """A launch that failed, as a stored record (with the console's tail when there is one)."""
    import time

    if isinstance(exc, LaunchError):
        outcome = RunOutcome("failed", error=str(exc), host_facts=exc.facts, console_tail=exc.console_tail)
    elif isinstance(exc, PlatformError):
        outcome = RunOutcome("failed", error=str(exc))
    else:
        outcome = RunOutcome("failed", error=f"internal error: {type(exc).__name__}: {exc}",
                             console_tail=traceback.format_exc()[-4000:])
    slot = Slot(epoch, None, None, None, warmup_index=-1)
    record = make_record(contender, outcome, slot=slot, study=None, started=started,
                         finished=time.time(), host={**run_metadata(), "data_set": contender.data_set()})
    record.study = study
    return record


def run_block_set(block_set: BlockSet, sink: Callable[[RunRecord], None], *,
                  ledger: Ledger | None = None, runs_root: Path | None = None,
                  on_run: Callable[[Contender, RunRecord], None] | None = None,
                  on_start: Callable[[Contender, Slot | None], None] | None = None) -> EpochResult:
    """Execute one launch epoch (see the module docstring). Each record goes to ``sink``
    (the store) as soon as it exists, then to ``on_run`` (progress). ``on_start`` hears of
    each launch (slot None) and each round (its slot) before it begins: what is in flight
    (the fleet records it as lost if its host dies). Raises KeyboardInterrupt after storing
    the interrupted round and closing every session."""
    import time

    ledger = ledger or Ledger()
    runs_root = runs_root or home() / "runs"
    out = EpochResult()
    measure = RoundMeasurer(block_set.study, ledger)
    rng = random.Random(f"{block_set.seed}:{block_set.study}:{block_set.epoch}")
    sessions: dict[str, Any] = {}
    by_key = {c.key: c for c in block_set.contenders}

    def emit(contender: Contender, record: RunRecord) -> None:
        sink(record)
        out.records.append(record)
        if on_run is not None:
            on_run(contender, record)
        if record.status == "interrupted":
            raise KeyboardInterrupt

    try:
        launch_order = sorted(block_set.contenders, key=lambda c: c.key)
        rng.shuffle(launch_order)
        width = launch_width(block_set.epoch, len(measure.usable))

        def failed(contender: Contender, exc: Exception, started: float) -> None:
            out.launch_failures[contender.key] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            emit(contender, launch_failure_record(contender, exc, study=block_set.study,
                                                  epoch=block_set.epoch, started=started))

        for first in range(0, len(launch_order), width):
            wave = launch_order[first:first + width]
            starting: list[tuple[Contender, Any, float]] = []
            for contender in wave:
                started = time.time()
                if on_start is not None:
                    on_start(contender, None)
                try:
                    session = start(contender, ledger=ledger, runs_root=runs_root)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - a failed launch is a record, the epoch goes on
                    failed(contender, exc, started)
                    continue
                sessions[contender.key] = session  # closed in the finally, ready or not
                starting.append((contender, session, started))
            for contender, session, started in starting:
                session.facts.launched_with = len(starting)
                try:
                    session.ready(contender.settings.timeout_s)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - as above; ready closed the session
                    del sessions[contender.key]
                    failed(contender, exc, started)
                    continue
                session.pause()
        for key, session in list(sessions.items()):
            for w in range(block_set.warmup_rounds):
                if not session.alive:
                    break
                slot = Slot(block_set.epoch, None, None, None, warmup_index=w)
                if on_start is not None:
                    on_start(by_key[key], slot)
                emit(by_key[key], measure(by_key[key], session, slot, True))
        for b in range(block_set.blocks):
            live = sorted((k for k, s in sessions.items() if s.alive), key=str)
            if not live:
                break
            rng.shuffle(live)
            block_id = uuid.uuid4().hex
            for position, key in enumerate(live):
                slot = Slot(block_set.epoch, b, block_id, position)
                if on_start is not None:
                    on_start(by_key[key], slot)
                emit(by_key[key], measure(by_key[key], sessions[key], slot, False))
    finally:
        for session in sessions.values():
            session.close()
    return out
