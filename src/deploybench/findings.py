"""From stored runs to answers: per-scenario summaries (the `show` table) and, built on
them, overheads, best practices and recommendations."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .scenario import CpuMode, PlatformName, Processor, Scenario
from .stats import (Difference, bootstrap_percentile_ci, coefficient_of_variation, mad_outliers,
                    mean_ci, percentiles, request_e2e_ms, welch_difference)
from .store import FAILED_STATUSES, RunRecord, group_by_scenario
from .warnings import WarningCode


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
    #: the wait in LoadGen's queue, part of E2E under Server (0 for the other scenarios)
    queue_ms: float = 0.0
    #: the hostnames of the runs (``host`` is their host class: identical hosts pool)
    hosts: list[str] = field(default_factory=list)

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
        pooled = np.concatenate([request_e2e_ms(r.samples, r.scenario.loadgen_scenario.value)
                                 for r in ok])
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
            queue_ms=_finite_mean([s.get("queue_ms", 0.0) for s in run_summaries]),
            hosts=sorted({str(r.host.get("host", "?")) for r in ok}),
        ))
    out.sort(key=lambda s: (s.app, s.model_size, s.platform, s.cores, s.cpu_mode, s.processor,
                            s.conditions, s.label))
    return out


def failures(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Runs that failed or timed out (warm-ups and interrupted runs are not failures)."""
    return [r for r in records if r.status in FAILED_STATUSES]


# =========================================================================================
# Analysis: overhead against bare metal, scale-up, pinning, CHR, GPU, causes.
#
# DESIGN: the unit of analysis is a *cell*: one scenario (Scenario.key) on one host, under
# one accelerator (native/kvm/tcg) and one recorded host condition (host_load idle/busy, or
# unrecorded). Cells are never pooled with each other. Comparisons are between cells that
# differ in exactly one thing (the platform, the mode, the cores, the processor, the host
# load), always with Welch's test over independent run means; a cell with a single run
# falls back to its per-request times, and the comparison says so (basis "requests").
# Emulated (TCG) VMs are compared with BM like any other platform but carry
# ``emulated=True`` and are kept out of recommendations, best practices and the main figures.
# =========================================================================================


BASELINE = PlatformName.BM.value
EMULATED_ACCELS = ("tcg",)


def host_load_of(record: RunRecord) -> str:
    """The recorded host condition of a run ('busy', 'idle', ...), '' when not recorded.
    Looked up on the scenario (should it carry one), in the platform facts, then in the
    host metadata (where a sweep may put it)."""
    value = getattr(record.scenario, "host_load", None)
    if value:
        return str(getattr(value, "value", value))
    for source in (record.platform, record.host, record.environment, record.metadata):
        value = source.get("host_load") if isinstance(source, dict) else None
        if value:
            return str(value)
    return ""


@dataclass
class Cell:
    """One scenario on one host, accelerator and host condition: summary plus its runs."""

    summary: ScenarioSummary
    scenario: Scenario
    records: list[RunRecord]  # successful runs only
    host_load: str = ""

    @property
    def name(self) -> str:
        return self.summary.scenario

    @property
    def app(self) -> str:
        return self.scenario.app

    @property
    def host(self) -> str:
        return self.summary.host

    @property
    def accel(self) -> str:
        return self.summary.accel

    @property
    def emulated(self) -> bool:
        return self.accel in EMULATED_ACCELS or WarningCode.EMULATED_VM.value in self.summary.warnings

    @property
    def host_cores(self) -> int | None:
        for r in self.records:
            value = r.host.get("host_cores") or r.metadata.get("host_cores")
            if value:
                return int(value)
        return None

    @property
    def chr(self) -> float | None:
        """Container (or guest) cores to host cores."""
        hc = self.host_cores
        return round(self.scenario.cores / hc, 4) if hc else None

    @property
    def display(self) -> str:
        """The paper's name plus what sets this cell apart (accelerator, host load)."""
        extra = []
        if self.accel not in ("native", "kvm"):
            extra.append(self.accel.upper())
        if self.host_load and self.host_load != "idle":  # idle is the default: not worth a word
            extra.append(f"host {self.host_load}")
        return self.name + (f" ({', '.join(extra)})" if extra else "")

    @property
    def workload(self) -> str:
        """What is measured, independent of where: app, size, backend, LoadGen scenario..."""
        return workload_key(self.scenario)

    @property
    def workload_label(self) -> str:
        return workload_label(self.scenario)

    def values(self, metric: str = "e2e") -> tuple[list[float], str]:
        """Per-run means of ``metric`` ('e2e' or a phase: 'pre', 'infer', 'post'), or, with a
        single run, its per-request values. Returns (values, basis)."""
        column = {"e2e": None, "pre": "preprocess_ns", "infer": "infer_ns", "post": "postprocess_ns"}[metric]
        if len(self.records) >= 2:
            key = {"e2e": "e2e_mean_ms", "pre": "pre_ms", "infer": "infer_ms", "post": "post_ms"}[metric]
            return [r.summary[key] for r in self.records], "runs"
        r = self.records[0]
        if column is None:
            vals = request_e2e_ms(r.samples, r.scenario.loadgen_scenario.value)
        else:
            vals = np.asarray(r.samples[column], float) / 1e6
        return vals.tolist(), "requests"

    def phase_shares(self) -> dict[str, float]:
        s = self.summary
        total = s.pre_ms + s.infer_ms + s.post_ms
        if not total or math.isnan(total):
            return {"pre": math.nan, "infer": math.nan, "post": math.nan}
        return {"pre": s.pre_ms / total, "infer": s.infer_ms / total, "post": s.post_ms / total}


