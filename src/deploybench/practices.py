"""The paper's seven best practices (Section VI), each checked against this host's runs.

Every practice has an explicit test (``BestPractice.test`` says it in words and the code
below does exactly that); the verdict is ``holds``, ``does not hold`` or
``not enough data (needs: ...)``, always with the numbers behind it.

DESIGN: a practice is a claim about *comparisons*, so each test is a set of paired
comparisons between cells that differ in one thing (see findings.Cell), each counted as
supporting or opposing the claim with Welch's test at 95%. "Not significant" is an answer
too: where a practice says "X helps", a non-significant difference opposes it; where it says
"X costs nothing", it supports it. Only native cells (no TCG-emulated VM) and, unless a
test is about host load, cells with an idle or unrecorded host take part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .findings import Cell, build_cells, compare_cells, condition_free_key, scale_ups
from .scenario import CpuMode, PlatformName, Processor
from .stats import ratio_of_ratios

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

    @property
    def label(self) -> str:
        if self.verdict == NOT_ENOUGH:
            return f"{NOT_ENOUGH} (needs: {self.needs})"
        return self.verdict

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "claim": self.claim, "test": self.test,
                "verdict": self.verdict, "label": self.label, "needs": self.needs,
                "evidence": self.evidence, "supporting": self.supporting, "opposing": self.opposing}


def _decide(bp: BestPractice, support: int, oppose: int, needs: str,
            rule: str = "majority") -> BestPractice:
    """``majority``: more comparisons for than against (a tie is not a majority).
    ``any``: for practices that warn about a pitfall ("inference-only can mislead"), one
    significant case on this host is enough for the warning to hold."""
    bp.supporting, bp.opposing = support, oppose
    if support + oppose == 0:
        bp.verdict, bp.needs = NOT_ENOUGH, needs
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
        if not host_load and c.host_load not in ("", "idle"):
            continue
        out.append(c)
    return out


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


# -- 1 -------------------------------------------------------------------------------------
def bp1_phases(cells: Sequence[Cell]) -> BestPractice:
    bp = BestPractice(
        1, "Scrutinize the resource use of all three phases (pre-processing, inference, "
           "post-processing) before choosing an execution platform.",
        f"Per app, the pre+post-processing share of E2E over its CPU scenarios: holds when it "
        f"reaches {_pct(PHASE_SHARE_MATTERS)} somewhere, or moves by {_pct(PHASE_SHARE_MATTERS)} points "
        f"across scenarios (looking at inference alone would misjudge); does not hold when inference "
        f"is over {_pct(1 - PHASE_SHARE_MATTERS)} of E2E everywhere with stable shares.")
    support = oppose = 0
    by_app: dict[str, list[Cell]] = {}
    for c in _usable(cells):
        by_app.setdefault(c.workload_label, []).append(c)
    for label, group in sorted(by_app.items()):
        shares = [(1 - c.phase_shares()["infer"], c) for c in group if not math.isnan(c.phase_shares()["infer"])]
        if not shares:
            continue
        lo, hi = min(shares, key=lambda s: s[0]), max(shares, key=lambda s: s[0])
        matters = hi[0] >= PHASE_SHARE_MATTERS or hi[0] - lo[0] >= PHASE_SHARE_MATTERS
        support += matters
        oppose += not matters
        bp.evidence.append(f"{label}: pre+post = {_pct(lo[0])} of E2E ({lo[1].name}) to {_pct(hi[0])} "
                           f"({hi[1].name}) -> {'the phases matter' if matters else 'inference dominates'}")
    return _decide(bp, support, oppose, "E2E runs (not --inference-only) of at least one app", rule="any")


# -- 2 -------------------------------------------------------------------------------------
def bp2_scale_up(cells: Sequence[Cell]) -> BestPractice:
    bp = BestPractice(
        2, "Investigate the impact of scale-up on E2E time to find the optimal number of cores "
           "(16 cores is a good point to start).",
        "Each scale-up series (one platform/mode/processor/workload, >= 2 core counts): it supports "
        "the practice when E2E stops improving significantly (Welch, 95%) before the series' largest "
        "core count (the knee), so the optimum has to be found; it opposes it when every step up "
        "is significantly faster. Holds when at least one series has such a knee.")
    support = oppose = 0
    for s in scale_ups(_usable(cells)):
        knee_early = not s.keeps_improving
        support += knee_early
        oppose += not knee_early
        steps = ", ".join(f"{a.scenario.cores}->{b.cell.scenario.cores}: {b.diff.relative * 100:+.1f}%"
                          f"{'' if b.diff.significant else ' (n.s.)'}" for a, b in zip(s.series, s.steps))
        bp.evidence.append(f"{s.describe()} [{steps}]")
    return _decide(bp, support, oppose, "runs of one platform and mode at >= 2 core counts", rule="any")


# -- 3 -------------------------------------------------------------------------------------
def bp3_spare_cores(cells: Sequence[Cell]) -> BestPractice:
    bp = BestPractice(
        3, "Do not scale up to all CPU cores of a host: a few unused cores mitigate the "
           "virtualization overhead.",
        "(a) N = all host cores against the largest N below it (host cores - 1 where measured), "
        "same platform/mode/processor/workload: supports when all cores are not significantly "
        "faster (the last cores buy nothing), opposes when they are significantly faster. "
        "(b) where runs record host_load, busy against idle for the same scenario: supports when "
        "the busy host is significantly slower, opposes when not.")
    support = oppose = 0
    usable = _usable(cells)
    index = {(condition_free_key(c.scenario), c.host, c.accel, c.host_load): c for c in usable}
    for c in usable:
        hc = c.host_cores
        if not hc or c.scenario.cores != hc or hc < 2:
            continue
        smaller = [o for o in usable if o.host == c.host and o.accel == c.accel and o.host_load == c.host_load
                   and o.scenario.with_(cores=hc).key == c.scenario.key and o.scenario.cores < hc]
        if not smaller:
            continue
        spare = max(smaller, key=lambda o: o.scenario.cores)
        diff, basis = compare_cells(c, spare)
        faster = diff.significant and diff.diff < 0
        slower = diff.significant and diff.diff > 0
        support += not faster
        oppose += faster
        outcome = ("all cores significantly faster" if faster else "all cores significantly slower"
                   if slower else "the last core(s) buy nothing significant")
        bp.evidence.append(f"{c.name} (all {hc} cores) vs {spare.name}: {diff.describe()} -> {outcome}"
                           f" [{c.workload_label}]")
    for c in _usable(cells, host_load=True):
        if c.host_load != "busy":
            continue
        key = condition_free_key(c.scenario)
        idle = index.get((key, c.host, c.accel, "idle")) or index.get((key, c.host, c.accel, ""))
        if idle is None:
            continue
        diff, _ = compare_cells(c, idle)
        slower = diff.significant and diff.diff > 0
        support += slower
        oppose += not slower
        bp.evidence.append(f"{c.name} busy vs idle host: {diff.describe()} [{c.workload_label}]")
    return _decide(bp, support, oppose,
                   "runs at all host cores and at fewer of the same platform/mode, or busy/idle host runs")


# -- 4 -------------------------------------------------------------------------------------
def bp4_storage(records: Sequence[Any]) -> BestPractice:
    """The sweep's ``storage`` condition: ``native`` (the data device as it is) against
    ``throttled`` (cgroup I/O limits emulating a slow HDD), same scenario otherwise. A
    ``storage`` label in the host metadata (e.g. hdd/ssd on a fleet) is used the same way."""
    bp = BestPractice(
        4, "High-performance storage (e.g. SSD) improves the usability of DL applications with "
           "many small input files.",
        "Runs of the same scenario on fast storage (storage=native, or host storage ssd/nvme/"
        "tmpfs) and on slow storage (storage=throttled, an emulated HDD, or host storage hdd): "
        "supports when the fast storage gives a significantly lower E2E, opposes when not. "
        "Holds when at least one app gains significantly: the practice is about apps with many "
        "small inputs, and an app that reads one file (NLP's SQuAD set) is expected not to care.")
    fast_names = ("native", "ssd", "nvme", "tmpfs", "ram")
    by_storage: dict[str, list[Any]] = {}
    for r in records:
        storage = (r.host or {}).get("storage") or getattr(getattr(r.scenario, "storage", None), "value", None)
        if storage:
            by_storage.setdefault(str(storage).lower(), []).append(r)
    support = oppose = 0
    fast = [k for k in by_storage if k in fast_names]
    slow = [k for k in by_storage if k not in fast_names]

    def same_deployment(cell: Cell) -> tuple[str, str]:
        scenario = cell.scenario
        if hasattr(scenario, "storage"):
            scenario = scenario.with_(storage=type(scenario.storage)("native"))
        return condition_free_key(scenario), cell.host

    if fast and slow:
        fast_cells = {same_deployment(c): c for k in fast for c in _usable(build_cells(by_storage[k]))}
        for k in slow:
            for c in _usable(build_cells(by_storage[k])):
                f = fast_cells.get(same_deployment(c))
                if f is None:
                    continue
                diff, _ = compare_cells(f, c)
                better = diff.significant and diff.diff < 0
                support += better
                oppose += not better
                bp.evidence.append(f"{c.name} {c.workload_label}: fast storage vs {k}: {diff.describe()}")
    return _decide(bp, support, oppose, rule="any", needs=
                   "the same scenarios run with storage = native and storage = throttled "
                   "(a study's [host] storage = ['native', 'throttled'] with page_cache = 'cold'), or on hosts recording different storage")


# -- 5 -------------------------------------------------------------------------------------
def bp5_e2e_not_inference(cells: Sequence[Cell]) -> BestPractice:
    bp = BestPractice(
        5, "When benchmarking to find the optimal deployment, measure the E2E inference time, "
           "not only the inference operation.",
        "For pairs of scenarios of one app measured both E2E and --inference-only: the speedup of "
        "one over the other by E2E against the same speedup by inference only (ratio of the two "
        "ratios, delta-method 95% CI), for pairs that differ in one setting (platform, cores, mode "
        "or processor). Supports when they differ significantly (E2E would rank or size the "
        "choice differently), opposes when they agree within the CI. Holds when at least one "
        "pair differs significantly: there an inference-only benchmark misleads.")
    e2e = {(c.scenario.key, c.host, c.accel): c for c in _usable(cells)}
    only = {(c.scenario.with_(inference_only=False).key, c.host, c.accel): c
            for c in _usable(cells, inference_only=True)}
    both = [(e2e[k], only[k]) for k in e2e if k in only]
    support = oppose = 0
    groups: dict[str, list[tuple[Cell, Cell]]] = {}
    for pair in both:
        groups.setdefault(pair[0].workload_label + pair[0].host, []).append(pair)
    for pairs in groups.values():
        pairs.sort(key=lambda p: p[0].name)
        for i, (a_e, a_i) in enumerate(pairs):
            for b_e, b_i in pairs[i + 1:]:
                if min(len(x.records) for x in (a_e, a_i, b_e, b_i)) < 2:
                    continue
                if _settings_differing(a_e, b_e) != 1:
                    continue
                rr = ratio_of_ratios(b_e.values("e2e")[0], a_e.values("e2e")[0],
                                     b_i.values("infer")[0], a_i.values("infer")[0])
                sp_e = a_e.summary.e2e_mean_ms / b_e.summary.e2e_mean_ms
                sp_i = a_i.summary.infer_ms / b_i.summary.infer_ms
                support += rr.significant
                oppose += not rr.significant
                bp.evidence.append(
                    f"{b_e.name} vs {a_e.name} ({a_e.app}): speedup {sp_e:.2f}x E2E vs {sp_i:.2f}x "
                    f"inference only; ratio {rr.value:.2f} (CI {rr.low:.2f}..{rr.high:.2f}, "
                    f"{'significant' if rr.significant else 'not significant'})")
    return _decide(bp, support, oppose,
                   "the same >= 2 scenarios run both E2E and with --inference-only, >= 2 runs each",
                   rule="any")


def _settings_differing(a: Cell, b: Cell) -> int:
    sa, sb = a.scenario, b.scenario
    return sum(getattr(sa, f) != getattr(sb, f) for f in ("platform", "cores", "cpu_mode", "processor"))


# -- 6 -------------------------------------------------------------------------------------
def bp6_gpu(cells: Sequence[Cell]) -> BestPractice:
    bp = BestPractice(
        6, "If pre- and post-processing dominate E2E time, a GPU is not necessarily helpful; "
           "scaling up the CPU may be the better trade-off.",
        f"GPU scenarios whose pre+post-processing take >= {_pct(PHASES_DOMINATE)} of their E2E, "
        "against the fastest CPU scenario of the same platform, mode and workload (any cores): "
        "supports when the GPU is not significantly faster E2E, opposes when it is.")
    usable = _usable(cells)
    gpus = [c for c in usable if c.scenario.processor is Processor.GPU]
    if not gpus:
        return _decide(bp, 0, 0, "GPU runs")
    support = oppose = 0
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
        diff, _ = compare_cells(g, best)
        gpu_wins = diff.significant and diff.diff < 0
        support += not gpu_wins
        oppose += gpu_wins
        bp.evidence.append(f"{g.name} {g.workload_label} (pre+post {_pct(share)}) vs best CPU {best.name}: "
                           f"{diff.describe()}")
    return _decide(bp, support, oppose, "GPU runs of an app whose pre/post-processing dominate E2E, "
                                        "with CPU runs of the same platform")


# -- 7 -------------------------------------------------------------------------------------
def bp7_containers_edge(cells: Sequence[Cell]) -> BestPractice:
    bp = BestPractice(
        7, "The container platform imposes the least overhead and suits the edge (where a "
           "container gets all the device's cores, CHR = 1).",
        "At CHR = 1 (all host cores), per mode (vanilla first: the edge has no pinning), native "
        "accelerators only: CN against each other virtualization platform (VM, VMCN, MVM) of the "
        "same workload: supports when CN is faster or not significantly slower, opposes when the "
        "other platform is significantly faster.")
    usable = [c for c in _usable(cells) if c.chr == 1.0 and c.scenario.processor is Processor.CPU]
    support = oppose = 0
    for mode in (CpuMode.VNL, CpuMode.PIN):
        cns = [c for c in usable if c.scenario.platform is PlatformName.CN and c.scenario.cpu_mode is mode]
        for cn in cns:
            bm = next((c for c in usable if c.scenario.key == cn.scenario.with_(platform=PlatformName.BM).key
                       and c.host == cn.host), None)
            if bm is not None:
                d, _ = compare_cells(cn, bm)
                bp.evidence.append(f"{cn.name} vs {bm.name}: {d.describe()} (overhead against BM)")
            for other in usable:
                if other.scenario.platform.value not in ("VM", "VMCN", "MVM") or other.host != cn.host:
                    continue
                if other.scenario.with_(platform=PlatformName.CN).key != cn.scenario.key:
                    continue
                d, _ = compare_cells(cn, other)
                other_wins = d.significant and d.diff > 0
                support += not other_wins
                oppose += other_wins
                bp.evidence.append(f"{cn.name} vs {other.display}: {d.describe()}")
    emulated = [c for c in cells if c.emulated and c.chr == 1.0]
    if emulated and not support + oppose:
        bp.evidence.append(f"{len(emulated)} TCG-emulated VM scenario(s) at CHR = 1 left out: not comparable")
    return _decide(bp, support, oppose,
                   "CN and VM/VMCN/MVM runs (KVM, not TCG) at all host cores (CHR = 1)")


def best_practices(cells: Sequence[Cell], records: Sequence[Any]) -> list[BestPractice]:
    """All seven, in the paper's order."""
    return [bp1_phases(cells), bp2_scale_up(cells), bp3_spare_cores(cells), bp4_storage(records),
            bp5_e2e_not_inference(cells), bp6_gpu(cells), bp7_containers_edge(cells)]
