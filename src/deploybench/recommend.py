"""Recommendations under a user's constraints, and the comparison of two scenarios.

DESIGN: the question "which deployment gives my app the lowest mean E2E time?" is answered
as ranking and selection with an indifference zone (``stats.select_best``): "pick X: every
other scenario is slower than X, or within the margin of X". It is *decided* when every
rival is cleared; the procedure then guarantees that X is within the margin of the truly
fastest scenario with probability >= 1 - alpha (Bonferroni over the rivals), however X was
picked. Constraints filter first (cores, platforms, a latency SLO on the p90 or p99 per
request, the queue included under the Server scenario). Inference-only runs, TCG-emulated
guests and runs on a busy host never compete: they do not measure what a deployment sees.

A rival decided ``equivalent`` to X is as good a choice within the margin, and then the
cheaper deployment wins the tie (``footprint.tie_break``): fewer cores, then less isolation
(BM, CN, MVM, VM, VMCN), then the smaller measured footprint, where a measured difference
counts only beyond launch-to-launch noise. Of the options that cost the same, the fastest
(X, when it is one of them) stays. The report says which it recommends and why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import stats
from .findings import Cell, Comparison, Judge, verdict_text
from .footprint import scenario_cost, tie_break
from .scenario import PlatformName, Scenario, ScenarioError

@dataclass(frozen=True)
class Constraints:
    max_cores: int | None = None
    latency_slo_ms: float | None = None
    slo_percentile: int = 90
    platforms: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.slo_percentile not in (90, 99):
            raise ScenarioError(f"--slo-percentile must be 90 or 99, got {self.slo_percentile}")
        if self.max_cores is not None and self.max_cores < 1:
            raise ScenarioError(f"--max-cores must be >= 1, got {self.max_cores}")
        if self.latency_slo_ms is not None and not self.latency_slo_ms > 0:
            raise ScenarioError(f"--latency-slo-ms must be > 0, got {self.latency_slo_ms}")

    @classmethod
    def parse_platforms(cls, text: str | None) -> tuple[str, ...] | None:
        if not text:
            return None
        from .scenario import _enum_value

        return tuple(_enum_value(PlatformName, p.strip(), "platform").value
                     for p in text.split(",") if p.strip())

    def describe(self) -> str:
        parts = []
        if self.max_cores is not None:
            parts.append(f"at most {self.max_cores} cores")
        if self.latency_slo_ms is not None:
            parts.append(f"p{self.slo_percentile} <= {self.latency_slo_ms:g} ms")
        if self.platforms:
            parts.append("platforms " + ",".join(self.platforms))
        return ", ".join(parts) if parts else "no constraints"

    def rejects(self, cell: Cell) -> str | None:
        s = cell.scenario
        if self.max_cores is not None and s.cores > self.max_cores:
            return f"more than {self.max_cores} cores"
        if self.platforms and s.platform.value not in self.platforms:
            return "platform not allowed"
        if self.latency_slo_ms is not None:
            tail = cell.summary.p90_ms if self.slo_percentile == 90 else cell.summary.p99_ms
            if not tail <= self.latency_slo_ms:
                return f"p{self.slo_percentile} over the SLO"
        return None


def cheapest_of(tied: Sequence[Cell]) -> tuple[Cell, str]:
    """The cheaper of equivalent scenarios (``tied[0]``: the fastest), and why the fastest lost
    the tie ("" when it did not): the options of the same cost within the resolution keep
    the fastest of them."""
    costs = [scenario_cost(c.records) for c in tied]
    known = [i for i, cost in enumerate(costs) if cost is not None]
    keep, dropped = tie_break([costs[i] for i in known])
    left = [known[k] for k in keep]
    if not left or 0 in left:
        return tied[0], ""
    why = dropped[known.index(0)] if 0 in known else "no successful runs"
    return min((tied[i] for i in left), key=lambda c: c.summary.e2e_mean_ms), why


@dataclass
class Rival:
    cell: Cell
    comparison: stats.PairedComparison  # rival against the best
    cleared: bool

    @property
    def equivalent(self) -> bool:
        return self.comparison.verdict is stats.Verdict.EQUIVALENT


@dataclass
class Recommendation:
    workload: str  # e.g. "ic (tiny, torch, 32 req)"
    host: str
    constraints: Constraints
    best: Cell | None  # the selection's pick (the fastest on the data)
    recommended: Cell | None  # the pick after the tie-break among equivalents
    rivals: list[Rival]
    selection: stats.Selection | None
    considered: int
    rejected: dict[str, int] = field(default_factory=dict)
    #: why the fastest lost the tie to ``recommended`` ("" when it did not)
    tie_reason: str = ""

    @property
    def decided(self) -> bool:
        return self.best is not None and (self.selection is None or self.selection.decided)

    @property
    def runner_up(self) -> Cell | None:
        return min(self.rivals, key=lambda r: r.comparison.ratio).cell if self.rivals else None

    @property
    def equivalents(self) -> list[Cell]:
        return [r.cell for r in self.rivals if r.equivalent]

    @property
    def undecided(self) -> list[Rival]:
        return [r for r in self.rivals if not r.cleared]

    @property
    def tie(self) -> bool:
        """Undecided: the data cannot yet say which to pick."""
        return self.best is not None and not self.decided

    @property
    def pcs(self) -> float | None:
        """The probability of a correct selection the procedure guarantees (None: undecided)."""
        if self.best is None:
            return None
        if self.selection is None:  # a single candidate: nothing to select among
            return 1.0
        return self.selection.guaranteed_pcs

    @property
    def text(self) -> str:
        if self.best is None:
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejected.items())) or "no runs"
            return f"no scenario meets the constraints ({self.constraints.describe()}): {why}"
        pick = self.recommended or self.best
        b = pick.summary
        tail = b.p90_ms if self.constraints.slo_percentile == 90 else b.p99_ms
        ci = "" if math.isnan(b.e2e_ci95_ms) else f" ± {b.e2e_ci95_ms:.2f}"
        out = (f"{pick.display}: {b.e2e_mean_ms:.2f}{ci} ms per request "
               f"(p{self.constraints.slo_percentile} {tail:.2f} ms)")
        if not self.rivals:
            return out + "; the only scenario that meets the constraints"
        margin = self.selection.margin if self.selection else stats.DEFAULT_MARGIN
        if self.decided:
            out += (f"; decided: every other scenario is slower or within ±{margin:.0%} of "
                    f"{self.best.display} (probability of a correct selection >= {self.pcs:.0%})")
            if pick is not self.best:
                out += (f"; {pick.display} is equivalent to the fastest, {self.best.display}, and "
                        f"cheaper, so it wins the tie ({self.best.display}: {self.tie_reason})")
            elif self.equivalents:
                out += (f"; equivalent within ±{margin:.0%}: {', '.join(c.display for c in self.equivalents)}, "
                        f"none of them cheaper beyond the footprint's noise, so the fastest stays")
        else:
            pending = ", ".join(r.cell.display for r in self.undecided)
            out += (f"; not decided yet: {pending} could still be faster than {self.best.display} "
                    f"beyond ±{margin:.0%} (more launches would decide)")
        return out

    def to_json(self) -> dict[str, Any]:
        pick = self.recommended or self.best
        return {"workload": self.workload, "host": self.host, "constraints": self.constraints.describe(),
                "best": [c.display for c in ([self.best] + self.equivalents)] if self.best else [],
                "fastest": self.best.display if self.best else None,
                "recommended": pick.display if pick else None, "decided": self.decided,
                "tie_break": self.tie_reason or None,
                "undecided_pairs": [[self.best.display, r.cell.display] for r in self.undecided]
                if self.best else [],
                "probability_correct_selection": self.pcs,
                "margin": self.selection.margin if self.selection else None,
                "rivals": [{"scenario": r.cell.display, "cleared": r.cleared,
                            **{k: v for k, v in r.comparison.to_json().items() if k not in ("a", "b", "text")},
                            "text": verdict_text(r.comparison)}
                           for r in self.rivals],
                "considered": self.considered, "rejected": self.rejected, "text": self.text}


def candidates_of(group: Sequence[Cell], constraints: Constraints) -> tuple[list[Cell], dict[str, int]]:
    rejected: dict[str, int] = {}
    out = []
    for c in group:
        reason = ("TCG-emulated (not comparable)" if c.emulated else
                  "busy host" if c.host_load != "idle" else constraints.rejects(c))
        if reason:
            rejected[reason] = rejected.get(reason, 0) + 1
        else:
            out.append(c)
    return out, rejected


def recommend(cells: Sequence[Cell], constraints: Constraints = Constraints(), *,
              margin: float = stats.DEFAULT_MARGIN, alpha: float = stats.DEFAULT_ALPHA,
              min_launches: int = stats.MIN_LAUNCHES) -> list[Recommendation]:
    """One recommendation per workload (app, its settings, host conditions, data set) and host."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        if c.scenario.inference_only:
            continue
        groups.setdefault((c.workload, c.host), []).append(c)
    out = []
    for (_w, host), group in sorted(groups.items(), key=lambda kv: (kv[1][0].workload_label, kv[0][1])):
        candidates, rejected = candidates_of(group, constraints)
        if not candidates:
            out.append(Recommendation(group[0].workload_label, host, constraints, None, None, [], None,
                                      0, rejected))
            continue
        by_id = {c.id: c for c in candidates}
        if len(candidates) == 1:
            only = candidates[0]
            out.append(Recommendation(group[0].workload_label, host, constraints, only, only, [], None,
                                      1, rejected))
            continue
        rounds = [r for c in candidates for r in c.rounds()]
        selection = stats.select_best(rounds, [c.id for c in candidates], margin=margin, alpha=alpha,
                                      min_launches=min_launches)
        best = by_id[selection.best] if selection.best else None
        rivals = [Rival(by_id[r.name], r.comparison, r.cleared) for r in selection.rivals]
        recommended, why = best, ""
        if best is not None and selection.decided:
            recommended, why = cheapest_of([best] + [r.cell for r in rivals if r.equivalent])
        out.append(Recommendation(group[0].workload_label, host, constraints, best, recommended, rivals,
                                  selection, len(candidates), rejected, why))
    return out


