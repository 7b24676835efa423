"""Host classes in the analysis: the answer for each class of identical hosts, and whether
the classes agree.

Runs are never pooled across host classes (``store.group_by_scenario`` keys every cell by
``host.host_fingerprint``), so every recommendation is already made within one class; this
module lays them side by side. For each workload measured on two classes or more, the
classes *agree* when some scenario is an acceptable answer on every one of them: the pick,
or one the data cannot tell apart from it (equivalent, or not decided yet).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .capacity import is_probe
from .findings import build_cells
from .host import host_class_label
from .recommend import Constraints, recommend
from .store import RunRecord, host_class_of


@dataclass(frozen=True)
class ClassAnswer:
    """One workload's recommendation on one host class."""

    workload: str
    best: str | None  # the scenario, as displayed (None: nothing meets the constraints)
    acceptable: tuple[str, ...]  # the pick, and what the data cannot tell apart from it
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload, "best": self.best, "acceptable": list(self.acceptable),
                "text": self.text}


@dataclass(frozen=True)
class HostClassView:
    fingerprint: str
    label: str  # CPU model, cores, memory, kernel, KVM, GPUs
    hosts: tuple[str, ...]
    runs: int  # successful runs
    answers: tuple[ClassAnswer, ...]

    def answer(self, workload: str) -> ClassAnswer | None:
        return next((a for a in self.answers if a.workload == workload), None)

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "label": self.label, "hosts": list(self.hosts),
                "runs": self.runs, "answers": [a.to_json() for a in self.answers]}


@dataclass(frozen=True)
class WorkloadAgreement:
    workload: str
    best: dict[str, str | None]  # host class -> its best
    agree: bool

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload, "best": dict(self.best), "agree": self.agree}


@dataclass(frozen=True)
class FleetView:
    classes: tuple[HostClassView, ...]
    workloads: tuple[WorkloadAgreement, ...]  # those measured on two classes or more

    @property
    def agree(self) -> bool | None:
        """True when every workload measured on several classes has a common answer; None
        when no workload was measured on two classes."""
        if not self.workloads:
            return None
        return all(w.agree for w in self.workloads)

    @property
    def shown(self) -> bool:
        """Worth a report section: runs from several host classes, or several hosts."""
        return len(self.classes) >= 2 or any(len(c.hosts) >= 2 for c in self.classes)

    def to_json(self) -> dict[str, Any]:
        return {"classes": [c.to_json() for c in self.classes],
                "workloads": [w.to_json() for w in self.workloads], "agree": self.agree}


def fleet_view(records: Sequence[RunRecord], constraints: Any = None) -> FleetView:
    """Each host class's recommendations (``recommend.recommend`` within the class) and
    whether the classes agree."""

    constraints = constraints if constraints is not None else Constraints()
    ok = [r for r in records if r.status == "ok"]
    meta: dict[str, dict[str, Any]] = {}
    hosts: dict[str, set[str]] = {}
    runs: dict[str, int] = {}
    for r in ok:
        cls = host_class_of(r)
        meta.setdefault(cls, r.host)
        hosts.setdefault(cls, set()).add(str(r.host.get("host", "?")))
        runs[cls] = runs.get(cls, 0) + 1
    answers: dict[str, list[ClassAnswer]] = {cls: [] for cls in meta}
    for rec in recommend(build_cells([r for r in ok if not is_probe(r)]), constraints):
        pick = rec.recommended or rec.best
        best = pick.display if pick is not None else None
        # what the data cannot tell apart from the pick: equivalents and undecided rivals
        others = [c.display for c in [rec.best, *rec.equivalents, *(r.cell for r in rec.undecided)]
                  if c is not None and c.display != best]
        acceptable = tuple(dict.fromkeys([best, *others])) if best else ()
        answers.setdefault(rec.host, []).append(ClassAnswer(rec.workload, best, acceptable, rec.text))
    classes = tuple(HostClassView(cls, host_class_label(meta[cls]), tuple(sorted(hosts[cls])), runs[cls],
                                  tuple(answers.get(cls, ())))
                    for cls in sorted(meta, key=lambda c: (-runs[c], c)))
    workloads = []
    for workload in sorted({a.workload for c in classes for a in c.answers}):
        on = [(c.fingerprint, c.answer(workload)) for c in classes if c.answer(workload) is not None]
        if len(on) < 2:
            continue
        sets = [set(a.acceptable) for _, a in on]
        agree = all(sets) and bool(set.intersection(*sets))
        workloads.append(WorkloadAgreement(workload, {cls: a.best for cls, a in on}, agree))
    return FleetView(classes, tuple(workloads))
