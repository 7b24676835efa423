"""Running scenarios: one run (`run_one`), repeated runs, and adaptive sweeps (`run_sweep`).

`run_one` is the single place where a scenario becomes a RunRecord: it prepares the job and
a private run folder, applies the scenario's host conditions (conditions.py), lets the
platform run it, adds host-side warnings, and always removes the run folder. Failures are
records too (status failed/timeout), never lost.

`run_sweep` repeats a study's scenarios adaptively. DESIGN:
- Every run slot has an idempotent key, ``run_key(study, scenario, index)``; slot ``index``
  of a scenario is its index-th run in that study. Slots ``< warmup_runs`` are warm-ups,
  stored with status ``warmup`` (kept as raw data, never averaged).
- All decisions are derived from what is stored (``Store.study_runs``), never from memory:
  restarting an interrupted sweep with the same study and db recomputes each scenario's
  next slot and whether it has stopped, so it does only what is missing. An interrupted
  (Ctrl-C) run is stored without a key: its slot is still missing and is done again.
- Stopping rule (per scenario, after each round): stop when the Student-t CI half-width of
  the measured runs' means is within ``target_rel_ci`` of the mean (``converged``), or after
  ``max_runs`` measured slots (``max_runs``), or when the scenario's runs have used
  ``max_time_s`` (``time_budget``), or after ``max_consecutive_failures`` failures in a row
  (``failing``). The reason is stored in the ``stops`` table.
- Runs are ordered in rounds: each active scenario runs once per round, in an order
  shuffled with a seed derived from (study seed, round), so slow drift of the host does not
  line up with one configuration and the order is reproducible.
"""
from __future__ import annotations

import hashlib
import random
import shlex
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import conditions
from .datasets.cache import home
from .platforms.base import Platform, PlatformError, RunOutcome
from .scenario import CpuMode, HostLoad, Processor, Scenario
from .stats import mean_ci
from .store import FAILED_STATUSES, RunRecord, Store, StoreError, UnsavedRunError
from .host import git_revision, host_facts, run_metadata
from .warnings import WarningCode, warning
from .worker.job import WorkerJob


@dataclass(frozen=True)
class RunSettings:
    timeout_s: float = 900.0
    warmup_batches: int = 1
    server_target_qps: float = 10.0
    seed: int = 0
    #: seconds of /proc/stat sampling before each run for the HOST_BUSY warning (0 = off)
    busy_probe_s: float = 0.5
    #: share of the host's CPU capacity in use above which the host counts as busy
    busy_threshold: float = 0.25


def build_job(scenario: Scenario, *, data_dir: Path, run_dir: Path, run_id: str,
              settings: RunSettings) -> WorkerJob:
    return WorkerJob(
        app=scenario.app,
        data_dir=str(data_dir),
        result_path=str(run_dir / "result.json"),
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
        server_target_qps=settings.server_target_qps,
        seed=settings.seed,
        scenario_name=scenario.name,
        run_id=run_id,
        git_revision=git_revision(),
        log_dir=str(run_dir / "loadgen"),
    )


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
    if result is not None and result.environment and limits:
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


def scenario_cpus(scenario: Scenario, platform: Any) -> list[int] | None:
    """The cores a PIN scenario will be pinned to (None for VNL or when unknown).

    A platform that chooses its cores differently from BM's cgroup cpuset may say so with
    a ``planned_cpus(scenario)`` method; the busy-host neighbours go on the other cores.
    """
    hook = getattr(platform, "planned_cpus", None)
    if hook is not None:
        return hook(scenario)
    if scenario.cpu_mode is not CpuMode.PIN:
        return None
    from .platforms.cpu import CgroupError, limits_for

    pin = getattr(getattr(platform, "options", None), "pin_cpus", None)
    try:
        return limits_for(scenario.cores, True, list(pin or ())).cpus
    except CgroupError:
        return None


