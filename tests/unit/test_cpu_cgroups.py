"""cgroup logic on a fake cgroup tree (the real kernel is exercised by integration tests)."""
from pathlib import Path

import pytest

from deploybench.host import detect_version
from deploybench.platforms.cpu import CgroupError, CgroupManager, CpuLimits, choose_pinned_cpus


def make_v1(root: Path) -> Path:
    for c in ("cpu", "cpuset", "cpuacct"):
        (root / c).mkdir(parents=True)
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    return root


def test_detects_v1_and_v2_trees(tmp_path):
    assert detect_version(tmp_path) is None
    make_v1(tmp_path / "v1")
    assert detect_version(tmp_path / "v1") == 1
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cgroup.controllers").write_text("cpu cpuset io\n")
    assert detect_version(tmp_path / "v2") == 2


def test_v1_vanilla_writes_quota_and_all_cpus(tmp_path):
    root = make_v1(tmp_path)
    cg = CgroupManager(root).create(CpuLimits(cpus=[0, 1, 2, 3], quota_cores=2.0), name="deploybench-t")
    assert (root / "cpu/deploybench-t/cpu.cfs_quota_us").read_text() == "200000"
    assert (root / "cpu/deploybench-t/cpu.cfs_period_us").read_text() == "100000"
    assert (root / "cpuset/deploybench-t/cpuset.cpus").read_text() == "0-3"
    assert (root / "cpuset/deploybench-t/cpuset.mems").read_text() == "0"
    assert set(cg.dirs) == {"cpu", "cpuset", "cpuacct"}
    assert CgroupManager(root).leftovers()


def test_v1_pinned_has_no_quota(tmp_path):
    root = make_v1(tmp_path)
    CgroupManager(root).create(CpuLimits(cpus=[2, 3], quota_cores=None), name="deploybench-p")
    assert (root / "cpu/deploybench-p/cpu.cfs_quota_us").read_text() == "-1"
    assert (root / "cpuset/deploybench-p/cpuset.cpus").read_text() == "2-3"


def test_v2_enables_controllers_and_writes_cpu_max(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu cpuset\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    CgroupManager(tmp_path).create(CpuLimits(cpus=[1], quota_cores=1.5), name="deploybench-v2")
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +cpuset"
    assert (tmp_path / "deploybench-v2/cpu.max").read_text() == "150000 100000"
    assert (tmp_path / "deploybench-v2/cpuset.cpus").read_text() == "1"


def test_stat_normalises_v1_throttling(tmp_path):
    root = make_v1(tmp_path)
    cg = CgroupManager(root).create(CpuLimits(cpus=[0], quota_cores=1.0), name="deploybench-s")
    (root / "cpu/deploybench-s/cpu.stat").write_text("nr_periods 10\nnr_throttled 4\nthrottled_time 2500000\n")
    (root / "cpuacct/deploybench-s/cpuacct.usage").write_text("7000000\n")
    stat = cg.stat()
    assert stat["nr_throttled"] == 4 and stat["throttled_ms"] == 2.5 and stat["cpu_usage_ms"] == 7.0


def test_failed_creation_leaves_nothing_behind(tmp_path):
    root = make_v1(tmp_path)
    (root / "cpuset" / "cpuset.mems").unlink()  # reading it fails mid-creation
    with pytest.raises(OSError):
        CgroupManager(root).create(CpuLimits(cpus=[0], quota_cores=None), name="deploybench-f")
    assert CgroupManager(root).leftovers() == []


def test_pinning_prefers_distinct_physical_cores_in_one_package():
    # 2 packages x 2 cores x 2 SMT threads: cpu -> (package, core)
    topo = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1), 4: (0, 0), 5: (0, 1), 6: (1, 0), 7: (1, 1)}
    cpus = sorted(topo)
    assert choose_pinned_cpus(2, cpus, topo) == [0, 1]  # two cores of package 0, no siblings
    assert choose_pinned_cpus(3, cpus, topo) == [0, 1, 4]  # fill package 0 before spanning
    assert choose_pinned_cpus(5, cpus, topo) == [0, 1, 2, 4, 5]
    with pytest.raises(CgroupError, match="only 8 are usable"):
        choose_pinned_cpus(9, cpus, topo)
