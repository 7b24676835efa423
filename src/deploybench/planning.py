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

from . import footprint
from .execute import RunSettings
from .platforms.base import PlatformOptions
from .scenario import PlatformName, Scenario, Storage
from .study import PAPER_APPS, VM_PLATFORMS, Study, app_problem
from .sweep import PlannedScenario

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
    """Whether VM, MVM and VMCN run natively (KVM) here, deciding ``[overrides.emulated]``:
    the VM platform answers (``emulated``, from its one KVM decision)."""
    from .platforms import create_platform, implemented

    if not implemented(PlatformName.VM):
        return False
    return not create_platform(PlatformName.VM, options).emulated(host)


def plan_study(study: Study, host: Any, *, kvm: bool | None = None,
               options: PlatformOptions | None = None) -> list[PlannedScenario]:
    """Every scenario of the study, planned for ``host`` (HostFacts). Nothing is started."""
    base = options or PlatformOptions()
    kvm = vms_native(host, base) if kvm is None else kvm
    return _plan(study, study.expand(kvm=kvm), host, kvm, base)


def plan_capacity(study: Study, host: Any, *, kvm: bool | None = None,
                  options: PlatformOptions | None = None) -> list[PlannedScenario]:
    """The study's ``[capacity]`` searches, planned for ``host`` like its scenarios (skips
    with their reasons); each item's scenario is the search's base (Server, no rate)."""
    base = options or PlatformOptions()
    if study.model.capacity is None:
        return []
    kvm = vms_native(host, base) if kvm is None else kvm
    return _plan(study, study.capacity_scenarios(kvm=kvm), host, kvm, base)


def _plan(study: Study, scenarios: Sequence[Scenario], host: Any, kvm: bool,
          base: PlatformOptions) -> list[PlannedScenario]:
    from .datasets.cache import data_dir_for
    from .platforms import create_platform, implemented

    from .conditions import io_limits_for

    m = study.model
    platform_reasons: dict[PlatformName, str | None] = {}
    app_reasons: dict[str, str | None] = {}
    planned: list[PlannedScenario] = []
    for scenario in scenarios:
        emulated = scenario.platform in VM_PLATFORMS and not kvm
        settings = RunSettings(timeout_s=study.timeout_for(scenario.platform, emulated),
                               seed=m.seed, busy_threshold=m.host.busy_threshold)
        item = PlannedScenario(scenario, rule=study.rule_for(scenario.platform, emulated),
                               settings=settings, emulated=emulated,
                               data_dir=data_dir_for(scenario.app, m.data_count, m.seed))
        if emulated:
            item.notes.append("emulated (no KVM)")
        planned.append(item)
        if emulated and (why := study.emulated_skip(scenario.platform)):
            item.skip_reason = why
            continue
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
        if io_limits is not None and not platform.supports_io_limits:
            item.skip_reason = (f"storage=throttled: platform {scenario.platform.value} cannot "
                                "apply I/O limits in this version")
            continue
        problem = platform.scenario_problem(scenario, host)
        if problem:
            item.skip_reason = problem
            continue
        item.platform = platform
    return planned


def _with(options: PlatformOptions, **changes: Any) -> PlatformOptions:
    import dataclasses

    return dataclasses.replace(options, **changes)


@dataclass(frozen=True)
class Cost:
    """What a launch and a round of one scenario cost (seconds), and where that comes from."""

    launch_s: float
    round_s: float
    basis: str  # "past runs (N)" | "heuristic"


def scenario_cost(item: PlannedScenario, store: Any = None) -> Cost:
    """From this scenario's past launches and rounds in the store (any study), else from the
    per-app/size heuristic."""
    launches, rounds = past_costs(store, item.scenario)
    s = item.scenario
    emulated = item.emulated
    heuristic_round = 0.15 + s.requests * per_request_s(s.app, s.model_size, emulated) / max(1, min(s.cores, 2)) ** 0.5
    heuristic_launch = startup_s(s.platform.value, emulated)
    if rounds:
        launch = sum(launches) / len(launches) if launches else heuristic_launch
        return Cost(launch, sum(rounds) / len(rounds), f"past runs ({len(rounds)})")
    return Cost(heuristic_launch, heuristic_round, "heuristic")


def past_costs(store: Any, scenario: Scenario) -> tuple[list[float], list[float]]:
    """Launch latencies and round durations of this scenario in ``store`` (any study)."""
    if store is None:
        return [], []
    rows = store.db.execute(
        "SELECT finished_at - started_at, launch_round, platform_json FROM runs "
        "WHERE scenario_key=? AND status IN ('ok','warmup') AND launch_id IS NOT NULL",
        (scenario.key,)).fetchall()
    import json

    rounds = [float(r[0]) for r in rows]
    launches = []
    for _, round_no, facts in rows:
        if round_no == 1:
            launch = json.loads(facts or "{}")
            if launch.get("start_latency_s") is not None:
                launches.append(footprint.launch_cost_s(launch["start_latency_s"], launch))
    return launches, rounds


