"""The paper's seven best practices (Section VI), each checked against this host's runs.

Every practice has an explicit test (``BestPractice.test`` says it in words and the code
below does exactly that); the verdict is ``holds``, ``does not hold`` or
``not enough data (needs: ...)``, always with the numbers behind it.

DESIGN: a practice is a claim about *comparisons*, so each test is a set of paired
comparisons between cells that differ in one thing (see findings.Cell), made by the
report's ``Judge`` (so decided with the rest of the report's claims, Holm-corrected);
practice 1, about how much of E2E the phases take, makes one threshold claim per workload
over its cells' launches (stats.ThresholdClaim), and practice 5 a ratio of two paired
comparisons (stats.ratio_of_comparisons), both in the same family. Only
*decided* claims count: ``faster``/``slower`` beyond the margin, or ``equivalent``
within it (an equivalence is an answer: where a practice says "X helps", an equivalence
opposes it; where it says "X costs nothing", it supports it). Undecided comparisons are
listed with the evidence and counted apart, never for or against. A comparison whose host
condition left no trace (``condition_ineffective``) never feeds a verdict. Only native cells
(no TCG-emulated VM) and, unless a test is about host load, cells with an idle host take part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import stats
from .findings import Cell, Comparison, Judge, compare_cells, condition_free_key, scale_ups
from .scenario import CpuMode, PlatformName, Processor
from .warnings import WarningCode

FASTER, SLOWER, EQUIVALENT = stats.Verdict.FASTER, stats.Verdict.SLOWER, stats.Verdict.EQUIVALENT

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_ENOUGH = "not enough data"

VIRTUAL_PLATFORMS = ("CN", "VM", "VMCN", "MVM")
PHASE_SHARE_MATTERS = 0.10  # pre+post share of E2E from which the phases matter (BP1)
PHASES_DOMINATE = 0.50  # pre+post share of E2E from which they dominate (BP6)


@dataclass
class BestPractice:
    number: int
    claim: str  # the paper's words, shortened
    test: str  # the test applied here, in words
    verdict: str = NOT_ENOUGH
    needs: str | None = None  # what data would allow a verdict
    evidence: list[str] = field(default_factory=list)
    supporting: int = 0
    opposing: int = 0
    undecided: int = 0  # comparisons not decided yet: counted neither for nor against

    @property
    def label(self) -> str:
        if self.verdict == NOT_ENOUGH:
            return f"{NOT_ENOUGH} (needs: {self.needs})"
        return self.verdict

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "claim": self.claim, "test": self.test,
                "verdict": self.verdict, "label": self.label, "needs": self.needs,
                "evidence": self.evidence, "supporting": self.supporting, "opposing": self.opposing,
                "undecided": self.undecided}


def _decide(bp: BestPractice, support: int, oppose: int, needs: str,
            rule: str = "majority", undecided: int = 0) -> BestPractice:
    """``majority``: more decided comparisons for than against (a tie is not a majority).
    ``any``: for practices that warn about a pitfall ("inference-only can mislead"), one
    decided case on this host is enough for the warning to hold. Undecided comparisons
    never count; with none decided the verdict is ``not enough data``."""
    bp.supporting, bp.opposing, bp.undecided = support, oppose, undecided
    if support + oppose == 0:
        bp.verdict = NOT_ENOUGH
        bp.needs = (f"{undecided} comparison(s) still undecided: more launches of the same "
                    f"scenarios ({needs})" if undecided else needs)
    elif support > oppose or (rule == "any" and support > 0):
        bp.verdict = HOLDS
    else:
        bp.verdict = DOES_NOT_HOLD
    return bp  # the counts are in bp.supporting / bp.opposing; the report prints them


def _usable(cells: Sequence[Cell], *, inference_only: bool | None = False,
            host_load: bool = False) -> list[Cell]:
    out = []
    for c in cells:
        if c.emulated:
            continue
        if inference_only is not None and c.scenario.inference_only != inference_only:
            continue
        if not host_load and c.host_load != "idle":
            continue
        out.append(c)
    return out


def _ineffective(cell: Cell) -> bool:
    """The cell's host condition left no trace in some of its rounds: it must not feed a verdict."""
    return any(WarningCode.CONDITION_INEFFECTIVE.value in r.warning_codes for r in cell.records)


