"""From stored runs to one self-contained HTML file (no network needed to view it).

``analyze`` gathers every finding once (a plain value the template and tests read);
``render_html`` draws the figures and fills ``templates/report.html.j2``.
"""
from __future__ import annotations

import datetime as _dt
import html
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import stats
from ..capacity import is_probe
from ..fleetview import fleet_view
from ..findings import (Causes, Cell, ChrTrend, Comparison, GpuSpeedup, Judge, ScaleUp, build_cells, causes,
                        chr_trends, condition_effects, condition_free_key, gpu_speedups, overheads,
                        pin_gains, scale_ups)
from ..practices import BestPractice, best_practices
from ..recommend import Constraints, Recommendation, recommend
from ..store import FAILED_STATUSES, LOST_STATUS, RunRecord
from ..warnings import hint
from . import figures as F
from .capacity import capacity_section
from .costs import costs_section

REPORT_SCHEMA = 1


@dataclass
class EmulatedOverhead:
    """A TCG-emulated guest beside BM: never measured with it in blocks (another group), so a
    plain ratio of means, for orientation only."""

    cell: Cell
    baseline: Cell

    @property
    def ratio(self) -> float:
        return self.cell.summary.e2e_mean_ms / self.baseline.summary.e2e_mean_ms

    @property
    def text(self) -> str:
        return f"{self.ratio:.1f}x BM (emulated: not comparable, no verdict)"


@dataclass
class Analysis:
    records: list[RunRecord]
    cells: list[Cell]
    constraints: Constraints
    judge: Judge
    overheads: list[Comparison]  # native platforms against BM
    emulated_overheads: list[EmulatedOverhead]  # TCG-emulated VMs beside BM: never mixed in
    scale_ups: list[ScaleUp]
    pin_gains: list[Comparison]
    condition_effects: list[Comparison]
    chr_trends: list[ChrTrend]
    gpu_speedups: list[GpuSpeedup]
    causes: list[Causes]
    best_practices: list[BestPractice]
    recommendations: list[Recommendation]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    metadata: list[tuple[str, str]] = field(default_factory=list)
    #: another machine's results shown beside these (``report --reference DIR``), never pooled
    reference: Any = None  # reference.ReferenceSet | None
    reference_lines: list[Any] = field(default_factory=list)  # reference.ReferenceLine

    @property
    def ok_runs(self) -> int:
        return sum(1 for r in self.records if r.status == "ok")

    @property
    def warmup_runs(self) -> int:
        return sum(1 for r in self.records if r.status == "warmup")

    @property
    def claims(self) -> list[Comparison]:
        """Every comparison the report states a verdict on (one Holm family)."""
        out = list(self.overheads) + list(self.pin_gains) + list(self.condition_effects)
        for s in self.scale_ups:
            out += s.steps
        return out

    @property
    def verdict_counts(self) -> dict[str, int]:
        return dict(Counter(c.verdict.value for c in self.claims))


def _findings(cells: Sequence[Cell], judge: Judge) -> dict[str, Any]:
    """Every finding of the report, each claim made through ``judge``."""
    native = [c for c in cells if not c.emulated]
    return {"overheads": overheads(native, judge), "scale_ups": scale_ups(native, judge),
            "pin_gains": pin_gains(native, judge), "condition_effects": condition_effects(native, judge),
            "gpu_speedups": gpu_speedups(native, judge),
            "best_practices": best_practices(cells, judge)}


def family_size(records: Sequence[RunRecord]) -> int:
    """The claims a report of ``records`` decides together (Holm): its first pass."""
    judge = Judge()
    _findings(build_cells([r for r in records if not is_probe(r)]), judge)
    return judge.family_size


