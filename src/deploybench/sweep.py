"""Sweeps: a study's scenarios, measured in interleaved blocks of warm sessions until every
decision the report needs is made, the budget is spent, or nothing more can be learnt.

DESIGN
- Scenarios that will be compared -- one app and workload on this host (host conditions
  and deployments vary inside a group) -- form a *group* and are measured together, in
  launch epochs of blocks (``execute.run_block_set``). TCG-emulated guests form groups of
  their own (they are never compared with native runs).
- What a group needs (``GroupNeeds``): the recommendation's selection, "pick X: every other
  scenario is slower, or within the margin of X", for each host condition set, and the
  claims the report makes about pairs that differ in one thing: each platform against BM,
  PIN against VNL, each step up in cores, busy against idle, throttled against native
  storage, cold against warm cache.
- Racing (``stats.plan_epoch``): before each epoch the stored rounds decide which scenarios
  a pending decision still needs; the others drop out (a rival decided slower than the
  best beyond the margin, say). The recommendation comes first: after ``min_launches``
  epochs, while a selection is open, only its scenarios run (``plan_group``), and the claims'
  other scenarios wait until it is decided. A group stops when every needed decision is made
  (``decided``), after ``max_launches`` epochs, when its ``max_time_s`` or the sweep's
  ``--budget`` is spent, or when its scenarios keep failing to launch.
- Everything is derived from the store: a sweep restarted after Ctrl-C, a crash or a power
  loss does only what is missing (its next epoch number and every decision are recomputed
  from the stored rounds; an interrupted round is kept, without a run key).
- Where block sets run is an executor's business (``executors.py``): this host, one after
  the other (``LocalExecutor``), or a fleet of hosts (``DaskExecutor``). Groups are
  independent, so the loop keeps as many block sets in flight as the executor takes
  (``Executor.capacity``: one per host, and for a fleet one more queued behind each, so a
  host never waits for the client between two), one epoch of a group at a time, and plans
  a group's next epoch when the results of the last one are in.
  Racing is per group *and host class* (identical hosts: ``host.host_fingerprint``): rounds
  of another class never enter a group's decisions. A launch epoch whose host died (its
  rounds in flight stored as ``lost``) does not count towards ``max_launches``: it is
  measured again, on another host of the class, or the group stops (``no_host``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import footprint, stats
from .execute import BlockSet, Contender, RunSettings
from .scenario import CpuMode, HostLoad, PageCache, PlatformName, Processor, Scenario, Storage
from .store import FAILED_STATUSES, LOST_STATUS, RunRecord, Store

if TYPE_CHECKING:
    from .executors import Executor

#: seconds a launch and a round cost before any is measured (for the first epoch's plan)
DEFAULT_LAUNCH_S = 3.0
DEFAULT_ROUND_S = 0.5
#: block sets of a group lost (or failed to start) in a row that stop the group
MAX_LOST_IN_A_ROW = 3
#: why a scenario that only the report's claims need sits out an epoch (see ``plan_group``)
WAITS_FOR_SELECTION = "waits for the recommendation's decision (measured after it)"
#: reasons a scenario sits out that leave its decisions open: its stop is the group's, never "dropped"
NOT_DONE_WITH = (stats.GIVEN_UP, WAITS_FOR_SELECTION)


@dataclass(frozen=True)
class RaceRule:
    """A group's stopping rule (a study's ``[stopping]``)."""

    warmup_rounds: int = 1  # per launch, stored with status warmup, never averaged
    margin: float = 0.05  # equivalence margin: within ±5% is "equivalent"
    confidence: float = 0.95
    min_launches: int = 3  # nothing is decided with fewer launch epochs
    max_launches: int = 10  # launch epochs at most
    blocks: int | None = None  # blocks per launch; None: chosen from the variance components
    target_rel_ci: float = 0.02  # a scenario compared with nothing stops at this CI (launches)
    max_time_s: float = 600.0  # wall time of the group's epochs
    max_consecutive_failures: int = 2  # failed launches in a row that drop a scenario

    @property
    def alpha(self) -> float:
        return 1 - self.confidence


@dataclass(frozen=True)
class StopDecision:
    reason: str  # decided | dropped | max_launches | time_budget | budget | failing | skipped | no_host
    detail: str
    runs: int  # measured rounds
    mean_ms: float | None = None
    rel_ci: float | None = None


@dataclass
class PlannedScenario:
    """One scenario of a study, ready to run (or skipped, with the reason)."""

    scenario: Scenario
    platform: Any = None
    data_dir: Path | None = None
    rule: RaceRule = RaceRule()
    settings: RunSettings = RunSettings()
    skip_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    emulated: bool = False
    #: the host class (``host.host_fingerprint``) it is planned for; None: the executor's only one
    host_class: str | None = None

    @property
    def key(self) -> str:
        return self.scenario.key

    def contender(self) -> Contender:
        assert self.platform is not None and self.data_dir is not None
        return Contender(self.scenario, self.platform, self.data_dir, self.settings)


# -- groups and what they need ----------------------------------------------------------------
def group_key(scenario: Scenario, emulated: bool) -> str:
    """Scenarios measured together: one workload (app, size, backend, LoadGen scenario,
    requests, batch, inference-only), any deployment (CPU or GPU included) and host
    conditions."""
    workload = scenario.with_(platform=PlatformName.BM, cores=1, cpu_mode=CpuMode.VNL,
                              processor=Processor.CPU, host_load=HostLoad.IDLE, page_cache=PageCache.WARM,
                              storage=Storage.NATIVE)
    return workload.key + ("|emulated" if emulated else "")


def conditions_key(scenario: Scenario) -> tuple[str, ...]:
    return tuple(scenario.conditions)


@dataclass
class Group:
    key: str
    members: list[PlannedScenario]
    emulated: bool
    host_class: str | None = None  # measured on hosts of this class (None: the executor's only one)

    @property
    def label(self) -> str:
        s = self.members[0].scenario
        return (s.label.split(" · ", 1)[1] + (" [emulated]" if self.emulated else "")
                + (f" on {self.host_class}" if self.host_class else ""))

    @property
    def rule(self) -> RaceRule:
        rules = [m.rule for m in self.members]
        return RaceRule(
            warmup_rounds=max(r.warmup_rounds for r in rules),
            margin=min(r.margin for r in rules), confidence=max(r.confidence for r in rules),
            min_launches=max(r.min_launches for r in rules),
            max_launches=max(r.max_launches for r in rules),
            blocks=next((r.blocks for r in rules if r.blocks is not None), None),
            target_rel_ci=min(r.target_rel_ci for r in rules),
            max_time_s=max(r.max_time_s for r in rules),
            max_consecutive_failures=max(r.max_consecutive_failures for r in rules))

    def selections(self) -> list[list[str]]:
        """The recommendation's candidate sets: an idle host, per set of the other host
        conditions. Emulated guests are never recommended."""
        if self.emulated:
            return []
        by_conditions: dict[tuple[str, ...], list[str]] = {}
        for m in self.members:
            s = m.scenario
            if s.host_load is HostLoad.IDLE:
                by_conditions.setdefault(conditions_key(s), []).append(m.key)
        return [keys for keys in by_conditions.values() if len(keys) >= 2]

    def claims(self) -> list[tuple[str, str]]:
        """Pairs that differ in one thing, as the report compares them: (scenario, baseline)."""
        keys = {m.key for m in self.members}
        out: list[tuple[str, str]] = []

        def pair(s: Scenario, base: Scenario) -> None:
            if base.key in keys and s.key != base.key:
                out.append((s.key, base.key))

        for m in self.members:
            s = m.scenario
            if s.platform is not PlatformName.BM:
                pair(s, s.with_(platform=PlatformName.BM))
            if s.cpu_mode is CpuMode.PIN:
                pair(s, s.with_(cpu_mode=CpuMode.VNL))
            if s.host_load is HostLoad.BUSY:
                pair(s, s.with_(host_load=HostLoad.IDLE))
            if s.storage is Storage.THROTTLED:
                pair(s, s.with_(storage=Storage.NATIVE))
            if s.page_cache is PageCache.COLD:
                pair(s, s.with_(page_cache=PageCache.WARM))
            bigger = sorted(c.scenario.cores for c in self.members
                            if c.scenario.with_(cores=s.cores).key == s.key and c.scenario.cores > s.cores)
            if bigger:
                pair(s.with_(cores=bigger[0]), s)
        return list(dict.fromkeys(out))


def make_groups(planned: Sequence[PlannedScenario]) -> list[Group]:
    """The groups of compared scenarios, one per workload (and per host class, on a fleet)."""
    groups: dict[tuple[str, str | None], Group] = {}
    for p in planned:
        if p.skip_reason is not None:
            continue
        key = group_key(p.scenario, p.emulated)
        groups.setdefault((key, p.host_class), Group(key, [], p.emulated, p.host_class)).members.append(p)
    return sorted(groups.values(), key=lambda g: (g.emulated, g.label))


def class_rows(rows: Sequence[dict[str, Any]], host_class: str | None) -> list[dict[str, Any]]:
    """The study rows measured on hosts of ``host_class`` (None: all of them). Runs stored
    before runs carried a fingerprint count for every class."""
    if host_class is None:
        return list(rows)
    return [r for r in rows if r.get("host_class") in (None, host_class)]


# -- the state of a group, from the store -------------------------------------------------------
@dataclass
class GroupState:
    """What the store holds for a group: its rounds (for the statistics), epochs done,
    costs, launch failures in a row, time spent."""

    rounds: list[stats.Round]
    epochs_done: int  # launch epochs stored, less those lost with their host
    spent_s: float
    launch_s: dict[str, float]
    round_s: dict[str, float]
    failures_in_a_row: dict[str, int]
    measured: dict[str, int]
    last_error: dict[str, str] = field(default_factory=dict)
    next_epoch: int = 0  # the number the next launch epoch gets (one more than any stored)
    lost_epochs: int = 0  # epochs with a round lost with its host (measured again)


def group_state(group: Group, rows: Sequence[dict[str, Any]]) -> GroupState:
    keys = {m.key for m in group.members}
    mine = [r for r in rows if r["scenario_key"] in keys]
    rounds, launch_s, round_s = [], {}, {}
    epochs: set[int] = set()
    lost: set[int] = set()
    spent: dict[tuple[int, str], tuple[float, float]] = {}
    launching: dict[int, tuple[float, float]] = {}  # per epoch: first launch to last warm worker
    failures_in_a_row: dict[str, int] = {k: 0 for k in keys}
    measured: dict[str, int] = {k: 0 for k in keys}
    last_error: dict[str, str] = {}
    latencies: dict[str, list[float]] = {}
    durations: dict[str, list[float]] = {}
    for r in sorted(mine, key=lambda r: r["started_at"]):
        key = r["scenario_key"]
        if r.get("repetition") is not None:
            epochs.add(int(r["repetition"]))
            if r["status"] == LOST_STATUS:
                lost.add(int(r["repetition"]))
            lo, hi = spent.get((int(r["repetition"]), ""), (math.inf, 0.0))
            spent[(int(r["repetition"]), "")] = (min(lo, r["started_at"]), max(hi, r["finished_at"]))
            if r.get("launch_round") == 1 and r.get("launch_wall") is not None and r.get("ready_wall") is not None:
                # the epoch's launches come before its first round: their time is spent too,
                # once (sessions of a wave load at the same time: not the sum of their latencies)
                lo, hi = launching.get(int(r["repetition"]), (math.inf, 0.0))
                launching[int(r["repetition"])] = (min(lo, float(r["launch_wall"])),
                                                   max(hi, float(r["ready_wall"])))
        if r["status"] in FAILED_STATUSES:
            failures_in_a_row[key] += 1
            last_error[key] = r.get("error") or ""
        elif r["status"] in ("ok", "warmup"):
            failures_in_a_row[key] = 0
        if r["status"] == "ok":
            mean = (r.get("summary") or {}).get("e2e_mean_ms")
            if mean is not None and r.get("launch_id"):
                rounds.append(stats.Round(key, r["launch_id"], float(mean), r.get("block_id")))
                measured[key] += 1
            durations.setdefault(key, []).append(r["finished_at"] - r["started_at"])
        latency = r.get("start_latency_s")
        if latency is not None and r.get("launch_round") == 1:
            latencies.setdefault(key, []).append(footprint.launch_cost_s(latency, r))
    for key in keys:
        launch_s[key] = float(sum(latencies[key]) / len(latencies[key])) if latencies.get(key) else DEFAULT_LAUNCH_S
        round_s[key] = float(sum(durations[key]) / len(durations[key])) if durations.get(key) else DEFAULT_ROUND_S
    spent_s = sum(hi - lo for lo, hi in spent.values() if hi > lo) \
        + sum(hi - lo for lo, hi in launching.values() if hi > lo)
    return GroupState(rounds, len(epochs - lost), spent_s, launch_s, round_s,
                      failures_in_a_row, measured, last_error,
                      next_epoch=max(epochs) + 1 if epochs else 0, lost_epochs=len(lost))


@dataclass
class GroupPlan:
    """The next epoch of a group, or why it is over."""

    active: list[str]
    blocks: int
    pending: list[tuple[str, str]]
    outlooks: list[stats.PairOutlook]
    selections: list[stats.Selection]
    claims: list[stats.PairedComparison]
    dropped: dict[str, str]
    stop: str | None = None  # why the group is over (None: run the next epoch)
    detail: str = ""


def epochs_left(group: Group, state: GroupState, usable: Sequence[str]) -> int:
    """The launch epochs a group's rule still allows: by max_launches, and by max_time_s at
    the cost of an epoch of every usable member (the budget is checked between epochs, so an
    epoch starts while any time is left)."""
    rule = group.rule
    by_launches = max(0, rule.max_launches - state.epochs_done)
    epoch_s = sum(state.launch_s.get(k, DEFAULT_LAUNCH_S)
                  + (rule.warmup_rounds + (rule.blocks or stats.MIN_BLOCKS)) * state.round_s.get(k, DEFAULT_ROUND_S)
                  for k in usable)
    left_s = rule.max_time_s - state.spent_s
    by_time = 0 if left_s <= 0 else (math.ceil(left_s / epoch_s) if epoch_s > 0 else by_launches)
    return min(by_launches, by_time)


def study_family(groups: Sequence[Group], store: Store | None = None, study: str | None = None) -> int:
    """The claims a report decides together (Holm) with this study's: every group's claim
    pairs, plus, with ``store``, every claim a report of the store's runs outside ``study``
    makes already (other studies, `run`s). Why: a sweep that decided its claims in a family
    of its own stopped measuring claims that the store's report then left undecided (demo:
    practices-quick's native-vs-throttled claims, decided at 8 with 3 launch pairs, were
    undecided among the report's 75). Studies run into the store later still add to the
    report's family; they cannot be counted before they exist."""
    own = sum(len(g.claims()) for g in groups)
    if store is None:
        return own
    others = [r for r in store.runs() if r.study != study]
    if not others:
        return own
    from .report.build import family_size

    return own + family_size(others)


