"""`deploybench doctor` tells the truth: emulated platforms are `emulated`, missing optional
tools `info`, and every check keeps a stable key in `doctor --json`."""
from __future__ import annotations

import json
import shutil

import pytest

from deploybench.platforms.guest import GuestAssets
from deploybench.platforms.vm import KvmVerdict
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.host import host_facts
from deploybench.platforms import container as container_mod
from deploybench.platforms import vm as vm_mod
from deploybench.platforms.base import CheckStatus, PlatformOptions
from deploybench.platforms.container import Container
from deploybench.platforms.vm import MicroVM, VirtualMachine

KEYS = ["cores", "cgroups", "platform.BM", "platform.CN", "platform.VM", "platform.MVM",
        "platform.VMCN", "runtime.runc", "runtime.crun", "engine.docker", "engine.podman", "kvm",
        "guest_assets", "firecracker", "gpu", "gpu_driver", "torch_cuda", "gpu_containers", "energy"]


def test_doctor_json_keeps_a_stable_key_and_a_status_for_every_check():
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == 1 and data["host"]["cores"] >= 1
    assert [c["key"] for c in data["checks"]] == KEYS
    for check in data["checks"]:
        assert check["status"] in ("ok", "emulated", "info", "no")
        assert check["detail"] and "\n" not in check["detail"]


def test_doctor_lines_start_with_their_status():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == len(KEYS) + 1  # and what earlier runs left behind
    assert lines[-1].split()[1] == "strays"
    assert all(line.split()[0] in ("ok", "emulated", "info", "no") for line in lines)


@pytest.fixture()
def qemu():
    if shutil.which(vm_mod.QEMU) is None:
        pytest.skip("QEMU is not installed")


def test_an_emulated_vm_platform_is_emulated_not_ok(qemu, monkeypatch):
    host = host_facts()
    if host.cgroup_problem:
        pytest.skip(host.cgroup_problem)
    monkeypatch.setattr(vm_mod, "probe_kvm", lambda *_: pytest.fail("doctor must not boot"))
    [own] = MicroVM(PlatformOptions(accel="tcg")).doctor_checks(host)
    assert own.key == "platform.MVM" and own.status is CheckStatus.EMULATED
    assert own.detail.startswith("emulated (TCG): works, not for overhead figures")
    assets = GuestAssets("/k", "/i", "6.1", "debian-package")
    monkeypatch.setattr(vm_mod, "kvm_device_problem", lambda: None)
    monkeypatch.setattr(vm_mod, "cached_assets", lambda: assets)
    monkeypatch.setattr(vm_mod, "cached_kvm_verdict", lambda a: KvmVerdict(False, "guests do not boot under KVM"))
    checks = VirtualMachine().doctor_checks(host)
    assert checks[0].status is CheckStatus.EMULATED and "guests do not boot under KVM" in checks[0].detail
    assert {c.key: c.status for c in checks}["kvm"] is CheckStatus.NO
    monkeypatch.setattr(vm_mod, "cached_kvm_verdict",
                        lambda a: KvmVerdict(True, "KVM usable: a guest reaches user space in 1 s"))
    assert VirtualMachine().doctor_checks(host)[0].status is CheckStatus.OK


def test_missing_firecracker_is_info_not_ok(qemu, monkeypatch):
    which = shutil.which
    monkeypatch.setattr(vm_mod.shutil, "which", lambda name: None if name == "firecracker" else which(name))
    fc = {c.key: c for c in VirtualMachine().doctor_checks(host_facts())}["firecracker"]
    assert fc.status is CheckStatus.INFO and fc.detail.startswith("not installed (optional)")


def test_a_missing_optional_runtime_is_info_and_the_default_one_no(monkeypatch):
    which = shutil.which
    monkeypatch.setattr(container_mod.shutil, "which",
                        lambda name: None if name in ("crun", "runc", "podman") else which(name))
    monkeypatch.setattr(container_mod, "probe", lambda runtime: runtime.problem())
    checks = {c.key: c for c in Container().doctor_checks(host_facts())}
    assert checks["runtime.crun"].status is CheckStatus.INFO
    assert checks["runtime.runc"].status is CheckStatus.NO
    assert "not installed" in checks["runtime.runc"].detail
    assert checks["platform.CN"].status is CheckStatus.NO
    assert checks["engine.podman"].status is CheckStatus.INFO


def test_a_vm_platform_before_the_kvm_probe_is_info_not_ok(qemu, monkeypatch):
    host = host_facts()
    if host.cgroup_problem:
        pytest.skip(host.cgroup_problem)
    monkeypatch.setattr(vm_mod, "kvm_device_problem", lambda: None)
    monkeypatch.setattr(vm_mod, "cached_kvm_verdict", lambda assets: None)
    checks = {c.key: c for c in VirtualMachine().doctor_checks(host)}
    assert checks["platform.VM"].status is CheckStatus.INFO
    assert "native (KVM) or emulated (TCG) is not known yet" in checks["platform.VM"].detail
    assert checks["kvm"].status is CheckStatus.INFO