def analyze(records: Sequence[RunRecord], constraints: Constraints = Constraints(),
            reference: Any = None, *, margin: float = stats.DEFAULT_MARGIN,
            alpha: float = stats.DEFAULT_ALPHA) -> Analysis:
    """Every finding of the report. All comparisons go through one ``Judge``: a first pass
    makes them, ``decide`` corrects them as one family (Holm), a second pass gives every
    finding and best practice the family's verdicts."""
    records = list(records)
    # capacity probes (Server rounds at rates a search chose) have a section of their own:
    # the latency analysis compares scenarios at their own workloads
    cells = build_cells([r for r in records if not is_probe(r)])
    judge = Judge(margin, alpha)
    _findings(cells, judge)  # pass 1: every claim the report makes
    judge.decide()  # one family
    made = _findings(cells, judge)  # pass 2: the family's verdicts
    index = {(c.scenario.key, c.host, c.summary.data_set): c for c in cells if not c.emulated}
    emulated = []
    for c in cells:
        if c.emulated and c.scenario.platform.value != "BM":
            from ..scenario import PlatformName

            base = index.get((c.scenario.with_(platform=PlatformName.BM).key, c.host, c.summary.data_set))
            if base is not None:
                emulated.append(EmulatedOverhead(c, base))
    lines = []
    if reference is not None:
        from ..reference import beside_own

        lines = beside_own(reference, records)
    return Analysis(reference=reference, reference_lines=lines,
                    records=records, cells=cells, constraints=constraints, judge=judge,
                    emulated_overheads=emulated, chr_trends=chr_trends(made["overheads"]),
                    causes=[causes(c) for c in cells],
                    recommendations=recommend(cells, constraints, margin=margin, alpha=alpha),
                    warnings=_warnings(records), failures=_failures(records),
                    metadata=_metadata(records), **made)


