"""VM, MVM and VMCN for real: QEMU guests (TCG here: functional checks only, with the
``tiny`` model and 2 requests), results stored with boot times, accel=tcg, the EMULATED_VM
warning and vCPU pinning checked from the host; a hung guest is killed at the deadline and
a guest that dies is a failed run, with nothing left behind.

Budget: five guest boots in all (about 3-4 minutes on a busy 2-core host).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from deploybench.datasets.cache import home
from deploybench.platforms import create_platform
from deploybench.platforms.base import PlatformOptions
from deploybench.host import usable_cpus
from deploybench.scenario import Scenario
from deploybench.sweep import RunSettings, run_and_store, run_one

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


def _run(name: str, ic_data: Path, store, guest_assets, left_behind: list, timeout_s: float = 400):
    scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=REQUESTS)
    platform = create_platform(scenario.platform, _options(guest_assets))
    record = run_and_store(scenario, platform, store, data_dir=ic_data,
                           settings=RunSettings(timeout_s=timeout_s))
    left_behind.append(record.platform)
    [stored] = [r for r in store.runs() if r.run_id == record.run_id]
    return record, stored


def _check_stored_result(record, stored, platform: str):
    assert record.status == "ok", f"{record.error}\n{record.console_tail}"
    assert stored.status == "ok"
    facts = stored.platform
    assert facts["platform"] == platform and facts["accel"] == "tcg"
    assert facts["data_path"] == "virtio-blk ext4"
    assert facts["data_mount_seen"] == "ext4,/dev/vda"  # seen from inside the guest
    assert "emulated_vm" in [w["code"] for w in stored.warnings]
    assert len(stored.samples["preprocess_ns"]) == REQUESTS
    clocks = (facts.get("guest_clocksource_start"), facts.get("guest_clocksource_end"))
    assert clocks[0], "the guest's clocksource was not recorded"
    for phase in ("preprocess_ns", "infer_ns", "postprocess_ns"):
        times = stored.samples[phase]
        assert all(v >= 0 for v in times) and sum(times) > 0, (phase, times, clocks)
    # boot: launch -> guest user space -> worker -> first timed query, in that order
    assert 0 < facts["boot_userspace_s"] < facts["boot_rootfs_s"] < facts["worker_start_s"] \
        < facts["first_query_s"] < facts["worker_exit_s"]
    assert facts["qemu_exit_status"] == 0 and facts["worker_exit_status"] == 0
    print(f"\n{platform} boot (TCG): user space {facts['boot_userspace_s']} s, worker start "
          f"{facts['worker_start_s']} s, first query {facts['first_query_s']} s")
    return facts


def test_vm_pinned_runs_ic_with_each_vcpu_on_its_own_core(guest_assets, ic_data, store, nothing_left_behind):
    record, stored = _run("VM/1/PIN/CPU", ic_data, store, guest_assets, nothing_left_behind)
    facts = _check_stored_result(record, stored, "VM")
    assert facts["machine"] == "pc"
    [(vcpu, core)] = facts["vcpu_pinning"].items()
    assert vcpu == "0" and core in usable_cpus()
    # read from the host side (/proc) after pinning and again while the worker ran
    assert facts["vcpu_affinity_at_start"] == {"0": [core]}
    assert facts["vcpu_affinity_at_worker"] == {"0": [core]}
    assert stored.environment["affinity"] == [0]  # the guest's one CPU


def test_mvm_vanilla_runs_ic_with_floating_vcpus_under_a_quota(guest_assets, ic_data, store, nothing_left_behind):
    record, stored = _run("MVM/1/VNL/CPU", ic_data, store, guest_assets, nothing_left_behind)
    facts = _check_stored_result(record, stored, "MVM")
    assert facts["machine"] == "microvm" and "tsc_early_khz=" in facts["kernel_cmdline"]
    assert "vcpu_pinning" not in facts
    assert facts["qemu_limits"]["quota_cores"] == 1.0
    assert facts["vcpu_affinity_at_worker"] == {"0": usable_cpus()}  # floating
    assert facts["cpu_stat"]["nr_periods"] > 0


def test_vmcn_pinned_runs_ic_in_a_container_pinned_inside_the_guest(guest_assets, ic_data, store,
                                                                   nothing_left_behind):
    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    record, stored = _run("VMCN/1/PIN/CPU", ic_data, store, guest_assets, nothing_left_behind)
    facts = _check_stored_result(record, stored, "VMCN")
    [core] = facts["vcpu_pinning"].values()
    assert facts["vcpu_affinity_at_worker"] == {"0": [core]}
    assert facts["container_runtime"] == "runc" and facts["container_cpu"]["cpus"] == "0"
    # seen from inside the container: its own cgroup namespace with the guest's cpuset
    assert stored.environment["cgroup"]["cpuset"] == [0]
    assert stored.environment["affinity"] == [0]


def test_a_hung_guest_is_killed_at_the_timeout(guest_assets, ic_data, tmp_path, nothing_left_behind):
    from deploybench.sweep import build_job

    scenario = Scenario.parse("VM/1/VNL/CPU", app="ic", model_size="tiny", requests=REQUESTS)
    platform = create_platform(scenario.platform, _options(guest_assets))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    job = build_job(scenario, data_dir=ic_data, run_dir=run_dir, run_id="hangtest",
                    settings=RunSettings()).with_(debug_hang_s=3600)
    outcome = platform.run(scenario, job, timeout_s=20)
    nothing_left_behind.append(outcome.host_facts)
    assert outcome.status == "timeout" and "20 s timeout" in outcome.error
    assert outcome.host_facts["accel"] == "tcg"
    assert "DEPLOYBENCH-MARK" in outcome.console_tail  # the console's tail is kept
    out = subprocess.run(["pgrep", "-f", "deploybench-vm-.*hangtest"], capture_output=True)
    assert out.returncode == 1, "a QEMU of this run is still running"


def test_a_guest_that_dies_without_a_result_is_a_failed_run(guest_assets, ic_data, tmp_path, nothing_left_behind):
    broken = tmp_path / "broken-initrd"
    broken.write_bytes(b"not an initramfs")
    scenario = Scenario.parse("MVM/1/PIN/CPU", app="ic", model_size="tiny", requests=REQUESTS)
    platform = create_platform(scenario.platform, _options(guest_assets, initrd=str(broken)))
    record = run_one(scenario, platform, data_dir=ic_data, settings=RunSettings(timeout_s=120))
    nothing_left_behind.append(record.platform)
    assert record.status == "failed"
    assert record.error.startswith("the guest gave no result") and "panic" in record.error.lower()
    assert "Kernel panic" in record.console_tail


def test_ctrl_c_on_the_command_line_stores_the_interrupted_run_and_cleans_up(guest_assets, tmp_path):
    import signal
    import sys
    import time

    from deploybench.store import Store

    repo = Path(__file__).resolve().parents[2]
    db = tmp_path / "x.db"
    env = dict(os.environ, DEPLOYBENCH_HOME=str(tmp_path / "home"))
    tmp_before = _tmp_vm_dirs()
    proc = subprocess.Popen([sys.executable, "-m", "deploybench", "run", "VM/1/PIN/CPU", "--app", "ic",
                             "--model-size", "tiny", "--requests", "2", "--data-count", "4",
                             "--accel", "tcg", "--kernel", guest_assets.kernel, "--initrd", guest_assets.initrd,
                             "--db", str(db)], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    qemu_pids: list[int] = []
    deadline = time.monotonic() + 60
    while not qemu_pids and time.monotonic() < deadline and proc.poll() is None:
        out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64 .*deploybench-vm-"], capture_output=True, text=True)
        qemu_pids = [int(p) for p in out.stdout.split()]
        time.sleep(0.2)
    assert qemu_pids, "QEMU never started"
    time.sleep(2)  # let the guest boot
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    for pid in qemu_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    [record] = Store(db).runs()
    assert record.status == "interrupted" and record.platform["accel"] == "tcg"
    assert not Path(record.platform["qemu_cgroup"]).exists()
    assert _tmp_vm_dirs() <= tmp_before
    assert not os.listdir(tmp_path / "home" / "runs")