def compare_scenarios(cells: Sequence[Cell], a_name: str, b_name: str, judge: Judge, *,
                      app: str | None = None, inference_only: bool = False) -> list[Comparison]:
    """``a`` against ``b`` (names ``PLATFORM/CORES/MODE/PROC``) for every workload and host
    where both were measured. Raises ScenarioError (one line) when there is nothing to compare."""
    a_s, b_s = Scenario.parse(a_name), Scenario.parse(b_name)
    by_app = [c for c in cells if app is None or c.app == app]
    pick = [c for c in by_app if c.scenario.inference_only == inference_only]
    what = f" for app {app}" if app else ""
    for name in (a_s.name, b_s.name):
        if not [c for c in pick if c.name == name]:
            other = [c for c in by_app if c.name == name]
            if other:
                have, flag = (("--inference-only", "add --inference-only") if not inference_only
                              else ("E2E", "drop --inference-only"))
                raise ScenarioError(f"no successful {'--inference-only' if inference_only else 'E2E'} "
                                    f"runs of {name}{what} in this store, only {have} ones: {flag}")
            known = sorted({c.name for c in pick})
            raise ScenarioError(f"no successful runs of {name}{what} in this store"
                                f"{': it has ' + ', '.join(known) if known else ''}")
    out = []
    for a in (c for c in pick if c.name == a_s.name):
        for b in (c for c in pick if c.name == b_s.name):
            if a.workload == b.workload and a.host == b.host:
                out.append(Comparison(a, b, judge.compare(a, b)))
    if not out:
        raise ScenarioError(f"{a_s.name} and {b_s.name} were never measured with the same app, "
                            f"workload and host: nothing to compare")
    return out


__all__ = ["Constraints", "Recommendation", "compare_scenarios", "recommend", "cheapest_of",
           "verdict_text"]