def _warnings(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    by_code: dict[str, dict[str, Any]] = {}
    for r in records:
        for w in r.warnings:
            entry = by_code.setdefault(w["code"], {"code": w["code"], "count": 0, "scenarios": set(),
                                                   "message": w.get("message", ""),
                                                   "hint": hint(w["code"])})
            entry["count"] += 1
            entry["scenarios"].add(f"{r.scenario.name} · {r.scenario.app}")
    out = []
    for entry in sorted(by_code.values(), key=lambda e: -e["count"]):
        entry["scenarios"] = ", ".join(sorted(entry["scenarios"]))
        out.append(entry)
    return out


def _failures(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    return [{"scenario": r.scenario.name, "app": r.scenario.app, "status": r.status,
             "error": r.error or "(no reason recorded)",
             "when": _dt.datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M:%S"),
             "tail": (r.console_tail or "")[-600:]}
            for r in records if r.status in FAILED_STATUSES or r.status in ("interrupted", LOST_STATUS)]


def _metadata(records: Sequence[RunRecord]) -> list[tuple[str, str]]:
    """Each metadata key with every value seen (runs whose values differ are never pooled)."""
    fields = (("host", lambda r: r.host.get("host")), ("kernel", lambda r: r.host.get("kernel")),
              ("CPU", lambda r: r.host.get("cpu_model")), ("host cores", lambda r: r.host.get("host_cores")),
              ("memory (GiB)", lambda r: r.host.get("memory_gib")),
              ("cgroup version", lambda r: r.host.get("cgroup_version")),
              ("CPU governor", lambda r: r.host.get("governor")),
              ("Python", lambda r: r.host.get("python") or r.metadata.get("python")),
              ("torch", lambda r: r.metadata.get("torch_version") or r.metadata.get("torch")),
              ("LoadGen", lambda r: r.metadata.get("loadgen_version")),
              ("numpy", lambda r: r.metadata.get("numpy_version")),
              ("git revision", lambda r: r.host.get("git_revision")),
              ("accelerator", lambda r: r.platform.get("accel", "native")),
              ("GPU", lambda r: (r.environment.get("gpu") or {}).get("name")),
              ("GPU driver", lambda r: (r.environment.get("gpu") or {}).get("driver_version")),
              ("CUDA (driver / torch)", lambda r: "{} / {}".format(g.get("driver_cuda_version"), g.get("torch_cuda_version"))
               if (g := r.environment.get("gpu")) else None),
              ("platforms", lambda r: r.scenario.platform.value), ("apps", lambda r: r.scenario.app))
    out = []
    for name, get in fields:
        values = Counter(str(v) for r in records if (v := get(r)) not in (None, ""))
        if values:
            out.append((name, ", ".join(f"{v} ({n} runs)" if len(values) > 1 else v
                                        for v, n in sorted(values.items()))))
    if records:
        first = min(r.started_at for r in records)
        last = max(r.finished_at for r in records)
        fmt = "%Y-%m-%d %H:%M"
        out.append(("runs from", f"{_dt.datetime.fromtimestamp(first).strftime(fmt)} to "
                                 f"{_dt.datetime.fromtimestamp(last).strftime(fmt)}"))
    return out


# -- figures -----------------------------------------------------------------------------
def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:40]


def figures(a: Analysis) -> list[F.Figure]:
    """The paper's figures for this data (placeholders say what data they need)."""
    out: list[F.Figure] = []
    normal = [c for c in a.cells if not c.emulated and c.host_load == "idle"]
    by_workload: dict[str, list[Cell]] = {}
    for c in normal:
        if not c.scenario.inference_only:
            by_workload.setdefault(c.workload_label, []).append(c)
    for i, (label, group) in enumerate(sorted(by_workload.items())):
        out.append(F.fig4_phases(group, f"fig4-{i}-{_slug(label)}", label))
    # Fig. 5: the GPU speedup, or its CPU analogue from inference-only runs
    gpu = [g for g in a.gpu_speedups if not g.gpu.emulated and g.gpu.host_load == "idle"]
    out.append(F.fig5_gpu(gpu))
    e2e = {(c.scenario.key, c.host): c for c in normal if not c.scenario.inference_only}
    pairs_by_wl: dict[str, list[tuple[Cell, Cell]]] = {}
    for c in normal:
        if c.scenario.inference_only and c.scenario.processor.value == "CPU":
            e = e2e.get((c.scenario.with_(inference_only=False).key, c.host))
            if e is not None:
                pairs_by_wl.setdefault(e.workload_label, []).append((e, c))
    for i, (label, pairs) in enumerate(sorted(pairs_by_wl.items())):
        platforms = Counter(e.scenario.platform.value for e, _ in pairs)
        main = "BM" if "BM" in platforms else platforms.most_common(1)[0][0]
        pairs = [p for p in pairs if p[0].scenario.platform.value == main]  # one platform: readable
        if len(pairs) >= 2:
            ref = min(pairs, key=lambda p: (F._order(p[0])[0], p[0].scenario.cores,
                                            p[0].scenario.cpu_mode.value != "PIN"))
            out.append(F.fig5_cpu_scaleup(pairs, ref, f"fig5cpu-{i}-{_slug(label)}", label, a.judge))
    # Fig. 9: busy vs idle host
    idle = {(condition_free_key(c.scenario), c.host, c.accel): c for c in normal}
    busy_pairs = [(idle[k], c) for c in a.cells
                  if c.host_load == "busy" and not c.emulated
                  and (k := (condition_free_key(c.scenario), c.host, c.accel)) in idle]
    out.append(F.fig9_host_load(busy_pairs))
    # Figs. 10 and 11: normalised E2E across apps at one configuration
    out += _normalised_figures(normal, a.judge)
    return out


def _normalised_figures(cells: Sequence[Cell], judge: Judge) -> list[F.Figure]:
    configs: dict[tuple, dict[str, dict[str, Cell]]] = {}
    for c in cells:
        if c.scenario.inference_only:
            continue
        s = c.scenario
        conf = (s.cores, s.cpu_mode.value, s.processor.value, c.host)
        configs.setdefault(conf, {}).setdefault(c.workload_label, {})[s.platform.value] = c
    if not configs:
        return []

    def richness(conf: tuple) -> tuple:
        groups = configs[conf]
        return (len({p for g in groups.values() for p in g}), len(groups), conf[0])

    out = []
    main = max(configs, key=richness)
    if richness(main)[0] < 2:
        return [F.Figure("fig10", "Fig. 10/11-like: normalised E2E across apps and platforms",
                         "Each platform's E2E over BM's at the same configuration, per app.", None,
                         needs="a platform other than BM measured at the same cores and mode as BM")]
    cores, mode, proc, _host = main
    out.append(F.fig_normalised(
        configs[main], f"{cores}/{mode}/{proc}", "fig10", f"Fig. 10-like: normalised E2E at */{cores}/{mode}/{proc}",
        "Mean E2E of each platform over BM's at the same cores, mode and processor (the "
        "configuration with the most platforms measured), per app; error bars: 95% CI of the "
        "paired ratio (over launch pairs of interleaved blocks).", judge))
    edge = [conf for conf in configs if conf[1] == "VNL" and conf[2] == "CPU"
            and any(c.chr == 1.0 for g in configs[conf].values() for c in g.values())]
    if edge:
        conf = max(edge, key=richness)
        if conf != main:
            out.append(F.fig_normalised(
                configs[conf], f"{conf[0]}/VNL/CPU (CHR = 1)", "fig11",
                f"Fig. 11-like: edge setting, */{conf[0]}/VNL/CPU at CHR = 1",
                "The edge setting of the paper's Fig. 11: all host cores (CHR = 1), vanilla "
                "mode; each platform's E2E over BM's, per app; error bars: 95% CI.", judge))
        else:
            out[-1].title += " (also the Fig. 11-like edge setting: CHR = 1, vanilla)"
    return out


# -- rendering ---------------------------------------------------------------------------
def _fmt_ms(value: float | None, ci: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.2f}"
    if ci is not None and not math.isnan(ci):
        text += f" ± {ci:.2f}"
    return text


def _fmt_num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value * 100:.0f}%"


