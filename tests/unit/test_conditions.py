"""Host conditions: busy neighbours (started, pinned, always stopped), cold page cache,
the data device, I/O limits on a fake cgroup tree, the meter of other CPU use."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from .sweep_fakes import QUIET, FakePlatform

from deploybench import conditions
from deploybench.platforms.cpu import CgroupManager, CpuLimits, IoLimits
from deploybench.scenario import Scenario, Storage
from deploybench.execute import BlockSet, Contender, run_block_set


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_neighbour_plan_pin_takes_the_other_cores_vnl_the_spare_capacity():
    pin = Scenario.parse("BM/1/PIN/CPU")
    vnl = Scenario.parse("BM/1/VNL/CPU")
    assert conditions.neighbour_plan(pin, [0, 1, 2, 3], [2]) == (3, [0, 1, 3])
    assert conditions.neighbour_plan(vnl, [0, 1, 2, 3], None) == (3, None)
    assert conditions.neighbour_plan(Scenario.parse("BM/4/VNL/CPU"), [0, 1, 2, 3], None) == (0, None)


def test_busy_host_starts_pinned_neighbours_and_stops_them(host):
    if host.cores < 2:
        pytest.skip("needs 2 cores to have a core to load")
    scenario = Scenario.parse("BM/1/PIN/CPU", host_load="busy")
    cpu = host.usable_cpus[0]
    with conditions.applied(scenario, usable=host.usable_cpus, scenario_cpus=[cpu]) as (facts, warnings):
        pids = facts["neighbour_pids"]
        assert facts["neighbours"] == host.cores - 1 == len(pids)
        assert all(alive(p) for p in pids)
        time.sleep(0.2)
        for pid in pids:
            assert cpu not in os.sched_getaffinity(pid)
        assert warnings == []
    assert not any(alive(p) for p in pids)


def test_neighbours_are_stopped_when_the_run_raises(host):
    scenario = Scenario.parse("BM/1/VNL/CPU", host_load="busy")
    pids = []
    with pytest.raises(KeyboardInterrupt):
        with conditions.applied(scenario, usable=host.usable_cpus, scenario_cpus=None) as (facts, _):
            pids = facts["neighbour_pids"]
            raise KeyboardInterrupt
    assert len(pids) == max(0, host.cores - 1)
    assert not any(alive(p) for p in pids)


def test_neighbours_exit_by_themselves_when_the_sweep_dies():
    code = ("import sys, os; sys.path.insert(0, %r)\n"
            "from deploybench.conditions import Neighbours\n"
            "n = Neighbours(1, None); n.start(); print(n.pids[0], flush=True); os._exit(9)\n"
            % str(Path(conditions.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_run_one_with_busy_host_records_and_cleans_up_neighbours(tmp_path, host):
    scenario = Scenario.parse("BM/1/VNL/CPU", host_load="busy")
    seen = {}

    platform = FakePlatform()
    original = platform.open

    def opening(scenario, setup):
        session = original(scenario, setup)
        measure = session.measure

        def watched(job, timeout_s):
            seen["alive"] = _children()
            return measure(job, timeout_s)

        session.measure = watched
        return session

    platform.open = opening
    (record,) = _records(scenario, platform, tmp_path)
    facts = record.host["conditions"]
    assert facts["host_load"] == "busy" and facts["neighbours"] == host.cores - 1
    assert facts["neighbour_cpus"] == "floating"
    assert set(facts["neighbour_pids"]) <= set(seen["alive"])
    assert not any(alive(p) for p in facts["neighbour_pids"])


def _records(scenario, platform, tmp_path):
    from deploybench.store import Store

    with Store(tmp_path / "c.db") as store:
        return run_block_set(BlockSet((Contender(scenario, platform, tmp_path, QUIET),), blocks=1),
                             store.add).records


def _children() -> list[int]:
    me = os.getpid()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def test_busy_host_with_every_core_taken_says_nothing_to_load(tmp_path, host):
    scenario = Scenario.parse(f"BM/{host.cores}/VNL/CPU", host_load="busy")
    (record,) = _records(scenario, FakePlatform(), tmp_path)
    assert record.host["conditions"]["neighbours"] == 0
    assert "condition_unmet" in record.warning_codes


def test_cold_page_cache_drops_caches_and_records_it(tmp_path):
    target = tmp_path / "drop_caches"
    target.write_text("")
    scenario = Scenario.parse("BM/1/PIN/CPU", page_cache="cold")
    with conditions.applied(scenario, usable=[0], scenario_cpus=[0],
                            drop_caches_path=target) as (facts, warnings):
        pass
    assert target.read_text() == "3"
    assert facts["caches_dropped"] is True and warnings == []


def test_cold_page_cache_not_permitted_is_recorded_with_a_warning(tmp_path):
    scenario = Scenario.parse("BM/1/PIN/CPU", page_cache="cold")
    with conditions.applied(scenario, usable=[0], scenario_cpus=[0],
                            drop_caches_path=tmp_path / "missing" / "drop_caches") as (facts, warnings):
        pass
    assert facts["caches_dropped"] is False
    assert "cannot drop the page cache" in facts["caches_error"]
    assert [w["code"] for w in warnings] == ["condition_unmet"]


def test_warm_cache_does_not_drop(tmp_path):
    target = tmp_path / "drop_caches"
    target.write_text("")
    with conditions.applied(Scenario.parse("BM/1/PIN/CPU"), usable=[0], scenario_cpus=[0], drop_caches_path=target) as (facts, _):
        pass
    assert target.read_text() == "" and "caches_dropped" not in facts


def test_the_meter_counts_only_the_cpu_others_used_during_the_round(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert conditions._cpu_times(stat) == (800, 1000)
    clock = iter([100.0, 101.0])
    monkeypatch.setattr(conditions.time, "monotonic", lambda: next(clock))
    meter = conditions.HostMeter(stat)
    with meter:
        ticks = os.sysconf("SC_CLK_TCK")
        # one second on 2 CPUs: 1.5 s of CPU were busy, 0.5 s of it the session's own
        busy = int(1.5 * ticks)
        stat.write_text(f"cpu  {100 + busy} 0 100 {800 + 2 * ticks - busy} 0 0 0 0 0 0\n")
    assert meter.other_share(500.0, 2) == pytest.approx(0.5, abs=0.02)
    assert meter.other_share(None, 2) is None
    assert conditions.busy_warning(0.5, 0.25)[0]["code"] == "host_busy"
    assert conditions.busy_warning(0.1, 0.25) == []


def test_data_device_finds_a_whole_disk_or_says_why(tmp_path):
    dev, name, problem = conditions.data_device(tmp_path / "not" / "yet")
    if dev is None:
        assert "not on a block device" in problem
    else:
        major, minor = dev.split(":")
        assert major.isdigit() and minor.isdigit() and name
        assert not (Path("/sys/dev/block") / dev / "partition").exists()
    limits, problem = conditions.io_limits_for(tmp_path, 1_000_000, 100, device="8:0")
    assert limits == IoLimits("8:0", 1_000_000, 100, "8:0") and problem is None


def fake_v1_tree(root: Path) -> Path:
    for controller in ("cpu", "cpuset", "cpuacct", "blkio"):
        (root / controller).mkdir(parents=True)
    (root / "cpuset" / "cpuset.mems").write_text("0")
    return root


def test_io_limits_are_written_to_blkio_v1_and_io_max_v2_once_the_session_throttles(tmp_path):
    """The group holds the worker from its start, but its read limits are set later (when
    the worker is ready: only rounds read through them)."""
    root = fake_v1_tree(tmp_path / "v1")
    manager = CgroupManager(root)
    io = IoLimits("254:0", read_bps=100_000_000, read_iops=150, device_name="vda")
    cg = manager.create(CpuLimits([0], None), name="deploybench-t", io_limits=io)
    blkio = root / "blkio" / "deploybench-t"
    assert blkio.is_dir() and not (blkio / "blkio.throttle.read_iops_device").exists()
    cg.throttle_io()
    assert (blkio / "blkio.throttle.read_bps_device").read_text() == "254:0 100000000"
    assert (blkio / "blkio.throttle.read_iops_device").read_text() == "254:0 150"
    assert blkio / "cgroup.procs" in cg.procs_files
    assert blkio in manager.leftovers()
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu cpuset io")
    (v2 / "cgroup.subtree_control").write_text("cpu cpuset")
    manager2 = CgroupManager(v2)
    cg2 = manager2.create(CpuLimits([0], 1.0), name="deploybench-u", io_limits=io)
    assert not (v2 / "deploybench-u" / "io.max").exists()
    cg2.throttle_io()
    assert (v2 / "deploybench-u" / "io.max").read_text() == "254:0 rbps=100000000 riops=150"
    assert (v2 / "cgroup.subtree_control").read_text() == "+io"


# -- evidence that a condition reached the timed requests -------------------------------------
def _codes(scenario, environment):
    return [w["code"] for w in conditions.evidence_warnings(scenario, environment, {})]


def test_a_cold_or_throttled_round_that_read_nothing_from_the_disk_is_ineffective():
    cold = Scenario.parse("BM/1/PIN/CPU", page_cache="cold")
    throttled = cold.with_(storage=Storage.THROTTLED)
    for scenario in (cold, throttled):
        assert _codes(scenario, {"io_read_bytes": 0, "input_reads": 16, "input_read_ms": 0.2}) == \
            ["condition_ineffective"]
    assert _codes(cold, {"io_read_bytes": 2_000_000, "input_reads": 16, "input_read_ms": 0.8}) == []


def test_a_throttle_that_never_held_an_input_read_back_is_ineffective():
    throttled = Scenario.parse("BM/1/PIN/CPU", page_cache="cold", storage="throttled")
    fast = {"io_read_bytes": 2_000_000, "input_reads": 16, "input_read_ms": 16 * 0.3}
    assert _codes(throttled, fast) == ["condition_ineffective"]
    held = {**fast, "input_read_ms": 16 * 15.0}
    assert _codes(throttled, held) == []
    # an app that reads its inputs otherwise: the bytes read are the only evidence
    assert _codes(throttled, {"io_read_bytes": 2_000_000, "input_reads": 0, "input_read_ms": 0.0}) == []


def test_warm_native_rounds_need_no_evidence():
    assert _codes(Scenario.parse("BM/1/PIN/CPU"), {"io_read_bytes": 0}) == []


def test_input_reads_time_and_count_what_the_app_reads(tmp_path):
    from deploybench.apps.base import InputReads

    f = tmp_path / "x.bin"
    f.write_bytes(b"0123456789")
    reads = InputReads()
    assert reads.read(f) == b"0123456789" and reads.read(f, 2, 3) == b"234"
    data = reads.to_json()
    assert data["input_reads"] == 2 and data["input_read_bytes"] == 13 and data["input_read_ms"] >= 0
    reads.reset()
    assert reads.to_json() == {"input_read_ms": 0.0, "input_reads": 0, "input_read_bytes": 0}
