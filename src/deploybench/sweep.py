"""Running scenarios: one run (`run_one`), and repeated runs of a list of scenarios.

`run_one` is the single place where a scenario becomes a stored RunRecord: it prepares the
job and a private run folder, lets the platform run it, adds host-side warnings, and always
removes the run folder. Failures are records too (status failed/timeout), never lost.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .datasets.cache import home
from .platforms.base import Platform, PlatformError, RunOutcome
from .scenario import CpuMode, Processor, Scenario
from .store import RunRecord, Store
from .system import git_revision, host_facts, run_metadata
from .worker.job import WarningCode, WorkerJob, make_warning


@dataclass(frozen=True)
class RunSettings:
    timeout_s: float = 900.0
    warmup_batches: int = 1
    server_target_qps: float = 10.0
    seed: int = 0


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
        warnings.append(make_warning(
            WarningCode.CGROUP_THROTTLED,
            f"throttled in {throttled} of {periods} CFS periods "
            f"({stat.get('throttled_ms', 0):.0f} ms held back)"))
    limits = facts.get("limits") or {}
    result = outcome.result
    if result is not None and result.environment and limits:
        got = result.environment.get("affinity")
        if scenario.cpu_mode is CpuMode.PIN and got is not None and got != limits.get("cpus"):
            warnings.append(make_warning(
                WarningCode.AFFINITY_MISMATCH,
                f"pinned to {limits.get('cpus')} but the worker ran on {got}"))
        quota = (result.environment.get("cgroup") or {}).get("cpu_quota_cores")
        wanted = limits.get("quota_cores")
        if scenario.cpu_mode is CpuMode.VNL and wanted and quota is not None and abs(quota - wanted) > 1e-6:
            warnings.append(make_warning(
                WarningCode.AFFINITY_MISMATCH,
                f"a quota of {wanted} cores was set but the worker saw {quota}"))
    return warnings


def run_one(scenario: Scenario, platform: Platform, *, data_dir: Path,
            settings: RunSettings = RunSettings(), run_key: str | None = None,
            study: str | None = None, repetition: int | None = None) -> RunRecord:
    """Run a scenario once on ``platform`` and return its record (not yet stored).

    Raises KeyboardInterrupt after cleaning up when the user pressed Ctrl-C; the record of
    the interrupted run is attached to the exception as ``record``.
    """
    run_id = uuid.uuid4().hex
    runs_root = home() / "runs"
    runs_root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{run_id[:8]}-", dir=runs_root))
    run_dir.chmod(0o777)  # containers and guests may write as another user
    started = time.time()
    host = run_metadata()
    try:
        job = build_job(scenario, data_dir=data_dir, run_dir=run_dir, run_id=run_id,
                        settings=settings)
        try:
            outcome = platform.run(scenario, job, settings.timeout_s)
        except PlatformError as exc:
            outcome = RunOutcome("failed", error=str(exc))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    result = outcome.result
    record = RunRecord(
        scenario=scenario, status=outcome.status, started_at=started, finished_at=time.time(),
        run_id=run_id, run_key=run_key, study=study, repetition=repetition,
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
    record.warnings += host_warnings(scenario, outcome)
    if outcome.status == "interrupted":
        exc = KeyboardInterrupt()
        exc.record = record  # type: ignore[attr-defined]
        raise exc
    return record


def run_and_store(scenario: Scenario, platform: Platform, store: Store, **kwargs: Any) -> RunRecord:
    """`run_one`, then store the record, also when the run was interrupted."""
    try:
        record = run_one(scenario, platform, **kwargs)
    except KeyboardInterrupt as exc:
        record = getattr(exc, "record", None)
        if record is not None:
            store.add(record)
        raise
    store.add(record)
    return record


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