class _Tally:
    """Decided comparisons counted for or against a practice; undecided ones apart."""

    def __init__(self) -> None:
        self.support = self.oppose = self.undecided = 0

    def add(self, comp: Comparison, supports: bool | None) -> str:
        """``supports``: None when ``comp`` is undecided (or must not count)."""
        if not comp.decided or supports is None:
            self.undecided += 1
            return "undecided: not counted"
        if supports:
            self.support += 1
            return "for"
        self.oppose += 1
        return "against"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


# -- 1 -------------------------------------------------------------------------------------
def bp1_phases(cells: Sequence[Cell], judge: Judge) -> BestPractice:
    bp = BestPractice(
        1, "Scrutinize the resource use of all three phases (pre-processing, inference, "
           "post-processing) before choosing an execution platform.",
        f"Per app and workload, the pre+post-processing share of E2E in each of its CPU scenarios, "
        f"over launches (>= 3 each): supports when some scenario's share is decided to reach "
        f"{_pct(PHASE_SHARE_MATTERS)} (one-sided, Bonferroni over the workload's scenarios: looking "
        f"at inference alone would misjudge it), opposes when every scenario's share is decided "
        f"below it (inference is over {_pct(1 - PHASE_SHARE_MATTERS)} of E2E everywhere); one claim "
        f"per workload, decided with the report's others (Holm); otherwise undecided, not counted.")
    tally = _Tally()
    by_workload: dict[tuple[str, str], list[Cell]] = {}
    for c in _usable(cells):
        if c.phase_share_values():
            by_workload.setdefault((c.workload, c.host), []).append(c)
    for _, group in sorted(by_workload.items()):
        group.sort(key=lambda c: c.display)
        label = group[0].workload_label
        claim = judge.phases_reach(label, group, PHASE_SHARE_MATTERS)
        lo = min(claim.levels, key=lambda lv: lv.mean)
        hi = max(claim.levels, key=lambda lv: lv.mean)
        if not claim.decided:
            tally.undecided += 1
            said = "undecided: not counted"
        elif claim.reaches:
            tally.support += 1
            said = "the phases matter: for"
        else:
            tally.oppose += 1
            said = "inference dominates: against"
        p = f"p{stats.format_p(claim.adjusted_p_value)}" if math.isfinite(claim.adjusted_p_value) else "p=?"
        bp.evidence.append(f"{label}: pre+post = {_pct(lo.mean)} of E2E ({lo.name}) to {_pct(hi.mean)} "
                           f"({hi.name}), over {min(lv.launches for lv in claim.levels)}+ launches "
                           f"({p}) -> {said}")
    return _decide(bp, tally.support, tally.oppose, "E2E runs (not --inference-only) of at least one app",
                   rule="any", undecided=tally.undecided)


# -- 2 -------------------------------------------------------------------------------------
def bp2_scale_up(cells: Sequence[Cell], judge: Judge) -> BestPractice:
    bp = BestPractice(
        2, "Investigate the impact of scale-up on E2E time to find the optimal number of cores "
           "(16 cores is a good point to start).",
        "Each scale-up series (one platform/mode/processor/workload, >= 2 core counts): it supports "
        "the practice when a step up before the series' largest core count is decided not faster "
        "(equivalent within the margin, or slower): the knee, so the optimum has to be found; it "
        "opposes it when every step up is decided faster. Series with an undecided step are listed, "
        "not counted. Holds when at least one series has such a knee.")
    tally = _Tally()
    for s in scale_ups(_usable(cells), judge):
        supports = None if not s.decided else not s.keeps_improving
        if supports is None:
            tally.undecided += 1
        elif supports:
            tally.support += 1
        else:
            tally.oppose += 1
        steps = ", ".join(f"{a.scenario.cores}->{b.cell.scenario.cores}: {b.ratio:.3f}x {b.verdict.value}"
                          for a, b in zip(s.series, s.steps))
        bp.evidence.append(f"{s.describe()} [{steps}]")
    return _decide(bp, tally.support, tally.oppose, "runs of one platform and mode at >= 2 core counts",
                   rule="any", undecided=tally.undecided)


