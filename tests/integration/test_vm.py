"""VM, MVM and VMCN for real: QEMU guests (TCG here: functional checks only, with the
``tiny`` model and 2 requests), warm sessions whose rounds go over the job share, results
stored with boot times, accel=tcg, the EMULATED_VM warning and vCPU pinning checked from the
host; a hung round is killed at the deadline, a guest that cannot boot is a failed launch,
and a guest paused with QMP uses no CPU; nothing is left behind.

Budget: six guest boots in all (about 5-6 minutes on a busy 2-core host).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from deploybench.datasets.cache import home
from deploybench.footprint import RoundFootprint
from deploybench.host import usable_cpus
from deploybench.platforms import create_platform
from deploybench.platforms.base import PlatformOptions
from deploybench.scenario import Scenario
from tests.conftest import measure, open_session, round_job

pytestmark = pytest.mark.usefixtures("needs_cgroups")
REQUESTS = 2


@pytest.fixture(scope="module")
def guest_assets():
    from deploybench.platforms.guest import GuestAssetError, prepare

    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed")
    try:
        return prepare()
    except GuestAssetError as exc:
        pytest.skip(f"no guest kernel here: {exc}")


def _tmp_vm_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("deploybench-vm-")}


def _runs_dirs() -> set[str]:
    root = home() / "runs"
    return set(os.listdir(root)) if root.exists() else set()


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch, guest_assets):
    """Runs and data disks in a private home (other runs may share this host's), booting
    the kernel and initramfs prepared once in the usual home."""
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))


def _options(guest_assets, **kw) -> PlatformOptions:
    kw.setdefault("kernel", guest_assets.kernel)
    kw.setdefault("initrd", guest_assets.initrd)
    return PlatformOptions(accel="tcg", **kw)


@pytest.fixture()
def nothing_left_behind():
    """QEMU gone (by pid), its cgroup gone (by path: other runs may share this host's
    cgroup tree), no socket folder, no run folder after the test. Tests append the run's
    host facts."""
    tmp_before, runs_before = _tmp_vm_dirs(), _runs_dirs()
    runs: list[dict] = []
    yield runs
    assert runs, "the test recorded no run to check"
    for facts in runs:
        with pytest.raises(ProcessLookupError):
            os.kill(facts["qemu_pid"], 0)
        assert not Path(facts["qemu_cgroup"]).exists()
        assert facts["qemu_cgroup"].rsplit("/", 1)[-1].startswith("deploybench-")
    assert _tmp_vm_dirs() <= tmp_before
    assert _runs_dirs() <= runs_before


def _measure(name: str, ic_data: Path, store, guest_assets, left_behind: list, rounds: int = 1,
             timeout_s: float = 400):
    scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=REQUESTS)
    platform = create_platform(scenario.platform, _options(guest_assets))
    records = measure(scenario, platform, ic_data, rounds=rounds, timeout_s=timeout_s, store=store)
    left_behind.append(records[-1].platform)
    stored = {r.run_id: r for r in store.runs()}
    return records, [stored[r.run_id] for r in records]


def _check_stored_result(record, stored, platform: str):
    assert record.status == "ok", f"{record.error}\n{record.console_tail}"
    assert stored.status == "ok"
    facts = stored.platform
    assert facts["platform"] == platform and facts["accel"] == "tcg" and facts["channel"] == "files"
    assert facts["data_path"] == "virtio-blk ext4"
    assert facts["data_mount_seen"] == "ext4,/dev/vda"  # seen from inside the guest
    assert "emulated_vm" in [w["code"] for w in stored.warnings]
    assert len(stored.samples["preprocess_ns"]) == REQUESTS
    assert facts.get("guest_clocksource_start"), "the guest's clocksource was not recorded"
    for phase in ("preprocess_ns", "infer_ns", "postprocess_ns"):
        times = stored.samples[phase]
        assert all(v >= 0 for v in times) and sum(times) > 0, (phase, times)
    # boot: launch -> guest user space -> worker -> ready -> first timed query, in that order
    assert 0 < facts["boot_userspace_s"] < facts["boot_rootfs_s"] < facts["worker_start_s"] \
        < facts["start_latency_s"]
    # the first query, on the host clock through the guest's: after ready, or the guest clock
    # drifted (TCG under a quota) and the drift is recorded instead of an impossible time
    assert facts["start_latency_s"] < facts["first_query_s"] if "first_query_s" in facts \
        else facts["guest_clock_drift_s"] > 0
    print(f"\n{platform} boot (TCG): user space {facts['boot_userspace_s']} s, worker start "
          f"{facts['worker_start_s']} s, worker ready {facts['start_latency_s']} s, first query "
          f"{facts.get('first_query_s')} s, guest clock drift {facts.get('guest_clock_drift_s')} s")
    # the footprint, from the host side: QEMU's memory, the guest's own, CPU outside the vCPUs
    fp = RoundFootprint.from_json(facts["footprint"])
    assert fp.worker_rss_seen_from == "guest" and fp.worker_peak_rss_kb > 100_000
    assert [p.role for p in fp.parts] == ["vmm"] and fp.parts[0].pid == facts["qemu_pid"]
    assert set(fp.parts[0].vcpu_threads) == set(facts["vcpu_threads"].values())
    assert fp.vmm_rss_kb and fp.memory_kb == fp.vmm_rss_kb > fp.worker_peak_rss_kb
    assert fp.guest is not None and fp.guest.ram_kb == facts["memory_mib"] * 1024
    assert 0 < fp.guest.kernel_kb < fp.guest.ram_kb and fp.guest.page_cache_kb > 0
    assert fp.worker_cpu_s > 0 and fp.outside_cpu_s is not None
    print(f"{platform} footprint: QEMU {fp.vmm_rss_kb / 1024:.0f} MiB, worker {fp.worker_peak_rss_kb / 1024:.0f} "
          f"MiB, guest kernel {fp.guest.kernel_kb / 1024:.0f} MiB, page cache {fp.guest.page_cache_kb / 1024:.0f} "
          f"MiB ({fp.guest.page_cache_unmapped_kb / 1024:.0f} not mapped), VMM overhead "
          f"{fp.vmm_overhead_kb / 1024:.0f} MiB, QEMU non-vCPU CPU {fp.outside_cpu_s:.2f} s")
    return facts


def test_vm_pinned_serves_rounds_with_each_vcpu_on_its_own_core_and_holds_more_memory_than_bm(
        guest_assets, ic_data, store, nothing_left_behind):
    """Two rounds in one pinned VM. And the same IC round on BM: QEMU's resident memory
    exceeds the BM worker's peak by at least the guest kernel and the guest page cache the
    worker does not map (the second copy of what it read), and QEMU's threads other than the
    vCPU spent CPU too (one guest boot serves both checks)."""
    from deploybench.platforms.baremetal import BareMetal

    bm = measure(Scenario.parse("BM/1/PIN/CPU", app="ic", model_size="tiny", requests=REQUESTS),
                 BareMetal(), ic_data, timeout_s=120)[-1]
    assert bm.status == "ok", bm.error
    records, stored = _measure("VM/1/PIN/CPU", ic_data, store, guest_assets, nothing_left_behind, rounds=2)
    facts = _check_stored_result(records[0], stored[0], "VM")
    assert stored[1].status == "ok" and stored[1].launch_id == stored[0].launch_id
    assert [s.launch_round for s in stored] == [1, 2]
    assert facts["machine"] == "pc"
    [(vcpu, core)] = facts["vcpu_pinning"].items()
    assert vcpu == "0" and core in usable_cpus()
    # read from the host side (/proc) after pinning and again during the round
    assert facts["vcpu_affinity_at_start"] == {"0": [core]}
    assert facts["vcpu_affinity_at_round"] == {"0": [core]}
    assert stored[0].environment["affinity"] == [0]  # the guest's one CPU
    # the footprint against BM
    vm_fp = RoundFootprint.from_json(stored[0].platform["footprint"])
    bm_fp = RoundFootprint.from_json(bm.platform["footprint"])
    guest_share = vm_fp.guest.kernel_kb + vm_fp.guest.page_cache_unmapped_kb
    extra = vm_fp.memory_kb - bm_fp.memory_kb
    print(f"\nVM {vm_fp.memory_kb / 1024:.0f} MiB vs BM {bm_fp.memory_kb / 1024:.0f} MiB: {extra / 1024:.0f} MiB "
          f"more; guest kernel + unmapped page cache {guest_share / 1024:.0f} MiB; QEMU non-vCPU CPU "
          f"{vm_fp.outside_cpu_s:.2f} s")
    assert bm_fp.memory_beyond_worker_kb == 0
    assert extra >= guest_share > 0
    assert vm_fp.outside_cpu_s > 0  # QEMU's main loop and I/O threads (9p, virtio) did work
    assert vm_fp.outside_cpu_s_by_role["vmm (non-vCPU threads)"] == vm_fp.outside_cpu_s


def test_mvm_vanilla_runs_ic_with_floating_vcpus_under_a_quota(guest_assets, ic_data, store, nothing_left_behind):
    records, stored = _measure("MVM/1/VNL/CPU", ic_data, store, guest_assets, nothing_left_behind)
    facts = _check_stored_result(records[0], stored[0], "MVM")
    assert facts["machine"] == "microvm" and "tsc_early_khz=" in facts["kernel_cmdline"]
    assert "vcpu_pinning" not in facts
    assert facts["qemu_limits"]["quota_cores"] == 1.0
    assert facts["vcpu_affinity_at_round"] == {"0": usable_cpus()}  # floating
    assert facts["cpu_stat"]["nr_periods"] > 0


def test_vmcn_pinned_runs_ic_in_a_container_pinned_inside_the_guest(guest_assets, ic_data, store,
                                                                   nothing_left_behind):
    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    records, stored = _measure("VMCN/1/PIN/CPU", ic_data, store, guest_assets, nothing_left_behind)
    facts = _check_stored_result(records[0], stored[0], "VMCN")
    [core] = facts["vcpu_pinning"].values()
    assert facts["vcpu_affinity_at_round"] == {"0": [core]}
    assert facts["container_runtime"] == "runc" and facts["container_cpu"]["cpus"] == "0"
    # seen from inside the container: its own cgroup namespace with the guest's cpuset
    assert stored[0].environment["cgroup"]["cpuset"] == [0]
    assert stored[0].environment["affinity"] == [0]


def test_a_hung_round_is_killed_at_the_timeout_and_a_paused_guest_uses_no_cpu(
        guest_assets, ic_data, nothing_left_behind):
    scenario = Scenario.parse("VM/1/VNL/CPU", app="ic", model_size="tiny", requests=REQUESTS)
    platform = create_platform(scenario.platform, _options(guest_assets))
    with open_session(scenario, platform, ic_data, timeout_s=400) as session:
        pid = session.proc.pid
        session.pause()
        ticks = lambda: sum(int(x) for x in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13])  # noqa: E731
        before = ticks()
        time.sleep(1.0)
        assert ticks() - before <= 2  # QMP stop: the vCPUs do not run (a tick or two of QEMU's loop)
        outcome = session.measure(round_job(scenario, ic_data, debug_hang_s=3600), timeout_s=20)
        facts = session.facts.to_json()
    nothing_left_behind.append(facts)
    assert outcome.status == "timeout" and "20 s timeout" in outcome.error
    assert outcome.host_facts["accel"] == "tcg"
    assert "DEPLOYBENCH-MARK" in outcome.console_tail  # the console's tail is kept


def test_a_guest_that_cannot_boot_is_a_failed_launch(guest_assets, ic_data, tmp_path, nothing_left_behind):
    broken = tmp_path / "broken-initrd"
    broken.write_bytes(b"not an initramfs")
    scenario = Scenario.parse("MVM/1/PIN/CPU", app="ic", model_size="tiny", requests=REQUESTS)
    platform = create_platform(scenario.platform, _options(guest_assets, initrd=str(broken)))
    (record,) = measure(scenario, platform, ic_data, timeout_s=120)
    nothing_left_behind.append(record.platform)
    assert record.status == "failed"
    assert record.error.startswith("MVM launch failed: the worker ended before it was ready")
    assert "panic" in record.error.lower() and "Kernel panic" in record.console_tail
