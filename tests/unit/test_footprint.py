"""Footprints: what a round's host-side samples add up to (worker, shim, engine, QEMU and
its guest), /proc read right, and the tie-break order of equivalent scenarios."""
from __future__ import annotations

import os
from pathlib import Path

from deploybench import footprint as fp
from deploybench.footprint import CpuSample, FootprintPart, GuestMemory, MemorySample, assemble
from deploybench.platforms import procfs
from deploybench.synthetic import synthetic_runs


def test_bare_metal_costs_nothing_beyond_its_worker():
    worker = FootprintPart(fp.WORKER, 10)
    round_ = assemble([worker], {10: CpuSample(1.0)}, {10: CpuSample(1.5)},
                      {10: MemorySample(200_000, 250_000)}, {"max_rss_kb": 1})
    assert round_.worker_peak_rss_kb == 250_000 and round_.worker_rss_seen_from == "host"
    assert round_.memory_kb == 250_000 and round_.memory_beyond_worker_kb == 0
    assert round_.worker_cpu_s == 0.5 and round_.outside_cpu_s == 0.0
    assert fp.RoundFootprint.from_json(round_.to_json()) == round_


def test_an_engine_container_adds_its_shim_and_client_and_lists_shared_daemons_apart():
    parts = [FootprintPart(fp.WORKER, 10), FootprintPart(fp.SHIM, 11, "containerd-shim-runc-v2"),
             FootprintPart(fp.CLIENT, 12, "docker"), FootprintPart(fp.ENGINE, 13, "dockerd", shared=True)]
    before = {10: CpuSample(1.0), 11: CpuSample(0.1), 12: CpuSample(0.2), 13: CpuSample(5.0)}
    after = {10: CpuSample(2.0), 11: CpuSample(0.12), 12: CpuSample(0.3), 13: CpuSample(5.05)}
    memory = {10: MemorySample(250_000, 250_000), 11: MemorySample(8_000, 8_000),
              12: MemorySample(30_000, 30_000), 13: MemorySample(80_000, 80_000)}
    r = assemble(parts, before, after, memory, {})
    assert r.memory_kb == 250_000 + 8_000 + 30_000  # the daemon serves every container: apart
    assert r.shared_rss_kb == {"engine (dockerd)": 80_000}
    assert r.memory_beyond_worker_kb == 38_000
    assert r.outside_cpu_s == sum(r.outside_cpu_s_by_role.values())
    assert abs(r.outside_cpu_s - (0.02 + 0.1 + 0.05)) < 1e-9


def test_a_guest_splits_into_its_kernel_its_page_cache_and_the_vmms_overhead():
    meminfo = {"MemTotal": 1_950_000, "MemFree": 1_200_000, "Buffers": 1_000, "Cached": 400_000,
               "Mapped": 150_000, "AnonPages": 260_000, "Slab": 40_000, "KernelStack": 2_000,
               "PageTables": 3_000, "Percpu": 500}
    qemu = FootprintPart(fp.VMM, 20, "qemu-system-x86_64", vcpu_threads=(21,))
    r = assemble([qemu], {20: CpuSample(10.0, vcpu_s=8.0)}, {20: CpuSample(14.0, vcpu_s=11.0)},
                 {20: MemorySample(1_100_000, 1_100_000)},
                 {"max_rss_kb": 255_000, "system_meminfo_kb": meminfo}, ram_mib=2048)
    g = r.guest
    assert g.ram_kb == 2048 * 1024
    assert g.kernel_kb == (2048 * 1024 - 1_950_000) + 40_000 + 2_000 + 3_000 + 500
    assert g.page_cache_kb == 401_000 and g.page_cache_unmapped_kb == 251_000
    assert g.in_use_kb == 2048 * 1024 - 1_200_000
    assert r.vmm_overhead_kb == 1_100_000 - g.in_use_kb
    assert r.worker_peak_rss_kb == 255_000 and r.worker_rss_seen_from == "guest"
    assert r.memory_kb == 1_100_000 and r.memory_beyond_worker_kb == 1_100_000 - 255_000
    assert r.worker_cpu_s == 3.0  # the vCPU threads: the guest's own
    assert r.outside_cpu_s_by_role == {"vmm (non-vCPU threads)": 1.0}
    assert GuestMemory.from_json(g.to_json()) == g
    assert fp.RoundFootprint.from_json(r.to_json()) == r