# -- 3 -------------------------------------------------------------------------------------
def bp3_spare_cores(cells: Sequence[Cell], judge: Judge) -> BestPractice:
    bp = BestPractice(
        3, "Do not scale up to all CPU cores of a host: a few unused cores mitigate the "
           "virtualization overhead.",
        "(a) N = all host cores against the largest N below it, same platform/mode/processor/"
        "workload: supports when all cores are decided not faster (equivalent or slower: the last "
        "cores buy nothing), opposes when they are decided faster. (b) busy against idle host for "
        "the same scenario: supports when the busy host is decided slower, opposes when decided "
        "equivalent or faster. Undecided comparisons are listed, not counted.")
    tally = _Tally()
    usable = _usable(cells)
    index = {(condition_free_key(c.scenario), c.host, c.accel, c.summary.data_set): c for c in usable}
    for c in usable:
        hc = c.host_cores
        if not hc or c.scenario.cores != hc or hc < 2:
            continue
        smaller = [o for o in usable if o.host == c.host and o.accel == c.accel
                   and o.summary.data_set == c.summary.data_set
                   and o.scenario.with_(cores=hc).key == c.scenario.key and o.scenario.cores < hc]
        if not smaller:
            continue
        spare = max(smaller, key=lambda o: o.scenario.cores)
        comp = compare_cells(judge, c, spare)
        said = tally.add(comp, comp.verdict is not FASTER)
        bp.evidence.append(f"{c.name} (all {hc} cores) vs {spare.name}: {comp.text} -> {said} "
                           f"[{c.workload_label}]")
    for c in _usable(cells, host_load=True):
        if c.host_load != "busy":
            continue
        idle = index.get((condition_free_key(c.scenario), c.host, c.accel, c.summary.data_set))
        if idle is None:
            continue
        comp = compare_cells(judge, c, idle)
        said = tally.add(comp, comp.verdict is SLOWER)
        bp.evidence.append(f"{c.name} busy vs idle host: {comp.text} -> {said} [{c.workload_label}]")
    return _decide(bp, tally.support, tally.oppose,
                   "runs at all host cores and at fewer of the same platform/mode, or busy/idle host runs",
                   undecided=tally.undecided)


# -- 4 -------------------------------------------------------------------------------------
def bp4_storage(cells: Sequence[Cell], judge: Judge) -> BestPractice:
    """The sweep's ``storage`` condition: ``native`` (the data device as it is) against
    ``throttled`` (cgroup I/O limits emulating a slow disk), same scenario otherwise, measured
    in the same blocks. A condition that left no trace in the runs (``condition_ineffective``:
    the timed requests read nothing from the disk, or waited on nothing) never counts."""
    bp = BestPractice(
        4, "High-performance storage (e.g. SSD) improves the usability of DL applications with "
           "many small input files.",
        "Runs of the same scenario on the native disk (storage=native) and on a throttled one "
        "(storage=throttled), measured together: supports when the native disk gives a decided "
        "faster E2E, opposes when decided equivalent or slower. Rounds where the throttle left no "
        "trace (condition_ineffective) make the comparison not count. Holds when at least one app "
        "gains: the practice is about apps with many small inputs, and an app that reads one "
        "file (NLP's SQuAD set) is expected not to care.")
    from .scenario import Storage

    tally = _Tally()
    usable = _usable(cells)
    index = {(c.scenario.with_(storage=Storage.NATIVE).key, c.host, c.accel, c.summary.data_set): c
             for c in usable if c.scenario.storage is Storage.NATIVE}
    for slow in usable:
        if slow.scenario.storage is Storage.NATIVE:
            continue
        fast = index.get((slow.scenario.with_(storage=Storage.NATIVE).key, slow.host, slow.accel,
                          slow.summary.data_set))
        if fast is None:
            continue
        comp = compare_cells(judge, fast, slow)
        if _ineffective(slow):
            tally.undecided += 1
            bp.evidence.append(f"{slow.name} {slow.workload_label}: the throttle left no trace in its "
                               "runs (condition_ineffective): not counted")
            continue
        said = tally.add(comp, comp.verdict is FASTER)
        bp.evidence.append(f"{slow.name} {slow.workload_label}: native vs throttled storage: {comp.text} -> {said}")
    return _decide(bp, tally.support, tally.oppose, rule="any", undecided=tally.undecided, needs=
                   "the same scenarios run with storage = native and storage = throttled "
                   "(a study's [host] storage = ['native', 'throttled'] with page_cache = 'cold')")


