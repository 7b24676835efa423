"""From stored runs to answers: the rows of `show` (one per row identity) and, built on them,
overheads, scale-up, pinning, CHR, GPU speedups and causes, each a decided comparison.

DESIGN
- **Row identity** (pyperf's "runs whose key metadata differ are never pooled"): one row, one
  comparison cell, one figure bar is one scenario (``Scenario.key``: deployment, app, model
  size, backend, requests, LoadGen scenario, batch size, inference-only, host conditions) on
  one host class (``host.host_fingerprint``: identical hosts pool, the hostnames are listed), under one
  accelerator (native, kvm, tcg), on one data set (file count and seed). ``row_key`` is that
  identity and everything here, in ``show``, the report and the store's readers uses it.
- **A row's CI is hierarchical** (``stats.scenario_ci``): over launch means when there are >= 2
  launches, else over the rounds of its one launch, else over one round's requests; the
  basis is reported. A run stored before launches existed counts as a launch of its own.
- **Comparisons are paired** (``stats.compare_rounds``): two cells are compared over the blocks
  in which both were measured (one round each, in random order), launch pairs being the
  unit; the verdict is faster, slower, equivalent (within the margin) or undecided. Cells
  never measured in the same blocks are undecided ("not measured together"): an unpaired
  comparison across minutes of host drift is what this tool no longer claims.
- **All claims of one report are one family** (Holm): ``Judge`` records every comparison a
  report makes, then decides them together; a second pass gives every finding the
  family's verdicts.
- Emulated (TCG) guests are compared like any other platform but flagged and kept out of
  recommendations, best practices and the main figures.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence, cast

import numpy as np

from . import footprint, stats
from .scenario import CpuMode, HostLoad, PageCache, PlatformName, Processor, Scenario, Storage
from .store import FAILED_STATUSES, RunRecord, host_class_of
from .warnings import WarningCode

BASELINE = PlatformName.BM.value
EMULATED_ACCELS = ("tcg",)


# -- row identity ---------------------------------------------------------------------------
def host_of(record: RunRecord) -> str:
    """The run's host class (``host.host_fingerprint``): runs of identical hosts pool, runs of
    different kinds of host never do (the hostnames are listed in a summary's ``hosts``)."""
    return host_class_of(record)


def accel_of(record: RunRecord) -> str:
    return str(record.platform.get("accel", "native"))


def data_set_of(record: RunRecord) -> str:
    """``16 files, seed 0`` (empty for runs stored before data sets were recorded)."""
    ds = record.host.get("data_set") or {}
    if not ds:
        return ""
    return f"{ds.get('count')} files, seed {ds.get('seed')}"


def row_key(record: RunRecord) -> tuple[str, str, str, str]:
    """What may be pooled: scenario, host, accelerator, data set (see the DESIGN note)."""
    return (record.scenario.key, host_of(record), accel_of(record), data_set_of(record))


def launch_of(record: RunRecord) -> str:
    return record.launch_id or record.run_id


def group_rows(records: Sequence[RunRecord]) -> dict[tuple[str, str, str, str], list[RunRecord]]:
    groups: dict[tuple[str, str, str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault(row_key(record), []).append(record)
    return groups


def _ok(group: Sequence[RunRecord]) -> list[RunRecord]:
    return [r for r in group if r.status == "ok" and r.samples.get("preprocess_ns")]


# -- rows -------------------------------------------------------------------------------------
@dataclass
class ScenarioSummary:
    """One row: a row identity's successful rounds."""

    scenario: str  # the paper's name, e.g. BM/2/PIN/CPU
    app: str
    label: str
    scenario_key: str
    host: str
    accel: str
    runs: int  # measured rounds (stored runs)
    launches: int
    failed_runs: int
    samples: int
    e2e_mean_ms: float
    e2e_ci95_ms: float  # half-width
    ci_basis: str  # "launches" | "rounds" (one launch) | "requests" (one round)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    pre_ms: float
    infer_ms: float
    post_ms: float
    queue_ms: float  # in E2E under the Server scenario only
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
    requests: int = 0
    loadgen_scenario: str = "Offline"
    batch_size: int = 1
    inference_only: bool = False
    data_set: str = ""
    data_count: int | None = None
    data_seed: int | None = None
    between_launch_sd_rel: float = math.nan
    within_launch_sd_rel: float = math.nan
    #: LoadGen's own verdict and tail over the rounds: all VALID?, its p99 (mean over rounds)
    loadgen_valid: bool | None = None
    loadgen_p99_ms: float | None = None
    loadgen_reason: str = ""
    #: runs whose mean is a MAD outlier among the runs (reported, still averaged)
    outlier_runs: list[dict[str, Any]] = field(default_factory=list)
    #: bootstrap 95% CIs (low, high) of the pooled per-request percentiles
    p50_ci_ms: list[float] = field(default_factory=list)
    p90_ci_ms: list[float] = field(default_factory=list)
    p99_ci_ms: list[float] = field(default_factory=list)
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


def _loadgen_verdict(ok: Sequence[RunRecord]) -> tuple[bool | None, float | None, str]:
    """(all rounds VALID?, mean of LoadGen's own p99 in ms, LoadGen's reason when INVALID)."""
    validity = [str(r.loadgen.get("validity", "")).upper() for r in ok if r.loadgen.get("validity")]
    p99 = [float(r.loadgen["99.00_percentile_latency_ns"]) / 1e6 for r in ok
           if r.loadgen.get("99.00_percentile_latency_ns") is not None]
    from .execute import loadgen_reason

    reasons = [loadgen_reason(r.loadgen) for r in ok if str(r.loadgen.get("validity", "")).upper() == "INVALID"]
    valid = None if not validity else all(v == "VALID" for v in validity)
    return valid, (float(np.mean(p99)) if p99 else None), next((x for x in reasons if x), "")


def summarize(records: Sequence[RunRecord], high_cv: float = 0.10) -> list[ScenarioSummary]:
    """One row per row identity, sorted by app then deployment. Failed runs are counted,
    not averaged; warm-up (status ``warmup``) and interrupted runs are neither."""
    out: list[ScenarioSummary] = []
    for (key, host, accel, data_set), group in group_rows(records).items():
        ok = _ok(group)
        failed = sum(1 for r in group if r.status in FAILED_STATUSES)
        if not ok:
            continue
        scenario = ok[0].scenario
        loadgen = scenario.loadgen_scenario.value
        run_summaries = [r.summary for r in ok]
        run_means = [s["e2e_mean_ms"] for s in run_summaries]
        pooled = np.concatenate([stats.request_e2e_ms(r.samples, loadgen) for r in ok])
        rounds = [stats.Round(key, launch_of(r), m, r.block_id) for r, m in zip(ok, run_means)]
        ci = stats.scenario_ci(rounds, pooled.tolist())
        pct = stats.percentiles(pooled)
        codes = sorted({w["code"] for r in ok for w in r.warnings})
        cv = stats.coefficient_of_variation(run_means)
        if len(ok) >= 3 and cv > high_cv:
            codes = sorted(set(codes) | {WarningCode.HIGH_VARIANCE.value})
        outliers = [{"run_id": ok[i].run_id, "repetition": ok[i].repetition,
                     "e2e_mean_ms": run_means[i]} for i in stats.mad_outliers(run_means)]
        pct_ci = {q: list(stats.bootstrap_percentile_ci(pooled, q, resamples=500)) for q in (50, 90, 99)}
        # one start latency per launch (every round of a launch carries its launch's), of the
        # launches that started alone (footprint.alone)
        latencies = list({launch_of(r): r.platform["start_latency_s"] for r in ok
                          if r.platform.get("start_latency_s") is not None and footprint.alone(r)}.values())
        valid, lg_p99, reason = _loadgen_verdict(ok)
        ds = ok[0].host.get("data_set") or {}
        out.append(ScenarioSummary(
            scenario=scenario.name, app=scenario.app, label=scenario.label, scenario_key=key,
            host=host, accel=accel, runs=len(ok), launches=ci.launches, failed_runs=failed,
            samples=int(pooled.size), e2e_mean_ms=ci.mean_ms, e2e_ci95_ms=ci.half_width_ms,
            ci_basis=ci.basis, p50_ms=pct[50], p90_ms=pct[90], p99_ms=pct[99],
            pre_ms=_finite_mean([s["pre_ms"] for s in run_summaries]),
            infer_ms=_finite_mean([s["infer_ms"] for s in run_summaries]),
            post_ms=_finite_mean([s["post_ms"] for s in run_summaries]),
            queue_ms=_finite_mean([s.get("queue_ms", 0.0) for s in run_summaries]),
            samples_per_s=_finite_mean([s.get("samples_per_s", math.nan) for s in run_summaries]),
            cv_runs=cv,
            affinity_cpus=list(ok[-1].environment.get("affinity") or []),
            start_latency_s=float(np.mean(latencies)) if latencies else None,
            warnings=codes, run_means_ms=run_means,
            model_size=scenario.model_size, backend=scenario.backend, cores=scenario.cores,
            platform=scenario.platform.value, cpu_mode=scenario.cpu_mode.value,
            processor=scenario.processor.value, conditions=",".join(scenario.conditions),
            requests=scenario.requests, loadgen_scenario=loadgen, batch_size=scenario.batch_size,
            inference_only=scenario.inference_only, data_set=data_set,
            data_count=ds.get("count"), data_seed=ds.get("seed"),
            between_launch_sd_rel=ci.between_launch_sd_rel, within_launch_sd_rel=ci.within_launch_sd_rel,
            loadgen_valid=valid, loadgen_p99_ms=lg_p99, loadgen_reason=reason,
            outlier_runs=outliers, p50_ci_ms=pct_ci[50], p90_ci_ms=pct_ci[90], p99_ci_ms=pct_ci[99],
            hosts=sorted({str(r.host.get("host", "?")) for r in ok}),
        ))
    out.sort(key=lambda s: (s.app, s.model_size, s.requests, s.loadgen_scenario, s.inference_only,
                            s.platform, s.cores, s.cpu_mode, s.processor, s.conditions, s.host,
                            s.data_set, s.label))
    return out


#: the fields that may tell two rows of the same deployment apart, in the order `show` adds them
DISTINGUISHING = ("requests", "loadgen_scenario", "batch_size", "inference_only", "data_set",
                  "host", "accel")


def distinguishing_columns(summaries: Sequence[ScenarioSummary]) -> list[str]:
    """The fields ``show`` must add so that two rows that look alike are told apart."""
    by_name: dict[tuple, list[ScenarioSummary]] = {}
    for s in summaries:
        by_name.setdefault((s.scenario, s.app, s.model_size, s.backend, s.conditions), []).append(s)
    needed = []
    for name in DISTINGUISHING:
        if any(len({getattr(s, name) for s in rows}) > 1 for rows in by_name.values() if len(rows) > 1):
            needed.append(name)
    return needed


def failures(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Runs that failed, timed out or were lost (warm-ups and interrupted runs are not)."""
    return [r for r in records if r.status in FAILED_STATUSES]


# -- cells --------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One row identity: its summary and its successful runs."""

    summary: ScenarioSummary
    scenario: Scenario
    records: list[RunRecord]  # successful runs only

    @property
    def id(self) -> str:
        s = self.summary
        return f"{s.scenario_key}|{s.host}|{s.accel}|{s.data_set}"

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
    def host_load(self) -> str:
        return self.scenario.host_load.value

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
        """The paper's name plus what sets this cell apart (accelerator, host conditions)."""
        extra = []
        if self.accel not in ("native", "kvm"):
            extra.append(self.accel.upper())
        extra += [c for c in self.scenario.conditions]
        return self.name + (f" ({', '.join(extra)})" if extra else "")

    @property
    def workload(self) -> str:
        """What is measured, independent of where: app, size, backend, LoadGen scenario...,
        host conditions and data set (a recommendation's group)."""
        return workload_key(self.scenario) + "|" + self.summary.data_set

    @property
    def workload_label(self) -> str:
        return workload_label(self.scenario)

    def rounds(self, metric: str = "e2e", name: str | None = None) -> list[stats.Round]:
        """This cell's rounds as the statistics see them: one mean per round of ``metric``
        ('e2e' or a phase: 'pre', 'infer', 'post'), in its launch and block."""
        key = {"e2e": "e2e_mean_ms", "pre": "pre_ms", "infer": "infer_ms", "post": "post_ms"}[metric]
        out = []
        for r in self.records:
            value = r.summary.get(key)
            if value is not None and value > 0:
                out.append(stats.Round(name or self.id, launch_of(r), float(value), r.block_id))
        return out

    def phase_share_values(self) -> list[tuple[str, float]]:
        """(launch, pre+post share of pre+infer+post) of every round that timed its phases."""
        out = []
        for r in self.records:
            pre, infer, post = (r.summary.get(k) for k in ("pre_ms", "infer_ms", "post_ms"))
            if pre is None or infer is None or post is None or not pre + infer + post > 0:
                continue
            out.append((launch_of(r), float((pre + post) / (pre + infer + post))))
        return out

    def phase_shares(self) -> dict[str, float]:
        s = self.summary
        total = s.pre_ms + s.infer_ms + s.post_ms
        if not total or math.isnan(total):
            return {"pre": math.nan, "infer": math.nan, "post": math.nan}
        return {"pre": s.pre_ms / total, "infer": s.infer_ms / total, "post": s.post_ms / total}


def condition_free_key(scenario: Scenario) -> str:
    """The scenario's key with the default host load: busy and idle runs of one deployment
    share it."""
    return scenario.with_(host_load=HostLoad.IDLE).key


def workload_key(scenario: Scenario) -> str:
    return scenario.with_(platform=PlatformName.BM, cores=1, cpu_mode=CpuMode.VNL,
                          processor=Processor.CPU).key


def workload_label(scenario: Scenario) -> str:
    parts = [scenario.model_size, scenario.backend]
    if scenario.loadgen_scenario.value != "Offline":
        parts.append(scenario.loadgen_scenario.value + (f" @{scenario.target_qps:g} qps"
                                                        if scenario.target_qps is not None else ""))
    if scenario.batch_size != 1:
        parts.append(f"b{scenario.batch_size}")
    parts.append(f"{scenario.requests} req")
    if scenario.inference_only:
        parts.append("inference only")
    for value, default, text in ((scenario.host_load, HostLoad.IDLE, "{} host"),
                                 (scenario.page_cache, PageCache.WARM, "{} cache"),
                                 (scenario.storage, Storage.NATIVE, "{} storage")):
        if value is not default:
            parts.append(text.format(value.value))
    return f"{scenario.app} ({', '.join(parts)})"


def build_cells(records: Sequence[RunRecord]) -> list[Cell]:
    """Every cell with at least one successful run."""
    groups = group_rows(records)
    cells = []
    for summary in summarize(records):
        group = groups[(summary.scenario_key, summary.host, summary.accel, summary.data_set)]
        ok = _ok(group)
        cells.append(Cell(summary, ok[0].scenario, ok))
    return cells


# -- comparisons ------------------------------------------------------------------------------
class Judge:
    """Every comparison a report makes, decided as one family (Holm).

    Pass 1 computes and records each comparison (each with its own, uncorrected verdict);
    ``decide()`` corrects them together; later calls get the family's verdicts. A pure
    cache: the same pair of cells gives the same answer whoever asks."""

    def __init__(self, margin: float = stats.DEFAULT_MARGIN, alpha: float = stats.DEFAULT_ALPHA,
                 min_launches: int = stats.MIN_LAUNCHES) -> None:
        self.margin, self.alpha, self.min_launches = margin, alpha, min_launches
        self.raw: dict[tuple[str, str, str], stats.Claim] = {}
        self.decided: dict[tuple[str, str, str], stats.Claim] | None = None

    def _claim(self, key: tuple[str, str, str], make: Callable[[], stats.C]) -> stats.C:
        """The claim under ``key``: made once, the family's verdict once decided."""
        if self.decided is not None and key in self.decided:
            return cast(stats.C, self.decided[key])
        if key not in self.raw:
            self.raw[key] = make()
        return cast(stats.C, self.raw[key])

    def compare(self, a: Cell, b: Cell, metric: str = "e2e") -> stats.PairedComparison:
        if a.id == b.id:
            raise ValueError(f"{a.display} compared with itself")
        return self._claim((a.id, b.id, metric), lambda: self._measure(a, b, metric))

    def _measure(self, a: Cell, b: Cell, metric: str) -> stats.PairedComparison:
        name_a, name_b = a.display, b.display
        if name_a == name_b:
            name_a, name_b = f"{name_a} [{a.summary.data_set or a.host}]", f"{name_b} [{b.summary.data_set or b.host}]"
        return stats.compare_rounds(a.rounds(metric, name_a) + b.rounds(metric, name_b),
                                    name_a, name_b, margin=self.margin, alpha=self.alpha,
                                    min_launches=self.min_launches)

    def compare_speedups(self, a: Cell, b: Cell, a_only: Cell, b_only: Cell) -> stats.PairedComparison:
        """One claim: ``a`` against ``b`` by E2E, divided by the same pair measured
        inference-only (``a_only`` against ``b_only``, inference phase):
        :func:`stats.ratio_of_comparisons` of the two paired comparisons. Below 1 (``faster``):
        E2E shows ``a`` relatively faster than inference alone does. The two comparisons
        themselves are not claims of the family; their ratio is."""
        def make() -> stats.PairedComparison:
            e2e, infer = self._measure(a, b, "e2e"), self._measure(a_only, b_only, "infer")
            return stats.ratio_of_comparisons(e2e, infer, a=f"{a.display} vs {b.display} by E2E",
                                              b="by inference only")
        return self._claim((f"{a.id}/{a_only.id}", f"{b.id}/{b_only.id}", "e2e/infer"), make)

    def phases_reach(self, label: str, cells: Sequence[Cell], share: float) -> stats.ThresholdClaim:
        """One claim about ``cells`` (one workload's): pre+post-processing take at least
        ``share`` of E2E in some of them, or less in all (:class:`stats.ThresholdClaim`
        over each cell's per-round phase share, at launch level)."""
        def make() -> stats.ThresholdClaim:
            levels = tuple(stats.level_estimate(c.display, c.phase_share_values()) for c in cells)
            return stats.ThresholdClaim(label, share, levels, self.alpha, self.min_launches)
        return self._claim(("|".join(sorted(c.id for c in cells)), label, f"phases>={share:g}"), make)

    def decide(self) -> None:
        keys = list(self.raw)
        self.decided = dict(zip(keys, stats.decide_family([self.raw[k] for k in keys])))

    @property
    def family_size(self) -> int:
        return len(self.raw)


def verdict_text(result: stats.PairedComparison) -> str:
    """``1.034x (95% CI 1.011..1.058), slower (p=0.003; 5 launch pairs, 15 blocks)`` or why
    it is undecided."""
    if result.basis == "none":
        return "undecided: never measured in the same blocks (run them together: one `run` or one study)"
    text = result.describe_result()
    if result.verdict is stats.Verdict.UNDECIDED and result.launch_pairs < result.min_launches:
        text += f"; needs >= {result.min_launches} launch pairs"
    return text


@dataclass
class Comparison:
    """``cell`` against ``baseline`` (the ratio is cell / baseline)."""

    cell: Cell
    baseline: Cell
    result: stats.PairedComparison

    @property
    def verdict(self) -> stats.Verdict:
        return self.result.verdict

    @property
    def decided(self) -> bool:
        return self.result.verdict.decided

    @property
    def ratio(self) -> float:
        return self.result.ratio

    @property
    def relative(self) -> float:
        """ratio - 1: +0.10 means the cell is 10% slower than the baseline."""
        return self.result.ratio - 1

    @property
    def text(self) -> str:
        return verdict_text(self.result)

    def sentence(self, family_size: int = 1) -> str:
        """The answer in plain words, e.g. ``CN/2/PIN/CPU is 10.0% slower than BM/2/PIN/CPU``;
        when undecided, how many more launch epochs would likely decide it (at the level a
        family of ``family_size`` claims will face)."""
        a, b, r = self.cell.name, self.baseline.name, self.result
        if self.verdict is stats.Verdict.FASTER:
            return f"{a} is {(1 - r.ratio) * 100:.1f}% faster than {b} (beyond the ±{r.margin:.0%} margin)"
        if self.verdict is stats.Verdict.SLOWER:
            return f"{a} is {(r.ratio - 1) * 100:.1f}% slower than {b} (beyond the ±{r.margin:.0%} margin)"
        if self.verdict is stats.Verdict.EQUIVALENT:
            return f"{a} and {b} are equivalent: within ±{r.margin:.0%} of each other"
        if r.basis == "none":
            return f"{a} and {b} cannot be told apart: they were never measured in the same blocks"
        per_launch = max(1, round(r.blocks / r.launch_pairs)) if r.launch_pairs else 1
        look = stats.outlook(r, blocks_per_launch=per_launch, level=r.alpha / max(1, family_size))
        more = (f"if the estimate holds, about {look.more_epochs} more launch"
                f"{'es' if look.more_epochs != 1 else ''} of each would decide it"
                if look.more_epochs is not None else
                "more launches are unlikely to decide it: the difference sits on the margin")
        return f"{a} against {b} is not decided yet at {1 - r.alpha:.0%} confidence: {more}"

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.cell.display, "baseline": self.baseline.display,
                "app": self.cell.app, "workload": self.cell.workload_label, "host": self.cell.host,
                **self.result.to_json()}


def compare_cells(judge: Judge, a: Cell, b: Cell, metric: str = "e2e") -> Comparison:
    """``a`` against baseline ``b``, paired over the blocks that hold both."""
    return Comparison(a, b, judge.compare(a, b, metric))


def _index(cells: Sequence[Cell]) -> dict[tuple[str, str, str, str], Cell]:
    return {(c.scenario.key, c.host, c.accel, c.summary.data_set): c for c in cells}


def _peer(index: dict, cell: Cell, *, accel: str | None = None, **changes: Any) -> Cell | None:
    key = cell.scenario.with_(**changes).key
    return index.get((key, cell.host, accel or cell.accel, cell.summary.data_set))


def overheads(cells: Sequence[Cell], judge: Judge) -> list[Comparison]:
    """Each non-BM cell against BM with the same cores, mode, processor, workload and host
    conditions, on the same host and data set (BM is always native)."""
    index = _index(cells)
    out = []
    for cell in cells:
        if cell.scenario.platform is PlatformName.BM:
            continue
        base = _peer(index, cell, accel="native", platform=PlatformName.BM)
        if base is not None:
            out.append(compare_cells(judge, cell, base))
    return out


def pin_gains(cells: Sequence[Cell], judge: Judge) -> list[Comparison]:
    """PIN against VNL for each platform/cores/processor/workload (ratio < 1: PIN faster)."""
    index = _index(cells)
    out = []
    for cell in cells:
        if cell.scenario.cpu_mode is not CpuMode.PIN:
            continue
        vnl = _peer(index, cell, cpu_mode=CpuMode.VNL)
        if vnl is not None:
            out.append(compare_cells(judge, cell, vnl))
    return out


def condition_effects(cells: Sequence[Cell], judge: Judge) -> list[Comparison]:
    """A host condition against its absence for the same deployment: busy against idle,
    throttled against native storage, cold against warm cache."""
    index = _index(cells)
    out = []
    for cell in cells:
        s = cell.scenario
        for field_name, default in (("host_load", HostLoad.IDLE), ("storage", Storage.NATIVE),
                                    ("page_cache", PageCache.WARM)):
            if getattr(s, field_name) is not default:
                base = _peer(index, cell, **{field_name: default})
                if base is not None:
                    out.append(compare_cells(judge, cell, base))
    return out


@dataclass
class ScaleUp:
    """E2E over cores for one platform/mode/processor/workload: where it stops improving."""

    series: list[Cell]  # sorted by cores
    steps: list[Comparison]  # each cores count against the previous one
    knee: int | None  # the cores after which one more step is not faster (None: undecided)
    best_cores: int

    @property
    def label(self) -> str:
        c = self.series[0]
        return f"{c.scenario.platform.value}/N/{c.scenario.cpu_mode.value}/{c.scenario.processor.value}"

    @property
    def keeps_improving(self) -> bool:
        return self.knee == self.series[-1].scenario.cores

    @property
    def decided(self) -> bool:
        return self.knee is not None

    def describe(self) -> str:
        c = self.series[0]
        cores = [x.scenario.cores for x in self.series]
        if self.knee is None:
            return (f"{self.label} {c.workload_label}: undecided (a step up in cores is not decided "
                    "faster, equivalent or slower yet)")
        if self.keeps_improving:
            return (f"{self.label} {c.workload_label}: every step up to {cores[-1]} cores is faster "
                    f"beyond the margin (no knee within {cores[0]}-{cores[-1]})")
        return (f"{self.label} {c.workload_label}: no step up after {self.knee} core"
                f"{'s' if self.knee != 1 else ''} is faster beyond the margin (the knee; fastest at "
                f"{self.best_cores})")


def scale_ups(cells: Sequence[Cell], judge: Judge) -> list[ScaleUp]:
    """Series with >= 2 core counts. The knee is the first core count whose next step up is
    decided not faster (equivalent or slower); an undecided step leaves the knee undecided."""
    series: dict[tuple, list[Cell]] = {}
    for cell in cells:
        key = (cell.scenario.with_(cores=1).key, cell.host, cell.accel, cell.summary.data_set)
        series.setdefault(key, []).append(cell)
    out = []
    for group in series.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda c: c.scenario.cores)
        steps = [compare_cells(judge, b, a) for a, b in zip(group, group[1:])]
        knee: int | None = group[-1].scenario.cores
        for prev, step in zip(group, steps):
            if step.verdict is stats.Verdict.FASTER:
                continue
            knee = prev.scenario.cores if step.decided else None
            break
        best = min(group, key=lambda c: c.summary.e2e_mean_ms)
        out.append(ScaleUp(group, steps, knee, best.scenario.cores))
    return out


@dataclass
class ChrTrend:
    """Overhead against BM of one platform/mode at each CHR measured."""

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
        """The overhead at the lowest CHR lies above the CI of the one at the highest."""
        lo, hi = self.low[1].result, self.high[1].result
        if not (math.isfinite(lo.ci[0]) and math.isfinite(hi.ci[1])):
            return False
        return lo.ci[0] > hi.ci[1]

    def describe(self) -> str:
        (c_lo, lo), (c_hi, hi) = self.low, self.high
        return (f"{self.platform} {self.cpu_mode} {self.workload}: overhead {lo.relative * 100:+.1f}% "
                f"at CHR {c_lo:.2f} vs {hi.relative * 100:+.1f}% at CHR {c_hi:.2f}")


def chr_trends(overhead_list: Sequence[Comparison]) -> list[ChrTrend]:
    groups: dict[tuple, list[tuple[float, Comparison]]] = {}
    for comp in overhead_list:
        c = comp.cell
        if c.chr is None or c.emulated:
            continue
        key = (c.scenario.platform.value, c.scenario.cpu_mode.value, c.scenario.processor.value,
               c.workload_label, c.host)
        groups.setdefault(key, []).append((c.chr, comp))
    out = []
    for (platform, mode, _proc, workload, _h), points in groups.items():
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
        """(speedup, low, high): CPU/GPU = 1 / ratio."""
        lo, hi = comp.result.ci
        inv = lambda r: 1 / r if r and r > 0 and math.isfinite(r) else math.nan  # noqa: E731
        return inv(comp.ratio), inv(hi), inv(lo)

    def describe(self) -> str:
        e, _, _ = self.speedup(self.e2e)
        i, _, _ = self.speedup(self.inference_only or self.infer_phase)
        what = "inference-only" if self.inference_only else "inference phase"
        return (f"{self.gpu.scenario.platform.value}/{self.gpu.scenario.cores}/{self.gpu.scenario.cpu_mode.value} "
                f"{self.cpu.workload_label}: GPU speedup {i:.1f}x ({what}) vs {e:.1f}x E2E")


def gpu_speedups(cells: Sequence[Cell], judge: Judge) -> list[GpuSpeedup]:
    index = _index(cells)
    out = []
    for gpu in cells:
        if gpu.scenario.processor is not Processor.GPU or gpu.scenario.inference_only:
            continue
        cpu = _peer(index, gpu, processor=Processor.CPU)
        if cpu is None:
            continue
        only = None
        g_only = _peer(index, gpu, inference_only=True)
        c_only = _peer(index, cpu, inference_only=True)
        if g_only is not None and c_only is not None:
            only = compare_cells(judge, g_only, c_only, "infer")
        out.append(GpuSpeedup(cpu, gpu, compare_cells(judge, gpu, cpu),
                              compare_cells(judge, gpu, cpu, "infer"), only))
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