def test_procfs_reads_memory_cpu_parents_and_socket_servers(tmp_path):
    proc = tmp_path / "proc"
    (proc / "7" / "task" / "7").mkdir(parents=True)
    (proc / "7" / "task" / "8").mkdir(parents=True)
    (proc / "7" / "status").write_text("Name:\tx\nVmHWM:\t  300 kB\nVmRSS:\t  200 kB\nRssAnon:\t 150 kB\n")
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    stat = "7 (a (weird) name) S 3 7 7 0 -1 0 0 0 0 0 {u} {s} 0 0 20 0 2 0"
    (proc / "7" / "stat").write_text(stat.format(u=150, s=50))
    (proc / "7" / "task" / "7" / "stat").write_text(stat.format(u=100, s=0))
    (proc / "7" / "task" / "8" / "stat").write_text(stat.format(u=20, s=10))
    (proc / "7" / "task" / "7" / "children").write_text("9 12")
    (proc / "7" / "task" / "8" / "children").write_text("")
    (proc / "7" / "comm").write_text("qemu\n")
    mem = procfs.memory(7, proc)
    assert (mem.rss_kb, mem.peak_rss_kb, mem.anon_kb) == (200, 300, 150)
    assert procfs.process_cpu_s(7, proc) == 200 * tick
    assert procfs.threads_cpu_s(7, proc) == {7: 100 * tick, 8: 30 * tick}
    assert procfs.parent(7, proc) == 3 and procfs.command_name(7, proc) == "qemu"
    assert procfs.children(7, proc) == [9, 12]
    assert procfs.memory(99, proc) is None and procfs.process_cpu_s(99, proc) is None
    (proc / "net").mkdir()
    (proc / "net" / "unix").write_text(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000: 00000002 00000000 00010000 0001 01 4242 /tmp/d/docker.sock\n"
        "0000: 00000003 00000000 00000000 0001 03 4343 /tmp/d/docker.sock\n")
    (proc / "7" / "fd").mkdir()
    os.symlink("socket:[4242]", proc / "7" / "fd" / "3")
    assert procfs.unix_socket_server("/tmp/d/docker.sock", proc) == 7
    assert procfs.unix_socket_server("/tmp/other.sock", proc) is None


def test_this_process_reads_itself():
    assert procfs.memory(os.getpid()).rss_kb > 0
    assert procfs.process_cpu_s(os.getpid()) > 0
    assert procfs.parent(os.getpid()) == os.getppid()


def _with_footprint(records, memory_kb, worker_kb, outside_s, latency_s):
    for r in records:
        r.platform["footprint"] = {"schema": 1, "worker_peak_rss_kb": worker_kb, "worker_rss_seen_from": "host",
                                   "memory_kb": memory_kb, "worker_cpu_s": 1.0, "outside_cpu_s": outside_s}
        r.platform["start_latency_s"] = latency_s
    return records


def _order(*runs):
    costs = [fp.scenario_cost(r) for r in runs]
    return [[runs[i][0].scenario.name for i in group] for group in fp.cost_order(costs)]


def test_the_tie_break_puts_fewer_cores_then_less_isolation_then_less_memory_first():
    bm = _with_footprint(synthetic_runs("BM/1/PIN/CPU", 10.0), 250_000, 250_000, 0.0, 0.5)
    cn = _with_footprint(synthetic_runs("CN/1/PIN/CPU", 10.0), 250_300, 250_000, 0.0, 0.6)  # +0.3 MiB: noise
    podman = _with_footprint(synthetic_runs("CN/1/VNL/CPU", 10.0), 290_000, 250_000, 0.01, 0.9)
    vm = _with_footprint(synthetic_runs("VM/1/PIN/CPU", 10.0), 1_100_000, 250_000, 0.5, 20.0)
    bm2 = _with_footprint(synthetic_runs("BM/2/PIN/CPU", 10.0), 250_000, 250_000, 0.0, 0.5)
    assert _order(vm, bm2, podman, cn, bm) == [["BM/1/PIN/CPU"], ["CN/1/PIN/CPU"], ["CN/1/VNL/CPU"],
                                                ["VM/1/PIN/CPU"], ["BM/2/PIN/CPU"]]
    costs = [fp.scenario_cost(r) for r in (cn, bm)]
    assert fp.tie_break(costs) == ([1], {0: "CN isolates more than BM"})
    costs = [fp.scenario_cost(r) for r in (podman, cn)]
    left, why = fp.tie_break(costs)
    assert left == [1] and why[0].startswith("39 MiB beyond the worker against 0 MiB")
    old = synthetic_runs("BM/1/VNL/CPU", 10.0)  # stored before footprints: it drops out at memory
    left, why = fp.tie_break([fp.scenario_cost(old), fp.scenario_cost(bm)])
    assert left == [1] and why[0].startswith("no memory beyond the worker recorded")
    cost = fp.scenario_cost(vm)
    assert cost.memory_beyond_worker_mib == (1_100_000 - 250_000) / 1024
    assert abs(cost.outside_cpu_ms_per_request - 0.5 * 1e3 / 32) < 1e-9


