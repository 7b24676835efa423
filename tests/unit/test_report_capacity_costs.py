"""The report's capacity and costs sections, on synthetic probes and footprints (the browser
test opens them in Chromium)."""
from __future__ import annotations

import re

import pytest

from deploybench.report.build import analyze, render_html
from deploybench.report.capacity import capacity_section
from deploybench.report.costs import costs_section
from deploybench.synthetic import synthetic_capacity, synthetic_runs, with_footprints


@pytest.fixture(scope="module")
def records():
    runs = []
    for name, mean in (("BM/1/PIN/CPU", 10.0), ("CN/1/PIN/CPU", 10.1), ("VM/1/PIN/CPU", 10.6)):
        runs += with_footprints(synthetic_runs(name, mean, accel="kvm" if name.startswith("VM") else None))
    probes = (synthetic_capacity("BM/1/PIN/CPU", 8.0) + synthetic_capacity("CN/1/PIN/CPU", 8.6)
              + synthetic_capacity("MVM/1/PIN/CPU", 450, accel="tcg", percentile=90, slo_ms=3000))
    return runs + probes


@pytest.fixture(scope="module")
def html(records):
    return render_html(analyze(records))


def test_the_capacity_section_has_a_chart_per_app_and_slo_and_a_capacity_per_core_table(records, html):
    section = capacity_section(records)
    assert [a.name for a in section.answers] == ["BM/1/PIN/CPU", "CN/1/PIN/CPU", "MVM/1/PIN/CPU"]
    assert [f.key for f in section.figures] == ["capacity-0-ic", "capacity-1-ic-tcg"]
    assert "(emulated: TCG)" in section.figures[1].title
    part = html.split('<section id="capacity">', 1)[1].split("</section>", 1)[0]
    assert part.count('<svg class="figure"') == 2
    assert "SLO 100 ms" in part and "SLO 3000 ms" in part  # the SLO is a line with a label
    assert "Capacity per core" in part
    bm = next(a for a in section.answers if a.name == "BM/1/PIN/CPU")
    assert f"{bm.capacity_qps:.3f}" in part and "confirmed" in part
    assert "<strong>(TCG)</strong>" in part and "emulated" in part


def test_probes_stay_out_of_the_latency_analysis(records, html):
    a = analyze(records)
    assert all(c.scenario.target_qps is None for c in a.cells)
    assert len(a.recommendations) == 1  # the Offline workload only, not one per probed rate


def test_the_costs_section_lists_every_scenario_and_the_tie_break_order(records, html):
    section = costs_section(records)
    assert [c.name for c in section.rows] == ["BM/1/PIN/CPU", "CN/1/PIN/CPU", "VM/1/PIN/CPU"]
    vm = section.rows[-1]
    assert vm.guest_kernel_mib and vm.vmm_overhead_mib and vm.memory_beyond_worker_mib > 600
    assert section.tie_break["ic (tiny, torch, 32 req)"][-1] == ["VM/1/PIN/CPU"]
    part = html.split('<section id="costs">', 1)[1].split("</section>", 1)[0]
    assert "What each platform costs" in part and "Tie-break among equivalent scenarios" in part
    assert "<strong>ic (tiny, torch, 32 req)</strong>: BM/1/PIN/CPU &lt; CN/1/PIN/CPU &lt; VM/1/PIN/CPU" in part
    assert "No energy: this host has no readable RAPL counters" in part


def test_an_empty_store_says_what_to_run():
    html = render_html(analyze(synthetic_runs("BM/1/PIN/CPU", 10.0)))
    assert "No capacity search in these runs: run e.g. <code>deploybench capacity" in html
    assert "No round recorded a footprint yet" in html


def test_scenarios_of_the_same_cost_are_joined_in_the_tie_break_order_of_their_workload():
    runs = []
    for name, mean in (("BM/1/PIN/CPU", 10.0), ("BM/1/VNL/CPU", 10.05), ("BM/2/PIN/CPU", 9.0)):
        runs += with_footprints(synthetic_runs(name, mean))  # the same footprint: cores alone decide
    runs += with_footprints(synthetic_runs("BM/1/PIN/CPU", 4.0, inference_only=True))  # never a candidate
    section = costs_section(runs)
    assert section.tie_break == {"ic (tiny, torch, 32 req)": [["BM/1/PIN/CPU", "BM/1/VNL/CPU"], ["BM/2/PIN/CPU"]]}
    part = render_html(analyze(runs)).split('<section id="costs">', 1)[1].split("</section>", 1)[0]
    assert "BM/1/PIN/CPU = BM/1/VNL/CPU &lt; BM/2/PIN/CPU" in part