# -- 5 -------------------------------------------------------------------------------------
def bp5_e2e_not_inference(cells: Sequence[Cell], judge: Judge) -> BestPractice:
    bp = BestPractice(
        5, "When benchmarking to find the optimal deployment, measure the E2E inference time, "
           "not only the inference operation.",
        "For pairs of scenarios of one app measured both E2E and --inference-only (each side with "
        ">= 3 launches), that differ in one setting (platform, cores, mode or processor): their "
        "ratio by E2E against their ratio by inference only, each a paired comparison over launch "
        "pairs, the ratio of the two decided like any claim of the report (Holm). Supports when "
        "the two ratios are decided to differ by more than the margin (E2E would rank or size the "
        "choice differently), opposes when decided equivalent within it (they agree); otherwise "
        "undecided, not counted. Holds when at least one pair differs.")
    e2e = {(c.scenario.key, c.host, c.accel): c for c in _usable(cells)}
    only = {(c.scenario.with_(inference_only=False).key, c.host, c.accel): c
            for c in _usable(cells, inference_only=True)}
    both = [(e2e[k], only[k]) for k in e2e if k in only]
    tally = _Tally()
    groups: dict[str, list[tuple[Cell, Cell]]] = {}
    for pair in both:
        groups.setdefault(pair[0].workload_label + pair[0].host, []).append(pair)
    for pairs in groups.values():
        pairs.sort(key=lambda p: p[0].name)
        for i, (a_e, a_i) in enumerate(pairs):
            for b_e, b_i in pairs[i + 1:]:
                if min(x.summary.launches for x in (a_e, a_i, b_e, b_i)) < judge.min_launches:
                    continue
                if _settings_differing(a_e, b_e) != 1:
                    continue
                comp = judge.compare_speedups(b_e, a_e, b_i, a_i)
                if comp.verdict in (FASTER, SLOWER):
                    tally.support += 1
                    said = "the two ratios differ: for"
                elif comp.verdict is EQUIVALENT:
                    tally.oppose += 1
                    said = "they agree: against"
                else:
                    tally.undecided += 1
                    said = "undecided: not counted"
                sp_e = a_e.summary.e2e_mean_ms / b_e.summary.e2e_mean_ms
                sp_i = a_i.summary.infer_ms / b_i.summary.infer_ms
                bp.evidence.append(
                    f"{b_e.name} vs {a_e.name} ({a_e.app}): speedup {sp_e:.2f}x E2E vs {sp_i:.2f}x "
                    f"inference only (means); E2E ratio / inference-only ratio "
                    f"{comp.describe_result()} -> {said}")
    return _decide(bp, tally.support, tally.oppose,
                   "the same >= 2 scenarios run both E2E and with --inference-only, >= 3 launches each",
                   rule="any", undecided=tally.undecided)


def _settings_differing(a: Cell, b: Cell) -> int:
    sa, sb = a.scenario, b.scenario
    return sum(getattr(sa, f) != getattr(sb, f) for f in ("platform", "cores", "cpu_mode", "processor"))