def plan_group(group: Group, state: GroupState, *, family: int,
               budget_left_s: float | None = None) -> GroupPlan:
    """Racing for one group: what its next epoch measures, or why it stops. ``family``: the
    claims its own are decided with (:func:`study_family`), so that a claim the sweep stops
    measuring as decided is one the study's report decides too."""
    rule = group.rule
    options = dict(margin=rule.margin, alpha=rule.alpha, min_launches=rule.min_launches)
    failing = {k for k, n in state.failures_in_a_row.items() if n >= rule.max_consecutive_failures}
    usable = [m.key for m in group.members if m.key not in failing]
    selections_keys = [[k for k in sel if k in usable] for sel in group.selections()]
    claims = [(a, b) for a, b in group.claims() if a in usable and b in usable]
    plans = [stats.plan_epoch(state.rounds, sel, (), launch_s=state.launch_s, round_s=state.round_s,
                              **options) for sel in selections_keys if len(sel) >= 2]
    claim_plan = stats.plan_epoch(state.rounds, [], claims, launch_s=state.launch_s,
                                  round_s=state.round_s, epochs_left=epochs_left(group, state, usable),
                                  family_size=family, **options)
    active = set(claim_plan.active)
    pending = list(claim_plan.pending)
    outlooks = list(claim_plan.outlooks)
    dropped: dict[str, str] = {k: "launch failed "
                               f"{state.failures_in_a_row[k]} times in a row" for k in failing}
    for plan in plans:
        active |= set(plan.active)
        pending += list(plan.pending)
        outlooks += list(plan.outlooks)
    involved = {k for sel in selections_keys if len(sel) >= 2 for k in sel} | {k for pair in claims for k in pair}
    # a scenario compared with nothing still needs its own CI (or its budget of launches)
    for key in usable:
        if key in involved:
            continue
        own = [r for r in state.rounds if r.scenario == key]
        ci = stats.scenario_ci(own)
        if not ci.converged(rule.target_rel_ci, rule.min_launches):
            active.add(key)
    # The recommendation first: once the group has run min_launches epochs, an open
    # selection gets the epochs to itself (its best and uncleared rivals), and the claims'
    # other scenarios wait for it. Measuring them alongside would cost the same time later, but
    # when the budget binds, the epochs it buys go to the answer the sweep exists for; the
    # claims get what is left once it is decided.
    if state.epochs_done >= rule.min_launches and any(not p.selection.decided for p in plans):
        selecting = {k for p in plans if not p.selection.decided for k in p.active}
        for key in sorted(active - selecting):
            dropped[key] = WAITS_FOR_SELECTION
        active &= selecting
    for plan in plans:
        for s, why in plan.dropped:
            if s not in active:
                dropped.setdefault(s, why)
    for key in usable:
        if key not in active:
            dropped.setdefault(key, "every decision that needs it is made")
    blocks = rule.blocks or max([p.blocks_per_launch for p in plans] + [claim_plan.blocks_per_launch])
    out = GroupPlan(sorted(active), blocks, list(dict.fromkeys(pending)), outlooks,
                    [p.selection for p in plans], list(claim_plan.claims), dropped)
    if not active and not out.pending:
        out.stop, out.detail = "decided", "every needed decision is made"
    elif state.epochs_done >= rule.max_launches:
        out.stop, out.detail = "max_launches", f"{state.epochs_done} launch epochs (max_launches)"
    elif state.spent_s >= rule.max_time_s:
        out.stop, out.detail = "time_budget", f"{state.spent_s:.0f} s of {rule.max_time_s:g} s used"
    elif budget_left_s is not None and budget_left_s <= 0:
        out.stop, out.detail = "budget", "the sweep's --budget is spent"
    elif not active:
        out.stop, out.detail = "out_of_reach", (f"{len(out.pending)} claim(s) cannot be decided within "
                                                "the group's max_launches and max_time_s")
    return out