def run_one(scenario: Scenario, platform: Platform, *, data_dir: Path,
            settings: RunSettings = RunSettings(), run_key: str | None = None,
            study: str | None = None, repetition: int | None = None,
            warmup: bool = False) -> RunRecord:
    """Run a scenario once on ``platform`` and return its record (not yet stored).

    ``warmup``: a successful run gets status ``warmup`` (stored, never averaged). The
    scenario's host conditions are applied around the run and recorded in
    ``record.host["conditions"]``.

    Raises KeyboardInterrupt after cleaning up when the user pressed Ctrl-C; the record of
    the interrupted run is attached to the exception as ``record``, without its run key
    (the slot was not completed, so a resumed sweep does it again).
    """
    run_id = uuid.uuid4().hex
    runs_root = home() / "runs"
    runs_root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{run_id[:8]}-", dir=runs_root))
    run_dir.chmod(0o777)  # containers and guests may write as another user
    started = time.time()
    host = run_metadata()
    condition_warnings: list[dict[str, str]] = []
    try:
        job = build_job(scenario, data_dir=data_dir, run_dir=run_dir, run_id=run_id,
                        settings=settings)
        cpus = scenario_cpus(scenario, platform) if scenario.host_load is HostLoad.BUSY else None
        io_limits = getattr(getattr(platform, "options", None), "io_limits", None)
        with conditions.applied(
                scenario, usable=host_facts().usable_cpus, scenario_cpus=cpus,
                # a deliberate busy host is not a warning; measure only an idle one
                busy_probe_s=0 if scenario.host_load is HostLoad.BUSY else settings.busy_probe_s,
                busy_threshold=settings.busy_threshold, io_limits=io_limits) as (facts, warns):
            host["conditions"] = facts
            condition_warnings = warns
            started = time.time()
            try:
                outcome = platform.run(scenario, job, settings.timeout_s)
            except PlatformError as exc:
                outcome = RunOutcome("failed", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a sweep goes on; the reason is kept
                outcome = RunOutcome("failed", error=f"internal error: {type(exc).__name__}: {exc}",
                                     console_tail=traceback.format_exc()[-4000:])
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    result = outcome.result
    status = "warmup" if (warmup and outcome.status == "ok") else outcome.status
    record = RunRecord(
        scenario=scenario, status=status, started_at=started, finished_at=time.time(),
        run_id=run_id, run_key=run_key if outcome.status != "interrupted" else None,
        study=study, repetition=repetition,
        error=outcome.error, host=host, platform=outcome.host_facts,
        console_tail=outcome.console_tail if outcome.status != "ok" else "",
    )
    if result is not None:
        record.environment = result.environment
        record.metadata = result.metadata
        record.loadgen = result.loadgen
        record.timings = result.timings
        record.warnings = list(result.warnings)
        if result.status == "ok":
            record.samples = result.samples
    record.warnings += host_warnings(scenario, outcome) + condition_warnings
    if outcome.status == "interrupted":
        exc = KeyboardInterrupt()
        exc.record = record  # type: ignore[attr-defined]
        raise exc
    return record


def run_and_store(scenario: Scenario, platform: Platform, store: Store, **kwargs: Any) -> RunRecord:
    """`run_one`, then store the record, also when the run was interrupted.

    A run the store cannot take (disk full, permissions changed) is saved whole to a
    recovery file and UnsavedRunError says where: the command stops there, since every
    later run would meet the same store."""
    try:
        record = run_one(scenario, platform, **kwargs)
    except KeyboardInterrupt as exc:
        record = getattr(exc, "record", None)
        if record is not None:
            saved = store.add_or_recover(record)
            if saved is not None:
                print(unsaved_message(record, store, saved), file=sys.stderr)
        raise
    saved = store.add_or_recover(record)
    if saved is not None:
        raise UnsavedRunError(unsaved_message(record, store, saved), record, saved)
    return record


def unsaved_message(record: RunRecord, store: Store, saved: Path) -> str:
    """One line: which run could not be stored, where it is, and how to add it later."""
    return (f"run {record.scenario.label} ({record.status}) could not be stored in {store.path}; "
            f"its full record is saved in {saved}: once the store can be written, add it with "
            f"`deploybench import {shlex.quote(str(saved))}`")


def run_repeated(scenarios: Sequence[tuple[Scenario, Platform, Path]], store: Store, *,
                 repeat: int, settings: RunSettings,
                 progress: Callable[[RunRecord], None] | None = None) -> list[RunRecord]:
    """Each scenario ``repeat`` times, interleaved round by round (so slow drift of the host
    does not line up with one configuration)."""
    records = []
    for rep in range(repeat):
        for scenario, platform, data_dir in scenarios:
            record = run_and_store(scenario, platform, store, data_dir=data_dir,
                                   settings=settings, repetition=rep)
            records.append(record)
            if progress:
                progress(record)
    return records


# -- adaptive sweeps ---------------------------------------------------------------------------
def run_key(study: str, scenario: Scenario, index: int) -> str:
    """Idempotent id of a study's ``index``-th run of ``scenario``."""
    return hashlib.sha256(f"{study}\0{scenario.key}\0{index}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class StopRule:
    warmup_runs: int = 1
    target_rel_ci: float = 0.02  # CI half-width as a fraction of the mean
    min_runs: int = 3  # measured runs before convergence may stop a scenario
    max_runs: int = 30  # measured slots (failed ones included)
    max_time_s: float = 600.0  # wall time of a scenario's runs, warm-ups included
    max_consecutive_failures: int = 2
    confidence: float = 0.95


@dataclass(frozen=True)
class StopDecision:
    reason: str  # converged | max_runs | time_budget | failing | skipped
    detail: str
    runs: int  # measured successful runs
    mean_ms: float | None = None
    rel_ci: float | None = None


def next_index(rows: Sequence[dict[str, Any]]) -> int:
    """The first slot of a scenario not yet stored (slots of interrupted runs are missing)."""
    taken = {r["repetition"] for r in rows if r.get("run_key") is not None}
    index = 0
    while index in taken:
        index += 1
    return index


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"±{value:.1%}"


def decide_stop(rows: Sequence[dict[str, Any]], rule: StopRule) -> StopDecision | None:
    """Whether a scenario is done, from its stored runs in this study (None = go on)."""
    slots = sorted((r for r in rows if r.get("run_key") is not None), key=lambda r: r["repetition"])
    measured = [r for r in slots if r["repetition"] >= rule.warmup_runs]
    means = [r["summary"]["e2e_mean_ms"] for r in measured
             if r["status"] == "ok" and "e2e_mean_ms" in r.get("summary", {})]
    ci = mean_ci(means, rule.confidence) if len(means) >= 2 else None
    rel = ci.relative if ci is not None else None
    mean = ci.mean if ci is not None else (means[0] if means else None)
    failures = 0
    for r in reversed(slots):
        if r["status"] not in FAILED_STATUSES:
            break
        failures += 1
    if failures >= rule.max_consecutive_failures:
        return StopDecision("failing", f"{failures} failures in a row, last: {slots[-1].get('error')}",
                            len(means), mean, rel)
    if ci is not None and len(means) >= max(rule.min_runs, 2) and rel <= rule.target_rel_ci:
        return StopDecision("converged", f"CI {_pct(rel)} <= ±{rule.target_rel_ci:.1%} after "
                            f"{len(means)} runs", len(means), mean, rel)
    if len(measured) >= rule.max_runs:
        return StopDecision("max_runs", f"{len(measured)} runs, CI {_pct(rel)} "
                            f"(target ±{rule.target_rel_ci:.1%})", len(means), mean, rel)
    spent = sum(r["finished_at"] - r["started_at"] for r in slots)
    if spent >= rule.max_time_s:
        return StopDecision("time_budget", f"{spent:.0f} s of {rule.max_time_s:g} s used, "
                            f"{len(means)} runs, CI {_pct(rel)}", len(means), mean, rel)
    return None


@dataclass
class PlannedScenario:
    """One scenario of a study, ready to run (or skipped, with the reason)."""

    scenario: Scenario
    platform: Any = None
    data_dir: Path | None = None
    rule: StopRule = StopRule()
    settings: RunSettings = RunSettings()
    skip_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.scenario.key


def round_order(active: Sequence[PlannedScenario], seed: int, round_no: int) -> list[PlannedScenario]:
    """This round's order: a shuffle seeded by (seed, round), independent of input order."""
    items = sorted(active, key=lambda p: p.key)
    random.Random(f"{seed}:{round_no}").shuffle(items)
    return items


def _row(record: RunRecord) -> dict[str, Any]:
    return {"run_key": record.run_key, "scenario_key": record.scenario.key,
            "repetition": record.repetition, "status": record.status, "error": record.error,
            "started_at": record.started_at, "finished_at": record.finished_at,
            "summary": record.summary}


def run_sweep(planned: Sequence[PlannedScenario], store: Store, *, study: str, seed: int = 0,
              on_run: Callable[[PlannedScenario, RunRecord], None] | None = None,
              on_stop: Callable[[PlannedScenario, StopDecision], None] | None = None,
              ) -> dict[str, StopDecision]:
    """Run a study's scenarios in seeded, interleaved rounds until each one stops.

    Resumable: everything is derived from the runs already stored for ``study``. Returns
    each scenario's stop decision by scenario key.
    """
    decisions: dict[str, StopDecision] = {}
    for p in planned:
        if p.skip_reason is not None:
            decisions[p.key] = StopDecision("skipped", p.skip_reason, 0)
            store.record_stop(study, p.scenario, "skipped", p.skip_reason, 0)
            if on_stop:
                on_stop(p, decisions[p.key])
    runnable = [p for p in planned if p.skip_reason is None]

    def load_rows() -> dict[str, list[dict[str, Any]]]:
        rows: dict[str, list[dict[str, Any]]] = {p.key: [] for p in runnable}
        for row in store.study_runs(study):
            if row["scenario_key"] in rows:
                rows[row["scenario_key"]].append(row)
        return rows

    rows = load_rows()
    while True:
        active = []
        for p in runnable:
            if p.key in decisions:
                continue
            decision = decide_stop(rows[p.key], p.rule)
            if decision is None:
                active.append(p)
                continue
            decisions[p.key] = decision
            store.record_stop(study, p.scenario, decision.reason, decision.detail, decision.runs)
            if on_stop:
                on_stop(p, decision)
        if not active:
            return decisions
        round_no = min(next_index(rows[p.key]) for p in active)
        for p in round_order(active, seed, round_no):
            index = next_index(rows[p.key])
            try:
                record = run_and_store(p.scenario, p.platform, store, data_dir=p.data_dir,
                                       settings=p.settings, run_key=run_key(study, p.scenario, index),
                                       study=study, repetition=index,
                                       warmup=index < p.rule.warmup_runs)
            except UnsavedRunError:
                raise
            except StoreError:  # another sweep on this db stored the slot first
                rows = load_rows()
                continue
            rows[p.key].append(_row(record))
            if on_run:
                on_run(p, record)
