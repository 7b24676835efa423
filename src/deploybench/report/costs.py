"""The report's "What each platform costs" section: each scenario's footprint beyond the model
(``footprint.costs``) -- memory beyond the worker and what it is made of, CPU outside the
worker, start and boot time, energy where the host has RAPL -- and the order in which the
recommendation breaks a tie between equivalent scenarios (``footprint.cost_order``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .. import footprint as fp
from ..findings import workload_label
from ..store import group_by_scenario


@dataclass
class CostsSection:
    rows: list[fp.ScenarioCost] = field(default_factory=list)
    #: per workload (``findings.workload_label``: one per recommendation), its scenarios in tie-break order
    #: (cheapest first), by name, in groups of the same cost within the footprint's noise
    tie_break: dict[str, list[list[str]]] = field(default_factory=dict)
    energy_recorded: bool = False
    resolution: float = fp.TIE_RESOLUTION

    @property
    def empty(self) -> bool:
        return not self.rows


def costs_section(records: Sequence[Any]) -> CostsSection:
    from ..capacity import is_probe

    measured = [r for r in records if not is_probe(r)]  # probes are the capacity section's
    rows = [c for c in fp.costs(measured) if c.runs]
    by_workload: dict[str, list[tuple[fp.ScenarioCost, str]]] = {}
    for (_key, _host, accel), group in group_by_scenario(measured).items():
        s = group[0].scenario
        if accel == "tcg" or s.inference_only or not any(r.status == "ok" for r in group):
            continue  # emulated guests and inference-only runs are never candidates
        cost = fp.scenario_cost(group)
        if cost is not None:
            by_workload.setdefault(workload_label(s), []).append((cost, s.name))
    tie_break = {}
    for workload, items in sorted(by_workload.items()):
        items.sort(key=lambda item: item[1])
        tie_break[workload] = [[items[i][1] for i in g] for g in fp.cost_order([c for c, _ in items])]
    return CostsSection(rows, tie_break, any(c.energy_j_per_request is not None for c in rows))