def decision_lines(a: Analysis) -> list[str]:
    """The report's first lines: the decision for each workload (app and settings)."""
    out = []
    for r in a.recommendations:
        if r.best is None:
            out.append(f"{r.workload}: {r.text}.")
            continue
        pick = r.recommended or r.best
        if not r.rivals:
            out.append(f"{r.workload}: only {pick.display} was measured; nothing to decide between.")
        elif r.decided:
            ties = (f" (equivalent to the fastest and cheaper; {r.best.display}: {r.tie_reason})"
                    if pick is not r.best else "")
            out.append(f"{r.workload}: decided: {pick.display}{ties}; every other scenario is slower or "
                       f"within ±{r.selection.margin:.0%} of {r.best.display} (probability of a correct "
                       f"selection >= {r.pcs:.0%}).")
        else:
            out.append(f"{r.workload}: undecided between {r.best.display} and "
                       f"{', '.join(x.cell.display for x in r.undecided)}: more launches would decide.")
    return out


def key_findings(a: Analysis) -> list[str]:
    """The summary: the decisions first, then the main findings, decided ones first."""
    out = decision_lines(a)
    claims = a.claims
    if claims:
        counts = a.verdict_counts
        out.append(f"{len(claims)} comparison(s) stated in this report, decided together (Holm, "
                   f"{(1 - a.judge.alpha):.0%}): " + ", ".join(f"{counts[v]} {v}" for v in
                                                              ("faster", "slower", "equivalent", "undecided")
                                                              if counts.get(v)) + ".")
    decided = sorted((o for o in a.overheads if o.verdict in (stats.Verdict.SLOWER, stats.Verdict.FASTER)
                      and o.cell.host_load == "idle" and not o.cell.scenario.inference_only),
                     key=lambda o: -abs(math.log(o.ratio)))
    if decided:
        o = decided[0]
        out.append(f"Largest decided difference against BM: {o.cell.display} ({o.cell.workload_label}) "
                   f"{o.text}.")
    elif a.overheads:
        same = sum(1 for o in a.overheads if o.verdict is stats.Verdict.EQUIVALENT)
        out.append(f"No platform is decided faster or slower than BM beyond the margin: {same} of "
                   f"{len(a.overheads)} comparison(s) are equivalent, the others undecided.")
    else:
        out.append("Only bare metal (BM) was measured: there is no overhead against BM to report yet.")
    for s in a.scale_ups[:3]:
        if not s.series[0].scenario.inference_only:
            out.append(s.describe() + ".")
    pins = [p for p in a.pin_gains if p.verdict in (stats.Verdict.SLOWER, stats.Verdict.FASTER)
            and not p.cell.scenario.inference_only]
    if pins:
        p = max(pins, key=lambda p: abs(math.log(p.ratio)))
        out.append(f"Pinning matters most for {p.cell.display} ({p.cell.workload_label}): PIN vs VNL {p.text}.")
    elif a.pin_gains:
        out.append(f"PIN and VNL are not decided apart beyond the margin in any of {len(a.pin_gains)} pair(s).")
    verdicts = Counter(bp.verdict for bp in a.best_practices)
    out.append("Best practices on this data: " + ", ".join(f"{n} {v}" for v, n in verdicts.items()) + ".")
    if a.emulated_overheads:
        out.append(f"{len(a.emulated_overheads)} TCG-emulated VM scenario(s) are reported apart: "
                   "emulation is not comparable with native runs.")
    return out


def render_html(a: Analysis, title: str = "deploybench report") -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("deploybench.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ms=_fmt_ms, num=_fmt_num, pct=_pct)
    env.globals["fleet_view"] = fleet_view  # fleet.html.j2: the answer on each host class
    template = env.get_template("report.html.j2")
    return template.render(
        costs=costs_section(a.records), capacity=capacity_section(a.records),  # their own templates
        a=a, title=title, figures=figures(a), key_findings=key_findings(a),
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), phase_colors=F.PHASE_COLORS,
        phase_names=F.PHASE_NAMES, escape=html.escape, schema=REPORT_SCHEMA)


def write_report(records: Sequence[RunRecord], out: Path,
                 constraints: Constraints = Constraints(), reference: Any = None, *,
                 margin: float = stats.DEFAULT_MARGIN, alpha: float = stats.DEFAULT_ALPHA) -> Analysis:
    analysis = analyze(records, constraints, reference, margin=margin, alpha=alpha)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(analysis), encoding="utf-8")
    tmp.replace(out)
    return analysis