# -- 6 -------------------------------------------------------------------------------------
def bp6_gpu(cells: Sequence[Cell], judge: Judge) -> BestPractice:
    bp = BestPractice(
        6, "If pre- and post-processing dominate E2E time, a GPU is not necessarily helpful; "
           "scaling up the CPU may be the better trade-off.",
        f"GPU scenarios whose pre+post-processing take >= {_pct(PHASES_DOMINATE)} of their E2E, "
        "against the fastest CPU scenario of the same platform, mode and workload (any cores): "
        "supports when the GPU is decided not faster (equivalent or slower), opposes when decided faster.")
    usable = _usable(cells)
    gpus = [c for c in usable if c.scenario.processor is Processor.GPU]
    if not gpus:
        return _decide(bp, 0, 0, "GPU runs")
    tally = _Tally()
    for g in gpus:
        share = 1 - g.phase_shares()["infer"]
        cpus = [c for c in usable if c.scenario.processor is Processor.CPU and c.host == g.host
                and c.scenario.with_(cores=g.scenario.cores, processor=Processor.GPU).key == g.scenario.key]
        if not cpus:
            continue
        best = min(cpus, key=lambda c: c.summary.e2e_mean_ms)
        if share < PHASES_DOMINATE:
            bp.evidence.append(f"{g.name} {g.workload_label}: pre+post only {_pct(share)} of E2E (not dominant)")
            continue
        comp = compare_cells(judge, g, best)
        said = tally.add(comp, comp.verdict is not FASTER)
        bp.evidence.append(f"{g.name} {g.workload_label} (pre+post {_pct(share)}) vs best CPU {best.name}: "
                           f"{comp.text} -> {said}")
    return _decide(bp, tally.support, tally.oppose, "GPU runs of an app whose pre/post-processing "
                                                     "dominate E2E, with CPU runs of the same platform",
                   undecided=tally.undecided)


# -- 7 -------------------------------------------------------------------------------------
def bp7_containers_edge(cells: Sequence[Cell], judge: Judge) -> BestPractice:
    bp = BestPractice(
        7, "The container platform imposes the least overhead and suits the edge (where a "
           "container gets all the device's cores, CHR = 1).",
        "At CHR = 1 (all host cores), per mode (vanilla first: the edge has no pinning), native "
        "accelerators only: CN against each other virtualization platform (VM, VMCN, MVM) of the "
        "same workload: supports when CN is decided faster or equivalent, opposes when the other "
        "platform is decided faster.")
    usable = [c for c in _usable(cells) if c.chr == 1.0 and c.scenario.processor is Processor.CPU]
    tally = _Tally()
    for mode in (CpuMode.VNL, CpuMode.PIN):
        cns = [c for c in usable if c.scenario.platform is PlatformName.CN and c.scenario.cpu_mode is mode]
        for cn in cns:
            bm = next((c for c in usable if c.scenario.key == cn.scenario.with_(platform=PlatformName.BM).key
                       and c.host == cn.host), None)
            if bm is not None:
                bp.evidence.append(f"{cn.name} vs {bm.name}: {compare_cells(judge, cn, bm).text} (overhead against BM)")
            for other in usable:
                if other.scenario.platform.value not in ("VM", "VMCN", "MVM") or other.host != cn.host:
                    continue
                if other.scenario.with_(platform=PlatformName.CN).key != cn.scenario.key:
                    continue
                comp = compare_cells(judge, cn, other)
                said = tally.add(comp, comp.verdict is not SLOWER)
                bp.evidence.append(f"{cn.name} vs {other.display}: {comp.text} -> {said}")
    emulated = [c for c in cells if c.emulated and c.chr == 1.0]
    if emulated and not tally.support + tally.oppose:
        bp.evidence.append(f"{len(emulated)} TCG-emulated VM scenario(s) at CHR = 1 left out: not comparable")
    return _decide(bp, tally.support, tally.oppose,
                   "CN and VM/VMCN/MVM runs (KVM, not TCG) at all host cores (CHR = 1)",
                   undecided=tally.undecided)


def best_practices(cells: Sequence[Cell], judge: Judge) -> list[BestPractice]:
    """All seven, in the paper's order (their comparisons through ``judge``)."""
    return [bp1_phases(cells, judge), bp2_scale_up(cells, judge), bp3_spare_cores(cells, judge),
            bp4_storage(cells, judge), bp5_e2e_not_inference(cells, judge),
            bp6_gpu(cells, judge), bp7_containers_edge(cells, judge)]