def undecided_text(plan: GroupPlan, labels: dict[str, str]) -> list[str]:
    """One line per pending pair: what it is, and about how much more would decide it."""
    out = []
    by_pair = {(o.a, o.b): o for o in plan.outlooks}
    for a, b in plan.pending:
        o = by_pair.get((a, b)) or by_pair.get((b, a))
        more = ""
        if o is not None and o.more_epochs is not None:
            more = (f"; about {o.more_epochs} more launch epoch(s) ({o.more_blocks} blocks) would "
                    f"decide it ({o.basis})")
        elif o is not None:
            more = f"; {o.basis}"
        out.append(f"{labels.get(a, a)} vs {labels.get(b, b)}: undecided{more}")
    return out


# -- the sweep ----------------------------------------------------------------------------------
@dataclass
class _Flight:
    group: Group
    epoch: int
    host_class: str


def decision_key(p: PlannedScenario) -> str:
    """Where ``run_sweep`` files a scenario's stop decision: its key (and host class)."""
    return p.key if p.host_class is None else f"{p.key}@{p.host_class}"


def run_sweep(planned: Sequence[PlannedScenario], store: Store, *, study: str, seed: int = 0,
              budget_s: float | None = None, allow_concurrent: bool = False,
              sink: Callable[[RunRecord], None] | None = None,
              on_run: Callable[[PlannedScenario, RunRecord], None] | None = None,
              on_epoch: Callable[[Group, GroupPlan, int], None] | None = None,
              on_stop: Callable[[PlannedScenario, StopDecision], None] | None = None,
              on_note: Callable[[str], None] | None = None,
              executor: "Executor | None" = None) -> dict[str, StopDecision]:
    """Run a study's groups until each one stops (see the module docstring), each epoch as
    one block set on ``executor`` (default: this host, ``LocalExecutor``), as many in flight
    as ``executor.capacity`` says (one epoch per group at a time).

    Resumable: everything is derived from the runs already stored for ``study``. Returns
    each scenario's stop decision by ``decision_key``. ``sink`` stores a record (default
    ``store.add``); ``on_note`` hears of lost block sets and hosts."""
    from .executors import LocalExecutor

    decisions: dict[str, StopDecision] = {}
    for p in planned:
        if p.skip_reason is not None:
            decisions[decision_key(p)] = StopDecision("skipped", p.skip_reason, 0)
            store.record_stop(study, p.scenario, "skipped", p.skip_reason, 0)
            if on_stop:
                on_stop(p, decisions[decision_key(p)])
    executor = executor or LocalExecutor()
    classes = [c.fingerprint for c in executor.host_classes()]
    only_class = classes[0] if len(classes) == 1 else None
    by_key = {(p.key, p.host_class or only_class): p for p in planned}
    store_sink = sink or store.add
    note = on_note or (lambda line: None)
    began = time.monotonic()
    duplicates = [0]

    def deliver(record: RunRecord) -> None:
        if record.run_key is not None and store.has_key(record.run_key):
            duplicates[0] += 1  # measured twice (a task run again by the cluster): kept once
            return
        store_sink(record)
        if on_run:
            cls = record.host.get("fingerprint")
            p = by_key.get((record.scenario.key, cls)) or by_key.get((record.scenario.key, only_class))
            if p is None:
                p = next(q for q in planned if q.key == record.scenario.key)
            on_run(p, record)

    open_groups = make_groups(planned)
    family = study_family(open_groups, store, study)
    flights: dict[int, _Flight] = {}
    lost_in_a_row: dict[int, int] = {}
    last_loss: dict[int, str] = {}

    def stop(group: Group, reason: str, detail: str) -> None:
        state = group_state(group, class_rows(store.study_runs(study), group.host_class or only_class))
        plan = GroupPlan([], 0, [], [], [], [], {}, stop=reason, detail=detail)
        _record_stops(group, plan, state, store, study, decisions, on_stop)

    try:
        while open_groups or flights:
            busy: dict[str, int] = {}
            for f in flights.values():
                busy[f.host_class] = busy.get(f.host_class, 0) + 1
            flying = {id(f.group) for f in flights.values()}
            rows: list[dict[str, Any]] | None = None  # the store changes only in executor.wait
            for group in list(open_groups):
                if id(group) in flying:
                    continue
                cls = group.host_class or only_class
                if cls is None:
                    raise ValueError("a fleet of several host classes needs every scenario planned "
                                     "for one (PlannedScenario.host_class)")
                capacity = executor.capacity(cls)
                if capacity == 0:
                    open_groups.remove(group)
                    why = last_loss.get(id(group), "")
                    stop(group, "no_host", f"no host of class {cls} is left in the fleet"
                         + (f" (last: {why})" if why else ""))
                    continue
                if busy.get(cls, 0) >= capacity:
                    continue
                if rows is None:
                    rows = store.study_runs(study)
                state = group_state(group, class_rows(rows, cls))
                left = None if budget_s is None else budget_s - (time.monotonic() - began)
                plan = plan_group(group, state, family=family, budget_left_s=left)
                if plan.stop is None and lost_in_a_row.get(id(group), 0) >= MAX_LOST_IN_A_ROW:
                    plan.stop, plan.detail = "failing", (f"{lost_in_a_row[id(group)]} block sets in a row "
                                                         f"were lost or could not start (last: "
                                                         f"{last_loss.get(id(group), '?')})")
                if plan.stop is not None:
                    open_groups.remove(group)
                    _record_stops(group, plan, state, store, study, decisions, on_stop)
                    continue
                # epoch numbers are unique per scenario across host classes and block sets in
                # flight, so that run keys never collide
                members = {m.key for m in group.members}
                taken = [0] + [int(r["repetition"]) + 1 for r in rows
                               if r["scenario_key"] in members and r.get("repetition") is not None]
                taken += [f.epoch + 1 for f in flights.values() if {m.key for m in f.group.members} & members]
                epoch = max(taken)
                if on_epoch:
                    on_epoch(group, plan, state.epochs_done)
                contenders = tuple(next(m for m in group.members if m.key == k).contender() for k in plan.active)
                block_set = BlockSet(contenders, blocks=plan.blocks, warmup_rounds=group.rule.warmup_rounds,
                                     epoch=epoch, study=study, seed=seed, allow_concurrent=allow_concurrent)
                ticket = executor.submit(block_set, cls, deliver)
                flights[ticket] = _Flight(group, epoch, cls)
                busy[cls] = busy.get(cls, 0) + 1
                flying.add(id(group))
            if not flights:
                continue
            for done in executor.wait():
                flight = flights.pop(done.ticket, None)
                if flight is None:
                    continue
                gid = id(flight.group)
                if done.outcome == "done":
                    lost_in_a_row[gid] = 0
                else:
                    lost_in_a_row[gid] = lost_in_a_row.get(gid, 0) + 1
                    last_loss[gid] = done.detail
                    note(f"epoch {flight.epoch} of {flight.group.label} {done.outcome} on host "
                         f"{done.host or '?'}: {done.detail}; it is planned again")
    except BaseException:
        executor.close()
        raise
    if duplicates[0]:
        note(f"{duplicates[0]} run(s) that arrived twice were stored once")
    return decisions


