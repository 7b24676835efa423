"""The report's figures, drawn with matplotlib (Agg) and returned as inline SVG text.

DESIGN: one colour per phase and one per platform, the same in every figure; the paper's
``PLATFORM/CORES/MODE/PROC`` names on the axes; every bar that is a mean carries its 95% CI
as an error bar. SVG ids are prefixed per figure, so several figures can live in one HTML
page without their clip paths and markers colliding.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..findings import Cell, GpuSpeedup, Judge, compare_cells  # noqa: E402

PHASE_COLORS = {"pre": "#4C72B0", "infer": "#DD8452", "post": "#55A868"}
PHASE_NAMES = {"pre": "pre-processing", "infer": "inference", "post": "post-processing"}
PLATFORM_ORDER = ("BM", "CN", "VM", "MVM", "VMCN")
PLATFORM_COLORS = {"BM": "#7f7f7f", "CN": "#1f77b4", "VM": "#d62728", "MVM": "#9467bd", "VMCN": "#2ca02c"}
MEASURE_COLORS = {"inference only": "#DD8452", "E2E": "#2f4b7c", "idle host": "#8fbc8f", "busy host": "#b22222"}

plt.rcParams.update({"svg.fonttype": "none", "font.size": 10, "axes.titlesize": 11,
                     "axes.spines.top": False, "axes.spines.right": False})


@dataclass
class Figure:
    key: str  # stable id, e.g. "fig4-ic"
    title: str
    caption: str
    svg: str | None  # None: placeholder (see ``needs``)
    needs: str | None = None


def _order(cell: Cell) -> tuple:
    s = cell.scenario
    p = PLATFORM_ORDER.index(s.platform.value) if s.platform.value in PLATFORM_ORDER else 99
    return (p, s.processor.value, s.cpu_mode.value, s.cores)


def to_svg(fig: "plt.Figure", prefix: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG
    text = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r'url\(#([^)]+)\)', lambda m: f'url(#{prefix}-{m.group(1)})', text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    return text.replace("<svg ", f'<svg class="figure" data-figure="{prefix}" role="img" ', 1)


def _ci(value: float) -> float:
    return 0.0 if value is None or math.isnan(value) else value


def _time_err(cells: Sequence[Cell]) -> list[list[float]]:
    """Asymmetric error bars of E2E means: a time is never below zero, so the lower arm of
    a wide CI (few runs) stops at zero; the table gives the full interval."""
    return [[min(_ci(c.summary.e2e_ci95_ms), c.summary.e2e_mean_ms) for c in cells],
            [_ci(c.summary.e2e_ci95_ms) for c in cells]]


# -- Fig. 4 --------------------------------------------------------------------------------
def fig4_phases(cells: Sequence[Cell], key: str, workload: str) -> Figure:
    """E2E per platform grouped by cores (one row per mode and processor): stacked phases,
    the CI of the E2E mean on top. Group labels read ``BM/N/PIN/CPU``; ticks give N."""
    rows: dict[tuple[str, str], list[Cell]] = {}
    for c in sorted(cells, key=_order):
        rows.setdefault((c.scenario.processor.value, c.scenario.cpu_mode.value), []).append(c)
    longest = max(len(r) + 0.6 * len({c.scenario.platform for c in r}) for r in rows.values())
    width = min(11.0, max(6.0, 0.32 * longest + 2.5))
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, 2.9 * len(rows) + 0.6), squeeze=False)
    span = 0.0
    for ax, ((proc, mode), row) in zip(axes[:, 0], sorted(rows.items())):
        xs, x, groups = [], 0.0, []
        for c in row:
            platform = c.scenario.platform.value
            if groups and groups[-1][0] != platform:
                x += 0.8  # a gap between platforms
            if not groups or groups[-1][0] != platform:
                groups.append((platform, []))
            groups[-1][1].append(x)
            xs.append(x)
            x += 1
        bottom = [0.0] * len(row)
        for phase, attr in (("pre", "pre_ms"), ("infer", "infer_ms"), ("post", "post_ms")):
            vals = [getattr(c.summary, attr) for c in row]
            ax.bar(xs, vals, 0.8, bottom=bottom, color=PHASE_COLORS[phase], label=PHASE_NAMES[phase])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.errorbar(xs, [c.summary.e2e_mean_ms for c in row], yerr=_time_err(row),
                    fmt="none", ecolor="black", capsize=3, lw=1, label="95% CI of E2E")
        ax.set_ylim(bottom=0)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(c.scenario.cores) for c in row])
        for platform, gx in groups:
            ax.text(sum(gx) / len(gx), -0.2, f"{platform}/N/{mode}/{proc}", transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=9, fontweight="bold")
        ax.set_ylabel("E2E per request (ms)")
        span = max(span, x)
    for ax in axes[:, 0]:
        ax.set_xlim(-0.8, span - 0.2)  # equal bar widths in every row
    fig.supxlabel("cores N within each PLATFORM/N/MODE/PROC group", fontsize=10)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[0, 0].set_title(f"E2E time by platform and cores: {workload}")
    fig.tight_layout()
    return Figure(key, f"Fig. 4-like: {workload}",
                  "Mean E2E time per request of each scenario, split into its phases "
                  "(pre-processing, inference, post-processing), grouped by platform with the "
                  "cores N on the axis, one row per mode and processor, with the 95% CI of the "
                  "E2E mean over runs.", to_svg(fig, key))


# -- Fig. 5 --------------------------------------------------------------------------------
def _speedup_bars(ax, names: list[str], series: dict[str, list[tuple[float, float, float]]]) -> None:
    n = len(series)
    w = 0.8 / n
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (n - 1) / 2) * w for j in range(len(names))]
        mid = [v[0] for v in values]
        err = [[max(0.0, v[0] - v[1]) if math.isfinite(v[1]) else 0 for v in values],
               [max(0.0, v[2] - v[0]) if math.isfinite(v[2]) else 0 for v in values]]
        ax.bar(xs, mid, w, color=MEASURE_COLORS.get(label, "#999999"), label=label)
        ax.errorbar(xs, mid, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.legend(fontsize=8, frameon=False)


def fig5_gpu(speedups: Sequence[GpuSpeedup]) -> Figure:
    if not speedups:
        return Figure("fig5", "Fig. 5-like: GPU speedup, inference only vs E2E",
                      "The paper's Fig. 5 compares the GPU's speedup over the CPU for the "
                      "inference operation alone and for E2E requests.", None, needs="GPU runs")
    speedups = sorted(speedups, key=lambda g: _order(g.gpu))
    names = [f"{g.gpu.name} · {g.gpu.app}" for g in speedups]
    infer = [GpuSpeedup.speedup(g.inference_only or g.infer_phase) for g in speedups]
    e2e = [GpuSpeedup.speedup(g.e2e) for g in speedups]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2.5), 4.0))
    _speedup_bars(ax, names, {"inference only": infer, "E2E": e2e})
    ax.set_ylabel("speedup of GPU over CPU (x)")
    ax.set_xlabel("GPU scenario (PLATFORM/CORES/MODE/PROC) · app")
    ax.set_title("GPU speedup: inference only vs E2E")
    return Figure("fig5", "Fig. 5-like: GPU speedup, inference only vs E2E",
                  "CPU time over GPU time at the same platform, cores and mode; 'inference only' "
                  "uses --inference-only runs where present, else the inference phase of the E2E "
                  "runs. Error bars: 95% CI.", to_svg(fig, "fig5"))


def fig5_cpu_scaleup(pairs: Sequence[tuple[Cell, Cell]], reference: tuple[Cell, Cell], key: str,
                     workload: str, judge: Judge) -> Figure:
    """The Fig. 5 contrast on CPU: each scenario's speedup over ``reference`` measured by
    inference only and by E2E (pairs are (E2E cell, inference-only cell))."""
    ref_e, ref_i = reference
    names, e2e, infer = [], [], []
    for e, i in sorted(pairs, key=lambda p: _order(p[0])):
        names.append(e.name)
        if e is ref_e:  # the reference against itself: exactly 1x
            e2e.append((1.0, 1.0, 1.0))
            infer.append((1.0, 1.0, 1.0))
            continue
        e2e.append(GpuSpeedup.speedup(compare_cells(judge, e, ref_e)))
        infer.append(GpuSpeedup.speedup(compare_cells(judge, i, ref_i, "infer")))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2.5), 4.0))
    _speedup_bars(ax, names, {"inference only": infer, "E2E": e2e})
    ax.set_ylabel(f"speedup over {ref_e.name} (x)")
    ax.set_xlabel("scenario (PLATFORM/CORES/MODE/PROC)")
    ax.set_title(f"Speedup, inference only vs E2E: {workload}")
    return Figure(key, f"Fig. 5-like on CPU: {workload}",
                  f"Each scenario's speedup over {ref_e.name}, measured with --inference-only runs "
                  "(inference phase) and with E2E runs. Where the two differ, an inference-only "
                  "benchmark would mislead (best practice 5). Error bars: 95% CI.", to_svg(fig, key))


# -- Fig. 9 --------------------------------------------------------------------------------
def fig9_host_load(pairs: Sequence[tuple[Cell, Cell]]) -> Figure:
    """(idle, busy) cells of the same scenario; one panel per workload (their scales differ)."""
    title = "Fig. 9-like: busy vs idle host"
    caption = ("Mean E2E per request with the host idle and busy (no idle host cores), per "
               "scenario, one panel per app; error bars: 95% CI.")
    if not pairs:
        return Figure("fig9", title, caption, None,
                      needs="runs of the same scenarios with host_load idle and busy")
    panels: dict[str, list[tuple[Cell, Cell]]] = {}
    for p in sorted(pairs, key=lambda p: _order(p[0])):
        panels.setdefault(p[0].workload_label, []).append(p)
    panels = dict(list(sorted(panels.items()))[:4])
    widths = [max(2.5, 0.55 * len(v) + 1.2) for v in panels.values()]
    fig, axes = plt.subplots(1, len(panels), figsize=(min(11.0, sum(widths) + 1), 4.0), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    w = 0.38
    for ax, (workload, group) in zip(axes[0], panels.items()):
        for k, (label, idx) in enumerate((("idle host", 0), ("busy host", 1))):
            xs = [j + (k - 0.5) * w for j in range(len(group))]
            vals = [p[idx].summary.e2e_mean_ms for p in group]
            ax.bar(xs, vals, w, color=MEASURE_COLORS[label], label=label)
            ax.errorbar(xs, vals, yerr=_time_err([p[idx] for p in group]), fmt="none", ecolor="black",
                        capsize=3, lw=1)
        ax.set_ylim(bottom=0)
        ax.set_xticks(range(len(group)))
        ax.set_xticklabels([p[0].name for p in group], rotation=35, ha="right")
        ax.set_title(workload, fontsize=9)
    axes[0, 0].set_ylabel("E2E time per request (ms)")
    axes[0, -1].legend(fontsize=8, frameon=False)
    fig.supxlabel("scenario (PLATFORM/CORES/MODE/PROC)", fontsize=10)
    fig.tight_layout()
    return Figure("fig9", title, caption, to_svg(fig, "fig9"))


# -- Figs. 10 and 11 -----------------------------------------------------------------------
def fig_normalised(groups: dict[str, dict[str, Cell]], config: str, key: str, title: str,
                   caption: str, judge: Judge) -> Figure:
    """``groups``: workload label -> platform -> cell, all at one cores/mode/processor.
    Each bar is the platform's E2E over BM's (or the fastest platform's where BM is absent)."""
    workloads = sorted(groups)
    platforms = [p for p in PLATFORM_ORDER if any(p in g for g in groups.values())]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(workloads) * max(1, len(platforms)) / 2 + 3), 4.0))
    w = 0.8 / max(1, len(platforms))
    for k, platform in enumerate(platforms):
        xs, vals, lo, hi = [], [], [], []
        for j, wl in enumerate(workloads):
            cells = groups[wl]
            if platform not in cells:
                continue
            ref = cells.get("BM") or min(cells.values(), key=lambda c: c.summary.e2e_mean_ms)
            c = cells[platform]
            if c is ref:
                rel = _ci(c.summary.e2e_ci95_ms) / c.summary.e2e_mean_ms
                v, l, h = 1.0, 1 - rel, 1 + rel
            else:
                comp = compare_cells(judge, c, ref)
                v = comp.ratio if math.isfinite(comp.ratio) else c.summary.e2e_mean_ms / ref.summary.e2e_mean_ms
                ci_lo, ci_hi = comp.result.ci
                l = ci_lo if math.isfinite(ci_lo) else v
                h = ci_hi if math.isfinite(ci_hi) else v
            xs.append(j + (k - (len(platforms) - 1) / 2) * w)
            vals.append(v)
            lo.append(min(v, max(0.0, v - l)))
            hi.append(max(0.0, h - v))
        ax.bar(xs, vals, w, color=PLATFORM_COLORS.get(platform, "#999999"), label=platform)
        ax.errorbar(xs, vals, yerr=[lo, hi], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads, rotation=15, ha="right")
    ax.set_xlabel("application (workload)")
    ax.set_ylabel("E2E time normalised to BM (1 = BM)")
    ax.set_title(f"Normalised E2E across apps at {config}")
    ax.legend(title="platform", fontsize=8, frameon=False)
    return Figure(key, title, caption, to_svg(fig, key))