def condition_free_key(scenario: Scenario) -> str:
    """The scenario's key without a host condition, should Scenario carry one: busy and idle
    runs of one deployment share it."""
    import dataclasses

    if "host_load" in {f.name for f in dataclasses.fields(scenario)}:
        default = next(f.default for f in dataclasses.fields(scenario) if f.name == "host_load")
        return scenario.with_(host_load=default).key
    return scenario.key


def workload_key(scenario: Scenario) -> str:
    return scenario.with_(platform=PlatformName.BM, cores=1, cpu_mode=CpuMode.VNL,
                          processor=Processor.CPU).key


def workload_label(scenario: Scenario) -> str:
    parts = [scenario.model_size, scenario.backend]
    if scenario.loadgen_scenario.value != "Offline":
        parts.append(scenario.loadgen_scenario.value)
    if scenario.batch_size != 1:
        parts.append(f"b{scenario.batch_size}")
    parts.append(f"{scenario.requests} req")
    if scenario.inference_only:
        parts.append("inference only")
    # host conditions that differ from the defaults (idle host, warm cache, native storage)
    for field_name, default, text in (("host_load", "idle", "{} host"), ("page_cache", "warm", "{} cache"),
                                      ("storage", "native", "{} storage")):
        value = getattr(getattr(scenario, field_name, None), "value", default)
        if value != default:
            parts.append(text.format(value))
    return f"{scenario.app} ({', '.join(parts)})"


def build_cells(records: Sequence[RunRecord]) -> list[Cell]:
    """Every cell with at least one successful run (see the DESIGN note above)."""
    by_load: dict[str, list[RunRecord]] = {}
    for record in records:
        by_load.setdefault(host_load_of(record), []).append(record)
    cells: list[Cell] = []
    for load, subset in sorted(by_load.items()):
        groups = group_by_scenario(subset)
        for summary in summarize(subset):
            group = groups[(summary.scenario_key, summary.host, summary.accel)]
            ok = [r for r in group if r.status == "ok" and r.samples.get("preprocess_ns")]
            cells.append(Cell(summary, ok[0].scenario, ok, load))
    return cells


def compare_cells(a: Cell, b: Cell, metric: str = "e2e") -> tuple[Difference, str]:
    """``a`` against baseline ``b``; basis 'runs' when both have >= 2 runs."""
    if len(a.records) >= 2 and len(b.records) >= 2:
        return welch_difference(a.values(metric)[0], b.values(metric)[0]), "runs"
    va = a.values(metric)[0] if len(a.records) < 2 else _pooled(a, metric)
    vb = b.values(metric)[0] if len(b.records) < 2 else _pooled(b, metric)
    return welch_difference(va, vb), "requests"


def _pooled(cell: Cell, metric: str) -> list[float]:
    out: list[float] = []
    for r in cell.records:
        out += Cell(cell.summary, cell.scenario, [r], cell.host_load).values(metric)[0]
    return out


def _index(cells: Sequence[Cell]) -> dict[tuple[str, str, str, str], Cell]:
    return {(c.scenario.key, c.host, c.accel, c.host_load): c for c in cells}


def _native_baseline(index: dict, cell: Cell, **changes: Any) -> Cell | None:
    key = cell.scenario.with_(**changes).key
    return index.get((key, cell.host, "native", cell.host_load))


