"""The report's capacity section: for each app with a capacity search, latency against offered
load per platform (the SLO a line, each capacity marked) and a "capacity per core" table.

Everything comes from the stored probes (``capacity.searches``): the latest search of each
scenario, SLO and host. Emulated (TCG) searches get figures of their own (their rates are a
hundred times lower) and are flagged in the table.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from .. import capacity as cap
from . import figures as F


@dataclass
class CapacitySection:
    answers: list[cap.CapacityAnswer] = field(default_factory=list)
    figures: list[F.Figure] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.answers


def capacity_section(records: Sequence[Any]) -> CapacitySection:
    answers = cap.latest(cap.searches(records))
    order = {p: i for i, p in enumerate(F.PLATFORM_ORDER)}
    answers.sort(key=lambda a: (a.app, a.emulated, order.get(a.name.split("/")[0], 9), a.cores, a.name))
    groups: dict[tuple, list[cap.CapacityAnswer]] = defaultdict(list)
    for a in answers:
        groups[(a.app, a.criteria, a.emulated)].append(a)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1].percentile, kv[0][1].slo_ms))
    figures = [latency_against_load(group, f"capacity-{i}-{_slug(app)}{'-tcg' if emulated else ''}")
               for i, ((app, _criteria, emulated), group) in enumerate(ordered)]
    return CapacitySection(answers, figures)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:40]


def latency_against_load(answers: Sequence[cap.CapacityAnswer], key: str) -> F.Figure:
    """One app's searches under one SLO: each scenario's percentile latency (queue included)
    against the offered QPS, every probe a point (filled: passed, open: failed), the mean per
    rate a line, the SLO dashed, each capacity a star."""
    import matplotlib.pyplot as plt

    first = answers[0]
    c = first.criteria
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    markers = "os^Dv<>p"
    for i, a in enumerate(answers):
        platform = a.name.split("/")[0]
        color = F.PLATFORM_COLORS.get(platform, "#333333")
        marker = markers[i % len(markers)]
        by_rate: dict[float, list[float]] = defaultdict(list)
        for p in a.probes:
            if p.latency_ms is not None:
                by_rate[p.rate_qps].append(p.latency_ms)
        rates = sorted(by_rate)
        ax.plot(rates, [sum(by_rate[r]) / len(by_rate[r]) for r in rates], color=color, lw=1.2,
                label=a.name + (" (TCG)" if a.emulated else ""), marker=None)
        passed = [(p.rate_qps, p.latency_ms) for p in a.probes if p.passed and p.latency_ms is not None]
        failed = [(p.rate_qps, p.latency_ms) for p in a.probes if not p.passed and p.latency_ms is not None]
        if passed:
            ax.scatter(*zip(*passed), color=color, marker=marker, s=28, zorder=3)
        if failed:
            ax.scatter(*zip(*failed), facecolors="none", edgecolors=color, marker=marker, s=28, zorder=3)
        if a.capacity_qps is not None and a.capacity_latency_ms is not None:
            ax.scatter([a.capacity_qps], [a.capacity_latency_ms], color=color, marker="*", s=220,
                       edgecolors="black", linewidths=0.6, zorder=4)
            ax.annotate(f"{a.capacity_qps:g} qps", (a.capacity_qps, a.capacity_latency_ms),
                        textcoords="offset points", xytext=(6, -12), fontsize=8, color=color)
    ax.axhline(c.slo_ms, color="#b22222", ls="--", lw=1.2, label=f"SLO {c.slo_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (target QPS, LoadGen Server)")
    ax.set_ylabel(f"p{c.percentile:g} latency, queue included (ms)")
    title = f"{first.app}: p{c.percentile:g} latency against offered load"
    if first.emulated:
        title += " (emulated: TCG)"
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(True, which="major", axis="both", alpha=0.3)
    fig.tight_layout()
    caption = (f"Each probe of each scenario's latest capacity search: its p{c.percentile:g} latency per "
               "request, the wait in LoadGen's queue included, at the offered rate (filled: passed, "
               "LoadGen VALID and within the SLO; open: failed); the line joins the mean per rate over "
               "launches; the star is the capacity (the largest rate that passed on every launch it was "
               "probed on); the dashed line is the SLO.")
    if first.emulated:
        caption += " Emulated (TCG) guests: a function check, never the capacity of real hardware."
    return F.Figure(key, title, caption, F.to_svg(fig, key))