def test_a_start_latency_within_the_resolution_does_not_decide_a_tie():
    # BM/1/PIN against BM/1/VNL in the demo: 0.96 against 0.97 s, what two launches of one differ by
    pin = _with_footprint(synthetic_runs("BM/1/PIN/CPU", 10.0), 250_000, 250_000, 0.0, 0.96)
    vnl = _with_footprint(synthetic_runs("BM/1/VNL/CPU", 10.0), 250_000, 250_000, 0.0, 0.97)
    assert _order(vnl, pin) == [["BM/1/VNL/CPU", "BM/1/PIN/CPU"]]
    slow = _with_footprint(synthetic_runs("BM/1/VNL/CPU", 10.0), 250_000, 250_000, 0.0, 1.20)
    assert _order(slow, pin) == [["BM/1/PIN/CPU"], ["BM/1/VNL/CPU"]]  # 25% slower to start: it counts
    assert fp.tie_break([fp.scenario_cost(slow), fp.scenario_cost(pin)])[1] == \
        {0: "a start in 1.20 s against a start in 0.96 s"}


def test_memory_and_cpu_outside_the_worker_count_only_beyond_their_resolution():
    a = _with_footprint(synthetic_runs("CN/1/PIN/CPU", 10.0), 300_000, 250_000, 0.0, 0.6)  # 48.8 MiB
    b = _with_footprint(synthetic_runs("CN/1/VNL/CPU", 10.0), 303_000, 250_000, 0.0, 0.6)  # +2.9 MiB < 10%
    assert _order(a, b) == [["CN/1/PIN/CPU", "CN/1/VNL/CPU"]]
    c = _with_footprint(synthetic_runs("CN/1/VNL/CPU", 10.0), 300_000, 250_000, 0.32, 0.6)  # 10 ms/req
    assert _order(c, a) == [["CN/1/PIN/CPU"], ["CN/1/VNL/CPU"]]


def test_a_recommendation_between_equivalent_deployments_keeps_the_fastest_when_they_cost_the_same():
    from deploybench.findings import build_cells
    from deploybench.recommend import recommend

    pin = _with_footprint(synthetic_runs("BM/1/PIN/CPU", 10.0, runs=5, run_cv=0.002), 250_000, 250_000, 0.0, 0.96)
    vnl = _with_footprint(synthetic_runs("BM/1/VNL/CPU", 9.99, runs=5, run_cv=0.002), 250_000, 250_000, 0.0, 0.97)
    [rec] = recommend(build_cells(pin + vnl))
    assert rec.decided and rec.best.name == "BM/1/VNL/CPU"
    assert rec.recommended.name == "BM/1/VNL/CPU" and rec.tie_reason == ""
    assert "none of them cheaper beyond the footprint's noise, so the fastest stays" in rec.text
    assert rec.to_json()["tie_break"] is None