def _labelled(text: str, group: Group) -> str:
    """``text`` with every member's scenario key (the JSON the racing plan names scenarios
    by, as in "slower against {...}") replaced by the member's label."""
    for m in group.members:
        if m.key in text:
            text = text.replace(m.key, m.scenario.label)
    return text


def _record_stops(group: Group, plan: GroupPlan, state: GroupState, store: Store, study: str,
                  decisions: dict[str, StopDecision],
                  on_stop: Callable[[PlannedScenario, StopDecision], None] | None) -> None:
    for m in group.members:
        own = [r for r in state.rounds if r.scenario == m.key]
        ci = stats.scenario_ci(own)
        mean = ci.mean_ms if ci.rounds else None
        rel = ci.relative if ci.launches >= 2 else None
        why = _labelled(plan.dropped.get(m.key, ""), group)
        if why.startswith("launch failed"):
            last = state.last_error.get(m.key)
            reason, detail = "failing", why + (f", last: {last}" if last else "")
        elif plan.stop == "decided":
            reason, detail = "decided", why or plan.detail
        elif plan.stop == "out_of_reach":
            reason, detail = "out_of_reach", plan.detail
        elif why and m.key not in plan.active and not why.startswith(NOT_DONE_WITH):
            reason, detail = "dropped", why
        else:
            reason, detail = plan.stop or "decided", plan.detail
        detail = f"{detail}; {state.measured.get(m.key, 0)} rounds in {ci.launches} launches" + (
            f" on hosts {group.host_class}" if group.host_class else "")
        decision = StopDecision(reason, detail, state.measured.get(m.key, 0), mean, rel)
        decisions[decision_key(m)] = decision
        store.record_stop(study, m.scenario, reason, detail, decision.runs)
        if on_stop:
            on_stop(m, decision)
