"""Recommendations under a user's constraints, and the comparison of two scenarios.

DESIGN: the objective is the lowest mean E2E time per request; constraints filter first
(cores, platforms, a latency SLO on the p90 or p99 of the per-request E2E times). The
winner is compared with the runner-up by Welch's test: when they are not significantly
different the recommendation says so ("within the CI"), since the data then cannot pick one.
Inference-only runs, TCG-emulated VMs and runs on a busy host (when idle ones exist) never
win: they do not measure what a deployment would see.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .findings import Cell, Comparison, compare_cells
from .scenario import Scenario, ScenarioError


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
        from .scenario import PlatformName, _enum_value

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


@dataclass
class Recommendation:
    workload: str  # e.g. "ic (tiny, torch, 32 req)"
    host: str
    constraints: Constraints
    best: Cell | None
    runner_up: Cell | None
    margin: Comparison | None  # runner-up against best
    considered: int
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def tie(self) -> bool:
        return self.margin is not None and not self.margin.diff.significant

    @property
    def text(self) -> str:
        if self.best is None:
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejected.items())) or "no runs"
            return f"no scenario meets the constraints ({self.constraints.describe()}): {why}"
        b = self.best.summary
        tail = b.p90_ms if self.constraints.slo_percentile == 90 else b.p99_ms
        ci = "" if math.isnan(b.e2e_ci95_ms) else f" ± {b.e2e_ci95_ms:.2f}"
        out = (f"{self.best.display}: {b.e2e_mean_ms:.2f}{ci} ms per request "
               f"(p{self.constraints.slo_percentile} {tail:.2f} ms)")
        if self.runner_up is None or self.margin is None:
            return out + "; the only scenario that meets the constraints"
        d = self.margin.diff
        out += f"; runner-up {self.runner_up.display} is {d.describe()}"
        if self.tie:
            out += ": within the CI, the data cannot tell them apart (either is fine; more runs would decide)"
        else:
            out += ": the best is significantly faster"
        return out

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload, "host": self.host, "constraints": self.constraints.describe(),
                "best": self.best.display if self.best else None,
                "runner_up": self.runner_up.display if self.runner_up else None,
                "margin": self.margin.to_json() if self.margin else None, "tie": self.tie,
                "considered": self.considered, "rejected": self.rejected, "text": self.text}


def recommend(cells: Sequence[Cell], constraints: Constraints = Constraints()) -> list[Recommendation]:
    """One recommendation per workload (app and its settings) and host."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        if c.scenario.inference_only:
            continue
        groups.setdefault((c.workload, c.host), []).append(c)
    out = []
    for (_w, host), group in sorted(groups.items(), key=lambda kv: (kv[1][0].workload_label, kv[0][1])):
        rejected: dict[str, int] = {}
        idle_exists = any(c.host_load in ("", "idle") for c in group)
        candidates = []
        for c in group:
            reason = ("TCG-emulated (not comparable)" if c.emulated else
                      "busy host" if idle_exists and c.host_load not in ("", "idle") else
                      constraints.rejects(c))
            if reason:
                rejected[reason] = rejected.get(reason, 0) + 1
            else:
                candidates.append(c)
        candidates.sort(key=lambda c: c.summary.e2e_mean_ms)
        best = candidates[0] if candidates else None
        runner = candidates[1] if len(candidates) > 1 else None
        margin = Comparison(runner, best, *compare_cells(runner, best)) if best and runner else None
        out.append(Recommendation(group[0].workload_label, host, constraints, best, runner, margin,
                                  len(candidates), rejected))
    return out


def compare_scenarios(cells: Sequence[Cell], a_name: str, b_name: str, *, app: str | None = None,
                      inference_only: bool = False) -> list[Comparison]:
    """``a`` against ``b`` (names ``PLATFORM/CORES/MODE/PROC``) for every workload and host
    where both were measured. Raises ScenarioError (one line) when there is nothing to compare."""
    a_s, b_s = Scenario.parse(a_name), Scenario.parse(b_name)
    pick = [c for c in cells if (app is None or c.app == app) and c.scenario.inference_only == inference_only]

    def matches(c: Cell, s: Scenario) -> bool:
        return c.name == s.name

    found_a = [c for c in pick if matches(c, a_s)]
    found_b = [c for c in pick if matches(c, b_s)]
    what = f" for app {app}" if app else ""
    for name, found in ((a_s.name, found_a), (b_s.name, found_b)):
        if not found and any(c.name == name and (app is None or c.app == app) for c in cells):
            kind, other, fix = (("--inference-only", "E2E", "drop --inference-only") if inference_only
                                else ("E2E", "--inference-only", "add --inference-only"))
            raise ScenarioError(f"no successful {kind} runs of {name}{what} in this store, only "
                                f"{other} ones: {fix}")
        if not found:
            known = sorted({c.name for c in pick})
            raise ScenarioError(f"no successful runs of {name}{what} in this store"
                                f"{': it has ' + ', '.join(known) if known else ''}")
    out = []
    for a in found_a:
        for b in found_b:
            if a.workload == b.workload and a.host == b.host and a.host_load == b.host_load:
                out.append(Comparison(a, b, *compare_cells(a, b)))
    if not out:
        raise ScenarioError(f"{a_s.name} and {b_s.name} were never measured with the same app, "
                            f"workload and host: nothing to compare")
    return out
