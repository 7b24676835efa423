"""From stored runs to answers: per-scenario summaries (the `show` table) and, built on
them, overheads, best practices and recommendations."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .stats import bootstrap_percentile_ci, coefficient_of_variation, mad_outliers, mean_ci, percentiles
from .store import FAILED_STATUSES, RunRecord, group_by_scenario
from .worker.job import WarningCode, make_warning


@dataclass
class ScenarioSummary:
    """One (scenario, host, accelerator) group of successful runs."""

    scenario: str  # the paper's name, e.g. BM/2/PIN/CPU
    app: str
    label: str
    scenario_key: str
    host: str
    accel: str
    runs: int
    failed_runs: int
    samples: int
    e2e_mean_ms: float
    e2e_ci95_ms: float  # half-width
    ci_basis: str  # "runs" (t over run means) or "samples" (single run)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    pre_ms: float
    infer_ms: float
    post_ms: float
    samples_per_s: float
    cv_runs: float
    affinity_cpus: list[int]
    start_latency_s: float | None
    warnings: list[str] = field(default_factory=list)
    run_means_ms: list[float] = field(default_factory=list)
    model_size: str = ""
    backend: str = ""
    cores: int = 0
    platform: str = ""
    cpu_mode: str = ""
    processor: str = ""
    conditions: str = ""  # host conditions that differ from idle/warm/native, e.g. "busy,cold"
    #: runs whose mean is a MAD outlier among the runs (reported, still averaged)
    outlier_runs: list[dict[str, Any]] = field(default_factory=list)
    #: bootstrap 95% CIs (low, high) of the pooled per-request percentiles
    p50_ci_ms: list[float] = field(default_factory=list)
    p90_ci_ms: list[float] = field(default_factory=list)
    p99_ci_ms: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and math.isnan(value):
                out[key] = None
            elif isinstance(value, list):
                out[key] = [None if isinstance(v, float) and math.isnan(v) else v for v in value]
        return out


def _finite_mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def summarize(records: Sequence[RunRecord], high_cv: float = 0.10) -> list[ScenarioSummary]:
    """One summary per scenario group, sorted by app then name. Failed runs are counted,
    not averaged; warm-up (status ``warmup``) and interrupted runs are neither."""
    out: list[ScenarioSummary] = []
    for (key, host, accel), group in group_by_scenario(records).items():
        ok = [r for r in group if r.status == "ok" and r.samples.get("preprocess_ns")]
        failed = sum(1 for r in group if r.status in FAILED_STATUSES)
        scenario = group[0].scenario
        if not ok:
            continue
        run_summaries = [r.summary for r in ok]
        run_means = [s["e2e_mean_ms"] for s in run_summaries]
        pooled = np.concatenate([
            (np.asarray(r.samples["preprocess_ns"], float) + np.asarray(r.samples["infer_ns"], float)
             + np.asarray(r.samples["postprocess_ns"], float)) / 1e6 for r in ok])
        if len(ok) >= 2:
            ci, basis = mean_ci(run_means), "runs"
        else:
            ci, basis = mean_ci(pooled), "samples"
        pct = percentiles(pooled)
        codes = sorted({w["code"] for r in ok for w in r.warnings})
        cv = coefficient_of_variation(run_means)
        if len(ok) >= 3 and cv > high_cv:
            codes = sorted(set(codes) | {WarningCode.HIGH_VARIANCE.value})
        outliers = [{"run_id": ok[i].run_id, "repetition": ok[i].repetition,
                     "e2e_mean_ms": run_means[i]} for i in mad_outliers(run_means)]
        pct_ci = {q: list(bootstrap_percentile_ci(pooled, q, resamples=500)) for q in (50, 90, 99)}
        latencies = [r.platform.get("start_latency_s") for r in ok if r.platform.get("start_latency_s") is not None]
        out.append(ScenarioSummary(
            scenario=scenario.name, app=scenario.app, label=scenario.label, scenario_key=key,
            host=host, accel=accel, runs=len(ok), failed_runs=failed, samples=int(pooled.size),
            e2e_mean_ms=ci.mean, e2e_ci95_ms=ci.half_width, ci_basis=basis,
            p50_ms=pct[50], p90_ms=pct[90], p99_ms=pct[99],
            pre_ms=_finite_mean([s["pre_ms"] for s in run_summaries]),
            infer_ms=_finite_mean([s["infer_ms"] for s in run_summaries]),
            post_ms=_finite_mean([s["post_ms"] for s in run_summaries]),
            samples_per_s=_finite_mean([s.get("samples_per_s", math.nan) for s in run_summaries]),
            cv_runs=cv,
            affinity_cpus=list(ok[-1].environment.get("affinity") or []),
            start_latency_s=float(np.mean(latencies)) if latencies else None,
            warnings=codes, run_means_ms=run_means,
            model_size=scenario.model_size, backend=scenario.backend, cores=scenario.cores,
            platform=scenario.platform.value, cpu_mode=scenario.cpu_mode.value,
            processor=scenario.processor.value,
            conditions=",".join(scenario.conditions), outlier_runs=outliers,
            p50_ci_ms=pct_ci[50], p90_ci_ms=pct_ci[90], p99_ci_ms=pct_ci[99],
        ))
    out.sort(key=lambda s: (s.app, s.model_size, s.platform, s.cores, s.cpu_mode, s.processor,
                            s.conditions, s.label))
    return out


def failures(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Runs that failed or timed out (warm-ups and interrupted runs are not failures)."""
    return [r for r in records if r.status in FAILED_STATUSES]


def warning_details(code: str) -> dict[str, str]:
    return make_warning(WarningCode(code), "")