def parse_duration(text: str) -> float:
    """``90s``, ``10m``, ``1.5h`` or plain seconds, as seconds; ScenarioError when unreadable."""
    from .scenario import ScenarioError

    units = {"s": 1, "m": 60, "min": 60, "h": 3600}
    value = text.strip().lower()
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            number, scale = value[:-len(suffix)], units[suffix]
            break
    else:
        number, scale = value, 1
    try:
        seconds = float(number) * scale
    except ValueError:
        raise ScenarioError(f"--budget {text!r}: write e.g. 90s, 10m or 1h") from None
    if not seconds > 0:
        raise ScenarioError(f"--budget must be more than 0, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def data_dirs(planned: Sequence[PlannedScenario]) -> dict[str, Path]:
    return {p.scenario.app: p.data_dir for p in planned if p.skip_reason is None and p.data_dir}


def plan_lines(study: Study, planned: Sequence[PlannedScenario], store: Any = None,
               kvm: bool = True, budget_s: float | None = None) -> tuple[list[str], float, float]:
    """The `sweep --plan` text: per group of compared scenarios, what one launch epoch
    costs and how many epochs it may take; then the estimated duration and the budget.
    Returns (lines, low seconds, high seconds)."""
    from .sweep import class_rows, group_state, make_groups, plan_group, study_family

    runnable = [p for p in planned if p.skip_reason is None]
    groups = make_groups(planned)
    own = study_family(groups)
    family = study_family(groups, store, study.name) if store is not None else own
    stored = f", with {family - own} claim(s) of the store's report" if family > own else ""
    lines = [f"study {study.name} ({study.source}): {len(planned)} scenarios, "
             f"{len(runnable)} to run in {len(groups)} group(s) of compared scenarios, "
             f"{len(planned) - len(runnable)} skipped; seed {study.seed}; "
             f"{own} claim pair(s) decided together (Holm){stored}"]
    rows = store.study_runs(study.name) if store is not None else []
    low = high = 0.0
    bases: set[str] = set()
    for group in groups:
        rule = group.rule
        state = group_state(group, class_rows(rows, group.host_class))
        plan = plan_group(group, state, family=family)
        costs = {m.key: scenario_cost(m, store) for m in group.members}
        bases |= {"past runs" if c.basis.startswith("past") else "heuristic" for c in costs.values()}
        head = (f"  group {group.label}: {len(group.members)} scenarios, "
                f"{len(group.selections())} selection(s), {len(group.claims())} claim pair(s); "
                f"margin ±{rule.margin:.0%}, {min(rule.min_launches, rule.max_launches)}-{rule.max_launches} "
                f"launch epochs, "
                f"max {format_duration(rule.max_time_s)}")
        lines.append(head)
        if plan.stop is not None:
            lines.append(f"    done: {plan.stop} ({plan.detail}); {state.epochs_done} epochs stored")
            continue
        active = [m for m in group.members if m.key in plan.active]
        blocks = plan.blocks
        epoch_s = sum(costs[m.key].launch_s + (rule.warmup_rounds + blocks) * costs[m.key].round_s
                      for m in active)
        epochs_low = max(0, min(rule.min_launches, rule.max_launches) - state.epochs_done)
        epochs_high = max(0, rule.max_launches - state.epochs_done)
        left = max(0.0, rule.max_time_s - state.spent_s)
        g_low = min(epochs_low * epoch_s, left + epoch_s)
        g_high = min(epochs_high * epoch_s, left + epoch_s)  # the budget is checked between epochs
        low, high = low + g_low, high + g_high
        projected = [o.more_epochs for o in plan.outlooks if o.basis == "projected" and o.more_epochs]
        likely = ""
        if projected and len(projected) == len(plan.outlooks):
            n = min(max(max(projected), epochs_low), epochs_high)
            likely = (f"; likely {n} (projected from the {state.epochs_done} epochs stored): "
                      f"{format_duration(min(n * epoch_s, left + epoch_s))}")
        lines.append(f"    one epoch ≈ {format_duration(epoch_s)} ({len(active)} launches, "
                     f"{rule.warmup_rounds} warm-up + {blocks} blocks); {epochs_low}-{epochs_high} more "
                     f"epochs: {format_duration(g_low)} to {format_duration(g_high)}{likely}"
                     + (f"; {state.epochs_done} epochs stored" if state.epochs_done and not likely else ""))
        for m in group.members:
            c = costs[m.key]
            mark = "run " if m.key in plan.active else "idle"
            notes = f"  [{', '.join(m.notes)}]" if m.notes else ""
            lines.append(f"    {mark} {m.scenario.label}: launch {c.launch_s:.1f} s, round {c.round_s:.2f} s "
                         f"({c.basis}){notes}")
    skipped: dict[str, list[str]] = {}
    for p in planned:
        if p.skip_reason is not None:
            skipped.setdefault(p.skip_reason, []).append(p.scenario.label)
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
    if not runnable or high == 0:
        lines.append("estimated duration: nothing left to run"
                     + (" (every group has stopped; see `deploybench show`)" if runnable else ""))
    else:
        basis = " and ".join(sorted(bases)) or "heuristic"
        text = (f"estimated duration: {format_duration(low)} (every decision made at the first "
                f"chance) to {format_duration(high)} (every group to its limit); from {basis}")
        if budget_s is not None:
            text += f"; --budget {format_duration(budget_s)}" + (
                " cuts it short: undecided pairs are reported" if budget_s < high else "")
        lines.append(text)
    return lines, low, high