@dataclass
class Comparison:
    """``cell`` against ``baseline`` (differences are relative to the baseline)."""

    cell: Cell
    baseline: Cell
    diff: Difference
    basis: str

    @property
    def text(self) -> str:
        return self.diff.describe() + ("" if self.basis == "runs" else " [over requests: single run]")

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.cell.display, "baseline": self.baseline.display,
                "app": self.cell.app, "workload": self.cell.workload_label, "basis": self.basis,
                **self.diff.to_json()}


def overheads(cells: Sequence[Cell]) -> list[Comparison]:
    """Each non-BM cell against BM with the same cores, mode, processor and workload, on the
    same host under the same host load (BM is always native)."""
    index = _index(cells)
    out = []
    for cell in cells:
        if cell.scenario.platform is PlatformName.BM:
            continue
        base = _native_baseline(index, cell, platform=PlatformName.BM)
        if base is not None:
            out.append(Comparison(cell, base, *compare_cells(cell, base)))
    return out


def pin_gains(cells: Sequence[Cell]) -> list[Comparison]:
    """PIN against VNL for each platform/cores/processor/workload (negative = PIN faster)."""
    index = _index(cells)
    out = []
    for cell in cells:
        if cell.scenario.cpu_mode is not CpuMode.PIN:
            continue
        vnl = index.get((cell.scenario.with_(cpu_mode=CpuMode.VNL).key, cell.host, cell.accel, cell.host_load))
        if vnl is not None:
            out.append(Comparison(cell, vnl, *compare_cells(cell, vnl)))
    return out


@dataclass
class ScaleUp:
    """E2E over cores for one platform/mode/processor/workload: where it stops improving."""

    series: list[Cell]  # sorted by cores
    steps: list[Comparison]  # each cores count against the previous one
    knee: int | None  # the cores after which E2E stops improving by more than the CI
    best_cores: int

    @property
    def label(self) -> str:
        c = self.series[0]
        return f"{c.scenario.platform.value}/N/{c.scenario.cpu_mode.value}/{c.scenario.processor.value}"

    @property
    def keeps_improving(self) -> bool:
        return self.knee == self.series[-1].scenario.cores

    def describe(self) -> str:
        c = self.series[0]
        cores = [x.scenario.cores for x in self.series]
        if self.keeps_improving:
            return (f"{self.label} {c.workload_label}: E2E improves significantly at every step up to "
                    f"{cores[-1]} cores (no knee within {cores[0]}-{cores[-1]})")
        return (f"{self.label} {c.workload_label}: E2E stops improving by more than the CI after "
                f"{self.knee} core{'s' if self.knee != 1 else ''} (fastest at {self.best_cores})")


def scale_ups(cells: Sequence[Cell]) -> list[ScaleUp]:
    """Series with >= 2 core counts. The knee is the first core count whose next step up
    does not make E2E significantly faster (Welch, 95%)."""
    series: dict[tuple, list[Cell]] = {}
    for cell in cells:
        key = (cell.scenario.with_(cores=1).key, cell.host, cell.accel, cell.host_load)
        series.setdefault(key, []).append(cell)
    out = []
    for group in series.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda c: c.scenario.cores)
        steps = [Comparison(b, a, *compare_cells(b, a)) for a, b in zip(group, group[1:])]
        knee = group[-1].scenario.cores
        for prev, step in zip(group, steps):
            if not (step.diff.significant and step.diff.diff < 0):
                knee = prev.scenario.cores
                break
        best = min(group, key=lambda c: c.summary.e2e_mean_ms)
        out.append(ScaleUp(group, steps, knee, best.scenario.cores))
    return out


@dataclass
class ChrTrend:
    """Overhead against BM of one platform/mode at its lowest and highest CHR."""

    platform: str
    cpu_mode: str
    workload: str
    points: list[tuple[float, Comparison]]  # (CHR, overhead), sorted by CHR

    @property
    def low(self) -> tuple[float, Comparison]:
        return self.points[0]

    @property
    def high(self) -> tuple[float, Comparison]:
        return self.points[-1]

    @property
    def falls_with_chr(self) -> bool:
        """Overhead at the lowest CHR above the CI of the overhead at the highest CHR."""
        lo, hi = self.low[1].diff, self.high[1].diff
        if not (lo.testable and hi.testable):
            return lo.relative > hi.relative
        return lo.relative_low > hi.relative_high

    def describe(self) -> str:
        (c_lo, lo), (c_hi, hi) = self.low, self.high
        return (f"{self.platform} {self.cpu_mode} {self.workload}: overhead {lo.diff.relative * 100:+.1f}% "
                f"at CHR {c_lo:.2f} vs {hi.diff.relative * 100:+.1f}% at CHR {c_hi:.2f}")