def test_the_recommendation_and_the_report_break_ties_by_one_rule():
    from deploybench.findings import build_cells
    from deploybench.recommend import recommend
    from deploybench.report.costs import costs_section

    bm = _with_footprint(synthetic_runs("BM/1/VNL/CPU", 10.0, runs=5, run_cv=0.002), 250_000, 250_000, 0.0, 1.0)
    cn = _with_footprint(synthetic_runs("CN/1/VNL/CPU", 9.99, runs=5, run_cv=0.002), 250_000, 250_000, 0.0, 0.9)
    [rec] = recommend(build_cells(bm + cn))
    assert rec.best.name == "CN/1/VNL/CPU" and rec.recommended.name == "BM/1/VNL/CPU"  # isolation, not start
    assert "wins the tie (CN/1/VNL/CPU: CN isolates more than BM)" in rec.text
    section = costs_section(bm + cn)
    assert list(section.tie_break.values()) == [[["BM/1/VNL/CPU"], ["CN/1/VNL/CPU"]]]


def test_a_recommendation_between_equivalent_deployments_of_one_platform_says_the_footprint_decided():
    from deploybench.findings import build_cells
    from deploybench.recommend import recommend

    lean = _with_footprint(synthetic_runs("CN/1/PIN/CPU", 10.0, runs=5, run_cv=0.002), 250_000, 250_000, 0.0, 0.6)
    heavy = _with_footprint(synthetic_runs("CN/1/VNL/CPU", 9.99, runs=5, run_cv=0.002), 290_000, 250_000, 0.01, 0.9)
    [rec] = recommend(build_cells(lean + heavy))
    assert rec.decided and rec.best.name == "CN/1/VNL/CPU"  # the faster by a hair
    assert rec.recommended.name == "CN/1/PIN/CPU"  # equivalent and 39 MiB lighter
    assert "wins the tie (CN/1/VNL/CPU: 39 MiB beyond the worker against 0 MiB beyond the worker)" in rec.text
    assert rec.to_json()["tie_break"].startswith("39 MiB beyond the worker")


def test_costs_list_one_row_per_scenario_in_platform_order():
    records = (_with_footprint(synthetic_runs("VM/1/PIN/CPU", 10.0), 1_000_000, 250_000, 0.5, 20.0)
               + _with_footprint(synthetic_runs("BM/1/PIN/CPU", 10.0), 250_000, 250_000, 0.0, 0.5))
    rows = fp.costs(records)
    assert [c.platform for c in rows] == ["BM", "VM"] and rows[0].runs == 3
    assert rows[0].to_json()["memory_beyond_worker_mib"] == 0.0


def test_containers_through_different_launchers_are_costed_apart():
    runc = _with_footprint(synthetic_runs("CN/1/PIN/CPU", 10.0), 250_000, 250_000, 0.0, 0.5)
    docker = _with_footprint(synthetic_runs("CN/1/PIN/CPU", 10.0, seed=1), 300_000, 250_000, 0.01, 2.0)
    for r in runc:
        r.platform["runtime"] = "runc"
    for r in docker:
        r.platform.update(engine="docker", runtime="docker")
    rows = fp.costs(runc + docker)
    assert [c.display for c in rows] == ["CN/1/PIN/CPU (docker)", "CN/1/PIN/CPU (runc)"]
    assert {c.launcher: c.memory_beyond_worker_mib for c in rows} == {"docker": 50_000 / 1024, "runc": 0.0}


def test_footprint_rows_of_one_deployment_say_what_sets_them_apart():
    import dataclasses

    from deploybench.scenario import PageCache

    warm = _with_footprint(synthetic_runs("BM/1/PIN/CPU", 10.0), 250_000, 250_000, 0.0, 0.5)
    cold = [dataclasses.replace(r, scenario=r.scenario.with_(page_cache=PageCache.COLD))
            for r in _with_footprint(synthetic_runs("BM/1/PIN/CPU", 12.0), 250_000, 250_000, 0.0, 0.5)]
    assert sorted(c.display for c in fp.costs(warm + cold)) == ["BM/1/PIN/CPU", "BM/1/PIN/CPU cold"]


def test_start_latency_counts_only_launches_that_started_alone():
    records = _with_footprint(synthetic_runs("BM/1/PIN/CPU", 10.0, runs=4), 250_000, 250_000, 0.0, 1.2)
    for r in records[2:]:  # loaded beside three other sessions: 2.5 s is the wave's, not BM's
        r.platform.update(start_latency_s=2.5, launched_with=4)
    records[0].platform["launched_with"] = 1
    assert fp.scenario_cost(records).start_latency_s == 1.2
