"""From a study to a plan for this host: what runs (with its platform, data folder, stopping
rule and timeout), what is skipped and why, and how long it should take.

Skips are reasons, never errors: an app this version lacks, a platform not implemented in
this version, a platform unavailable here (``unavailable_reason``), a scenario the platform
cannot run here (``scenario_problem``), more cores than the host has, throttled storage on
a platform that cannot apply I/O limits or a data folder not on a block device.

Duration estimates come from past runs of the same scenario in the store when there are
any, else from a small per-app/size heuristic (start-up + requests x per-request time,
slowed down for emulated VMs); each estimate says which.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .platforms.base import PlatformOptions
from .scenario import PlatformName, Scenario, Storage
from .study import PAPER_APPS, VM_PLATFORMS, Study, app_problem, kvm_usable
from .sweep import PlannedScenario, RunSettings

# -- the heuristic (seconds), measured roughly on a 2-core host with 1-2 cores per run -----------
#: process start, imports, model build: BM/CN a fresh Python with torch; VMs boot a guest first
STARTUP_S = {"BM": 1.5, "CN": 2.0, "VM": 10.0, "MVM": 8.0, "VMCN": 12.0}
EMULATED_STARTUP_S = 60.0  # TCG: `import torch` alone takes 35-45 s
EMULATED_SLOWDOWN = 50.0  # TCG runs compute tens to a thousand times slower
#: E2E seconds per request on one core, by (app, size); "*" = any other size
PER_REQUEST_S = {
    ("ic", "tiny"): 0.008, ("ic", "small"): 0.05, ("ic", "*"): 0.15,
    ("sr", "tiny"): 0.1, ("sr", "small"): 0.5, ("sr", "*"): 2.0,
    ("nlp", "tiny"): 0.02, ("nlp", "base"): 0.8, ("nlp", "*"): 2.2,
    ("rs", "tiny"): 0.01, ("rs", "*"): 0.02,
}
UNKNOWN_PER_REQUEST_S = 0.1


def startup_s(platform: str, emulated: bool) -> float:
    return EMULATED_STARTUP_S if emulated else STARTUP_S.get(platform, 5.0)


def per_request_s(app: str, size: str, emulated: bool) -> float:
    base = PER_REQUEST_S.get((app, size), PER_REQUEST_S.get((app, "*"), UNKNOWN_PER_REQUEST_S))
    return base * (EMULATED_SLOWDOWN if emulated else 1.0)


def vms_native(host: Any, options: PlatformOptions | None = None) -> bool:
    """Whether VM, MVM and VMCN run natively (KVM) here, deciding ``[overrides.emulated]``.

    A VM platform may answer with an ``emulated(host) -> bool`` method (e.g. from its boot
    probe); without one, /dev/kvm is tried (``study.kvm_usable``)."""
    from .platforms import create_platform, implemented

    for name in VM_PLATFORMS:
        if not implemented(name):
            continue
        try:
            hook = getattr(create_platform(name, options), "emulated", None)
            if hook is not None:
                return not hook(host)
        except Exception:  # noqa: BLE001 - fall back to the device test
            break
    return kvm_usable()


def plan_study(study: Study, host: Any, *, kvm: bool | None = None,
               options: PlatformOptions | None = None) -> list[PlannedScenario]:
    """Every scenario of the study, planned for ``host`` (HostFacts). Nothing is started."""
    from .datasets.cache import data_dir_for
    from .platforms import create_platform, implemented

    from .conditions import io_limits_for

    base = options or PlatformOptions()
    kvm = vms_native(host, base) if kvm is None else kvm
    m = study.model
    platform_reasons: dict[PlatformName, str | None] = {}
    app_reasons: dict[str, str | None] = {}
    planned: list[PlannedScenario] = []
    for scenario in study.expand(kvm=kvm):
        emulated = scenario.platform in VM_PLATFORMS and not kvm
        settings = RunSettings(timeout_s=study.timeout_for(scenario.platform, emulated),
                               seed=m.seed, busy_probe_s=m.host.busy_probe_s,
                               busy_threshold=m.host.busy_threshold)
        item = PlannedScenario(scenario, rule=study.rule_for(scenario.platform, emulated),
                               settings=settings,
                               data_dir=data_dir_for(scenario.app, m.data_count, m.seed))
        if emulated:
            item.notes.append("emulated (no KVM)")
        planned.append(item)
        if scenario.app not in app_reasons:
            problem = app_problem(scenario.app)
            if problem is not None and scenario.app in PAPER_APPS:
                problem = f"app {scenario.app!r} is not in this version of deploybench"
            app_reasons[scenario.app] = problem
        if app_reasons[scenario.app]:
            item.skip_reason = app_reasons[scenario.app]
            continue
        if scenario.cores > host.cores:
            item.skip_reason = f"asks for {scenario.cores} cores, this host has {host.cores}"
            continue
        if not implemented(scenario.platform):
            item.skip_reason = f"platform {scenario.platform.value} is not implemented in this version"
            continue
        if scenario.platform not in platform_reasons:
            try:
                platform_reasons[scenario.platform] = create_platform(scenario.platform, base) \
                    .unavailable_reason(host)
            except Exception as exc:  # noqa: BLE001 - a broken platform is a skip, not a crash
                platform_reasons[scenario.platform] = f"cannot be set up: {exc}"
        if platform_reasons[scenario.platform]:
            item.skip_reason = f"{scenario.platform.value} unavailable here: {platform_reasons[scenario.platform]}"
            continue
        io_limits = None
        if scenario.storage is Storage.THROTTLED:
            throttle = m.host.throttle
            io_limits, problem = io_limits_for(item.data_dir, int(throttle.read_mb_s * 1_000_000),
                                               throttle.read_iops, throttle.device)
            if problem:
                item.skip_reason = f"storage=throttled: {problem}"
                continue
        platform = create_platform(scenario.platform, _with(base, io_limits=io_limits))
        if io_limits is not None and not getattr(platform, "supports_io_limits", False):
            item.skip_reason = (f"storage=throttled: platform {scenario.platform.value} cannot "
                                "apply I/O limits in this version")
            continue
        hook = getattr(platform, "scenario_problem", None)
        problem = hook(scenario, host) if hook is not None else None
        if problem:
            item.skip_reason = problem
            continue
        item.platform = platform
    return planned


def _with(options: PlatformOptions, **changes: Any) -> PlatformOptions:
    import dataclasses

    return dataclasses.replace(options, **changes)


@dataclass(frozen=True)
class Estimate:
    run_s: float  # one run
    runs_low: int  # warm-ups + min runs (converged early)
    runs_high: int  # warm-ups + max runs, within the time budget
    basis: str  # "past runs (N)" | "heuristic"

    @property
    def low_s(self) -> float:
        return self.run_s * self.runs_low

    @property
    def high_s(self) -> float:
        return self.run_s * self.runs_high


def estimate(item: PlannedScenario, past_run_s: Sequence[float] = (), kvm: bool = True) -> Estimate:
    rule = item.rule
    s = item.scenario
    if past_run_s:
        run_s, basis = sum(past_run_s) / len(past_run_s), f"past runs ({len(past_run_s)})"
    else:
        emulated = s.platform in VM_PLATFORMS and not kvm
        run_s = (startup_s(s.platform.value, emulated)
                 + s.requests * per_request_s(s.app, s.model_size, emulated) / max(1, min(s.cores, 2)) ** 0.5)
        basis = "heuristic"
    run_s += item.settings.busy_probe_s
    low = rule.warmup_runs + max(1, min(rule.min_runs, rule.max_runs))
    high = rule.warmup_runs + rule.max_runs
    budget_runs = int(rule.max_time_s // max(run_s, 1e-3)) + 1  # the budget is checked after a run
    return Estimate(run_s, min(low, budget_runs), min(high, budget_runs), basis)


def past_durations(store: Any, scenario: Scenario) -> list[float]:
    """Wall times of this scenario's successful runs in ``store`` (any study)."""
    if store is None:
        return []
    rows = store.db.execute(
        "SELECT finished_at - started_at FROM runs WHERE scenario_key=? AND status IN ('ok','warmup')",
        (scenario.key,)).fetchall()
    return [float(r[0]) for r in rows]


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def data_dirs(planned: Sequence[PlannedScenario]) -> dict[str, Path]:
    return {p.scenario.app: p.data_dir for p in planned if p.skip_reason is None and p.data_dir}