def chr_trends(overhead_list: Sequence[Comparison]) -> list[ChrTrend]:
    groups: dict[tuple, list[tuple[float, Comparison]]] = {}
    for comp in overhead_list:
        c = comp.cell
        if c.chr is None or c.emulated:
            continue
        key = (c.scenario.platform.value, c.scenario.cpu_mode.value, c.scenario.processor.value,
               c.workload_label, c.host, c.host_load)
        groups.setdefault(key, []).append((c.chr, comp))
    out = []
    for (platform, mode, _proc, workload, _h, _l), points in groups.items():
        if len(points) >= 2:
            points.sort(key=lambda p: p[0])
            out.append(ChrTrend(platform, mode, workload, points))
    return out


@dataclass
class GpuSpeedup:
    """CPU time over GPU time at the same platform/cores/mode: E2E against inference."""

    cpu: Cell
    gpu: Cell
    e2e: Comparison  # GPU against CPU (E2E)
    infer_phase: Comparison  # GPU against CPU, inference phase of the E2E runs
    inference_only: Comparison | None  # GPU against CPU, inference-only runs, when measured

    @staticmethod
    def speedup(comp: Comparison) -> tuple[float, float, float]:
        """(speedup, low, high): CPU/GPU = 1 / (1 + relative)."""
        d = comp.diff
        inv = lambda r: 1 / (1 + r) if 1 + r > 0 else math.inf  # noqa: E731
        return inv(d.relative), inv(d.relative_high), inv(d.relative_low)

    def describe(self) -> str:
        e, _, _ = self.speedup(self.e2e)
        i, _, _ = self.speedup(self.inference_only or self.infer_phase)
        what = "inference-only" if self.inference_only else "inference phase"
        return (f"{self.gpu.scenario.platform.value}/{self.gpu.scenario.cores}/{self.gpu.scenario.cpu_mode.value} "
                f"{self.cpu.workload_label}: GPU speedup {i:.1f}x ({what}) vs {e:.1f}x E2E")


def gpu_speedups(cells: Sequence[Cell]) -> list[GpuSpeedup]:
    index = _index(cells)
    out = []
    for gpu in cells:
        if gpu.scenario.processor is not Processor.GPU or gpu.scenario.inference_only:
            continue
        cpu = index.get((gpu.scenario.with_(processor=Processor.CPU).key, gpu.host, gpu.accel, gpu.host_load))
        if cpu is None:
            continue
        only = None
        g_only = index.get((gpu.scenario.with_(inference_only=True).key, gpu.host, gpu.accel, gpu.host_load))
        c_only = index.get((cpu.scenario.with_(inference_only=True).key, gpu.host, gpu.accel, gpu.host_load))
        if g_only is not None and c_only is not None:
            only = Comparison(g_only, c_only, *compare_cells(g_only, c_only, "infer"))
        out.append(GpuSpeedup(cpu, gpu, Comparison(gpu, cpu, *compare_cells(gpu, cpu)),
                              Comparison(gpu, cpu, *compare_cells(gpu, cpu, "infer")), only))
    return out


@dataclass
class Causes:
    """What the platform recorded that may explain a cell's time."""

    cell: Cell
    throttled_share: float | None  # CFS periods throttled / periods
    throttled_ms_per_request: float | None
    migrations_per_request: float | None
    involuntary_switches_per_request: float | None
    oversubscribed_runs: int  # runs with a thread pool larger than the CPU budget
    start_latency_s: float | None

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("throttled_share", "throttled_ms_per_request",
                                              "migrations_per_request", "involuntary_switches_per_request",
                                              "oversubscribed_runs", "start_latency_s")}
        out["scenario"] = self.cell.display
        return out


def causes(cell: Cell) -> Causes:
    shares, held, migr, invol = [], [], [], []
    for r in cell.records:
        n = len(r.samples.get("preprocess_ns") or []) or 1
        stat = r.platform.get("cpu_stat") or {}
        if stat.get("nr_periods"):
            shares.append(stat.get("nr_throttled", 0) / stat["nr_periods"])
            held.append(float(stat.get("throttled_ms", 0.0)) / n)
        if r.environment.get("nr_migrations") is not None:
            migr.append(r.environment["nr_migrations"] / n)
        if r.environment.get("involuntary_ctx_switches") is not None:
            invol.append(r.environment["involuntary_ctx_switches"] / n)
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    over = sum(1 for r in cell.records if WarningCode.THREADS_OVER_BUDGET.value in r.warning_codes)
    return Causes(cell, mean(shares), mean(held), mean(migr), mean(invol), over,
                  cell.summary.start_latency_s)