def plan_lines(study: Study, planned: Sequence[PlannedScenario], store: Any = None,
               kvm: bool = True) -> tuple[list[str], float, float]:
    """The `sweep --plan` text: one line per scenario, then the estimated duration.
    Returns (lines, low seconds, high seconds)."""
    runnable = [p for p in planned if p.skip_reason is None]
    lines = [f"study {study.name} ({study.source}): {len(planned)} scenarios, "
             f"{len(runnable)} to run, {len(planned) - len(runnable)} skipped; seed {study.seed}"]
    width = max((len(p.scenario.label) for p in planned), default=20)
    low = high = 0.0
    past_n = heur_n = 0
    from .sweep import decide_stop

    stored: dict[str, list[dict[str, Any]]] = {}
    if store is not None:
        for row in store.study_runs(study.name):
            stored.setdefault(row["scenario_key"], []).append(row)
    skipped: dict[str, list[str]] = {}
    for p in planned:
        if p.skip_reason is not None:
            skipped.setdefault(p.skip_reason, []).append(p.scenario.label)
            continue
        rows = [r for r in stored.get(p.key, []) if r.get("run_key") is not None]
        done = decide_stop(rows, p.rule) if rows else None
        if done is not None:
            lines.append(f"  done {p.scenario.label:<{width}}  {len(rows)} runs stored, stopped: "
                         f"{done.reason} ({done.detail})")
            continue
        est = estimate(p, past_durations(store, p.scenario), kvm=kvm)
        est = Estimate(est.run_s, max(0, est.runs_low - len(rows)), max(0, est.runs_high - len(rows)),
                       est.basis)
        low, high = low + est.low_s, high + est.high_s
        if est.basis == "heuristic":
            heur_n += 1
        else:
            past_n += 1
        rule = p.rule
        notes = f"  [{', '.join(p.notes)}]" if p.notes else ""
        lines.append(f"  run  {p.scenario.label:<{width}}  {est.runs_low}-{est.runs_high} runs "
                     f"x {est.run_s:.1f} s ({est.basis}); warm-up {rule.warmup_runs}, "
                     f"CI ±{rule.target_rel_ci:.0%}, max {rule.max_runs} runs / "
                     f"{format_duration(rule.max_time_s)}{notes}"
                     + (f"; {len(rows)} runs stored" if rows else ""))
    for reason, labels in skipped.items():
        lines.append(f"  skip {len(labels)}: {reason}")
        row = ""
        for label in labels:
            if row and len(row) + len(label) + 2 > 110:
                lines.append("       " + row.rstrip("; "))
                row = ""
            row += label + "; "
        if row:
            lines.append("       " + row.rstrip("; "))
    basis = []
    if past_n:
        basis.append(f"{past_n} scenarios from past runs in the store")
    if heur_n:
        basis.append(f"{heur_n} by the per-app/size heuristic")
    if not basis:
        lines.append("estimated duration: nothing left to run"
                     + (" (every scenario has stopped; see `deploybench show`)" if runnable else ""))
    else:
        lines.append(f"estimated duration: {format_duration(low)} to {format_duration(high)}"
                     f" ({'; '.join(basis)})")
    return lines, low, high
