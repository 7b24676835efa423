"""VM, MVM and VMCN without booting a guest: QEMU command lines, kernel command lines, the
initramfs (module order, archive content), guest assets and their errors, the accelerator
choice, the data disk, the container config used inside the guest."""
from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploybench.platforms import guest as guest_mod
from deploybench.platforms import platform_class
from deploybench.platforms.base import PlatformError, PlatformOptions
from deploybench.platforms.guest import GuestAssetError, GuestAssets, initramfs, kernel
from deploybench.platforms.guest.datadisk import data_key, ensure_data_image, image_size_bytes
from deploybench.platforms.guest.initramfs import (CpioWriter, InitramfsError, ModuleIndex, build_initramfs,
                                                   elf_section, modinfo, read_cpio, read_cpio_names)
from deploybench.platforms import vm as vm_mod
from deploybench.platforms.vm import (ConsoleReader, KvmVerdict, QemuConfig, host_tsc_khz, kernel_cmdline,
                                      kvm_decision, memory_for, pin_vcpus, qemu_command, stage2_script)
from deploybench.platforms.vmcn import guest_limits
from deploybench.scenario import PlatformName


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))


def _cfg(**kw):
    base = dict(machine="pc", vcpus=2, memory_mib=2048, accel="tcg", kernel="/k/vmlinux",
                initrd="/k/initrd", share_dir="/runs/r1", data_image="/d/data.ext4",
                data_mount="/data/ic", qmp_socket="/tmp/s/qmp.sock", tsc_khz=2600000)
    base.update(kw)
    return QemuConfig(**base)


def _opt(cmd, flag):
    return [cmd[i + 1] for i, c in enumerate(cmd) if c == flag]


# -- QEMU command lines ------------------------------------------------------------------------
def test_pc_machine_uses_virtio_pci_devices_and_starts_paused_with_qmp():
    cmd = qemu_command(_cfg())
    assert _opt(cmd, "-M") == ["pc"]
    assert _opt(cmd, "-smp") == ["2"] and _opt(cmd, "-m") == ["2048"]
    assert _opt(cmd, "-accel") == ["tcg,thread=multi"] and _opt(cmd, "-cpu") == ["max"]
    devices = _opt(cmd, "-device")
    assert "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot" in devices
    assert "virtio-9p-pci,fsdev=jobshare,mount_tag=jobshare" in devices
    assert "virtio-blk-pci,drive=data" in devices
    assert any("readonly=on" in d and "/d/data.ext4" in d for d in _opt(cmd, "-drive"))
    root_fsdev = [f for f in _opt(cmd, "-fsdev") if "id=hostroot" in f][0]
    assert "path=/," in root_fsdev and "readonly=on" in root_fsdev
    share_fsdev = [f for f in _opt(cmd, "-fsdev") if "id=jobshare" in f][0]
    assert "path=/runs/r1" in share_fsdev and "readonly" not in share_fsdev
    assert _opt(cmd, "-qmp") == ["unix:/tmp/s/qmp.sock,server=on,wait=off"]
    assert "-S" in cmd and "-no-reboot" in cmd and "-nodefaults" in cmd
    assert "tsc_early_khz" not in _opt(cmd, "-append")[0]


def test_microvm_uses_mmio_devices_and_tsc_khz_under_tcg():
    cmd = qemu_command(_cfg(machine="microvm"))
    assert _opt(cmd, "-M") == ["microvm,x-option-roms=off"]
    devices = _opt(cmd, "-device")
    assert "virtio-9p-device,fsdev=hostroot,mount_tag=hostroot" in devices
    assert "virtio-blk-device,drive=data" in devices
    assert not [d for d in devices if "-pci" in d]
    append = _opt(cmd, "-append")[0]
    assert "tsc_early_khz=2600000" in append.split() and "pci=off" in append.split()


def test_kvm_uses_the_host_cpu_and_no_tsc_hint():
    cmd = qemu_command(_cfg(machine="microvm", accel="kvm"))
    assert _opt(cmd, "-accel") == ["kvm"] and _opt(cmd, "-cpu") == ["host"]
    assert "tsc_early_khz" not in _opt(cmd, "-append")[0]


def test_microvm_under_tcg_without_tsc_is_refused():
    with pytest.raises(PlatformError, match="tsc_early_khz"):
        kernel_cmdline(_cfg(machine="microvm", tsc_khz=None))


def test_kernel_cmdline_carries_the_share_and_data_paths():
    words = kernel_cmdline(_cfg()).split()
    assert words[:3] == ["console=ttyS0", "quiet", "panic=-1"]
    assert "deploybench.share=/runs/r1" in words and "deploybench.data=/data/ic" in words


def test_kernel_cmdline_refuses_paths_with_spaces():
    with pytest.raises(PlatformError, match="without spaces"):
        kernel_cmdline(_cfg(share_dir="/runs/my run"))


def test_unknown_accelerator_or_machine_is_an_error():
    with pytest.raises(PlatformError, match="accelerator"):
        qemu_command(_cfg(accel="hvf"))
    with pytest.raises(PlatformError, match="machine"):
        qemu_command(_cfg(machine="q99"))


def test_probe_boots_without_shares_and_powers_off_at_init():
    cmd = qemu_command(QemuConfig("pc", 1, 512, "kvm", "/k", "/i", paused=False, probe=True))
    assert "-fsdev" not in cmd and "-S" not in cmd
    assert "deploybench.probe=1" in _opt(cmd, "-append")[0]


def test_host_tsc_khz_comes_from_cpu_mhz():
    assert host_tsc_khz("processor\t: 0\ncpu MHz\t\t: 2596.122\n") == 2596122
    assert host_tsc_khz("nothing here") is None


def test_memory_is_sized_to_the_model_and_capped_by_the_host():
    assert memory_for("tiny") == 2048
    assert memory_for("full") == 4096
    assert memory_for("full", host_memory_gib=4) == 2048
    assert memory_for("tiny", extra_mib=512) == 2560


# -- pinning and the console -------------------------------------------------------------------
def test_pin_vcpus_sets_each_thread_to_its_own_core():
    cpu = sorted(os.sched_getaffinity(0))[-1]
    result: dict = {}

    def vcpu():
        tid = threading.get_native_id()
        result["mapping"] = pin_vcpus({0: tid}, [cpu])
        result["affinity"] = sorted(os.sched_getaffinity(tid))

    t = threading.Thread(target=vcpu)
    t.start()
    t.join()
    assert result["mapping"] == {0: cpu} and result["affinity"] == [cpu]


def test_pin_vcpus_needs_a_core_per_vcpu():
    with pytest.raises(PlatformError, match="2 vCPUs"):
        pin_vcpus({0: 1, 1: 2}, [0])


def test_qemu_dying_before_qmp_is_a_one_line_error_with_its_message(tmp_path):
    stderr = tmp_path / "qemu-stderr.txt"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(["sh", "-c", "echo 'qemu-system-x86_64: -accel kvm: no such device' >&2; exit 1"],
                                stderr=err)
    proc.wait()
    with pytest.raises(PlatformError) as exc:
        vm_mod.Qmp(tmp_path / "qmp.sock", proc, 5, stderr)
    assert str(exc.value) == ("QEMU exited with status 1 before QMP was up: "
                              "qemu-system-x86_64: -accel kvm: no such device")


def test_console_reader_timestamps_markers_and_errors(tmp_path):
    r, w = os.pipe()
    reader = ConsoleReader(os.fdopen(r, "rb"), tmp_path / "console.log")
    before = time.time()
    os.write(w, b"[ 0.1] booting\nDEPLOYBENCH-MARK init\nDEPLOYBENCH-MARK worker-start 123.5\n"
                b"DEPLOYBENCH-ERROR mount hostroot (9p)\n")
    os.close(w)
    assert reader.wait_for("worker-start", 5) >= before
    reader.join()
    assert reader.markers["worker-start"][1] == ["123.5"]
    assert reader.errors == ["mount hostroot (9p)"]
    assert reader.wait_for("never", 0.1) is None
    assert "DEPLOYBENCH-MARK init" in (tmp_path / "console.log").read_text()


def test_stage2_script_runs_the_command_marks_steps_and_powers_off(tmp_path):
    command = ["/venv/bin/python", "-m", "deploybench.worker", "--serve", "files", "--job",
               "/runs/r1/job.json", "--channel-dir", "/runs/r1"]
    script = stage2_script(Path("/runs/r1"), command, {"OMP_NUM_THREADS": "2", "A": "x y"},
                           prelude="echo pre", data_mount="/data/ic")
    assert "export A='x y'" in script and "export OMP_NUM_THREADS=2" in script
    assert (" ".join(command) + " > /runs/r1/stdout.txt") in script
    assert script.index("echo pre") < script.index("worker-start") < script.index("worker-exit")
    assert "echo o > /proc/sysrq-trigger" in script
    assert "data-mount" in script and "-v d=/data/ic" in script
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    # the data-mount line prints "fstype,device" of the data path from /proc/mounts
    line = [l for l in script.splitlines() if "data-mount" in l][0]
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda /data/ic ext4 ro 0 0\nhostroot / 9p ro 0 0\n")
    line = line.replace("/proc/mounts", str(mounts)).replace("> /dev/console", "")
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True).stdout
    assert out.strip() == "DEPLOYBENCH-MARK data-mount ext4,/dev/vda"


# -- the initramfs -----------------------------------------------------------------------------
def _elf_with_modinfo(fields: dict[str, str]) -> bytes:
    """A minimal ELF64 with a .shstrtab and a .modinfo section (what a .ko carries)."""
    modinfo_data = b"".join(f"{k}={v}\0".encode() for k, v in fields.items())
    shstr = b"\0.shstrtab\0.modinfo\0"
    body = bytearray(64)
    body[0:4] = b"\x7fELF"
    body[4], body[5] = 2, 1
    shstr_off = len(body)
    body += shstr
    modinfo_off = len(body)
    body += modinfo_data
    shoff = len(body)

    def section(name, offset, size):
        h = bytearray(64)
        h[0:4] = name.to_bytes(4, "little")
        h[0x18:0x20] = offset.to_bytes(8, "little")
        h[0x20:0x28] = size.to_bytes(8, "little")
        return h

    body += bytes(64)  # the null section
    body += section(1, shstr_off, len(shstr))
    body += section(11, modinfo_off, len(modinfo_data))
    body[0x28:0x30] = shoff.to_bytes(8, "little")
    body[0x3A:0x3C] = (64).to_bytes(2, "little")
    body[0x3C:0x3E] = (3).to_bytes(2, "little")
    body[0x3E:0x40] = (1).to_bytes(2, "little")
    return bytes(body)


def _fake_modules(root: Path, deps: dict[str, list[str]], with_dep_file: bool, builtin=()) -> Path:
    mdir = root / "lib/modules/6.1.0-test-amd64"
    (mdir / "kernel/drivers").mkdir(parents=True)
    lines = []
    for name, needs in deps.items():
        rel = f"kernel/drivers/{name}.ko"
        (mdir / rel).write_bytes(_elf_with_modinfo({"license": "GPL", "depends": ",".join(needs)}))
        lines.append(f"{rel}: " + " ".join(f"kernel/drivers/{d}.ko" for d in needs))
    if with_dep_file:
        (mdir / "modules.dep").write_text("\n".join(lines) + "\n")
    (mdir / "modules.builtin").write_text("".join(f"kernel/x/{b}.ko\n" for b in builtin))
    return mdir


DEPS = {"virtio_ring": [], "virtio": [], "virtio_blk": ["virtio", "virtio_ring"], "mbcache": [],
        "jbd2": [], "crc16": [], "ext4": ["jbd2", "mbcache", "crc16"]}


@pytest.mark.parametrize("with_dep_file", [True, False], ids=["modules.dep", "modinfo"])
def test_modules_load_after_their_dependencies(tmp_path, with_dep_file):
    index = ModuleIndex(_fake_modules(tmp_path, DEPS, with_dep_file))
    assert index.source == ("modules.dep" if with_dep_file else "modinfo")
    order = index.load_order(["virtio_blk", "ext4"])
    assert set(order) == set(DEPS)
    for name, needs in DEPS.items():
        assert all(order.index(d) < order.index(name) for d in needs), (name, order)


def test_builtin_modules_are_skipped_and_unknown_ones_are_an_error(tmp_path):
    index = ModuleIndex(_fake_modules(tmp_path, {"ext4": []}, True, builtin=("virtio",)))
    assert index.load_order(["virtio", "ext4"]) == ["ext4"]
    with pytest.raises(InitramfsError, match="9p is neither"):
        index.load_order(["9p"])
    assert index.load_order(["ext4"], optional=["9p"]) == ["ext4"]


def test_modinfo_reads_the_elf_section():
    data = _elf_with_modinfo({"depends": "a,b", "softdep": "pre: crc32c"})
    assert elf_section(data, ".modinfo").startswith(b"depends=a,b\0")
    assert elf_section(b"not an elf", ".modinfo") is None


def test_initramfs_holds_init_busybox_console_and_ordered_modules(tmp_path):
    mdir = _fake_modules(tmp_path, DEPS, True)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF static busybox")
    data, order = build_initramfs(mdir, busybox, modules=("virtio_blk", "ext4"))
    names = read_cpio_names(data)
    assert {"init", "bin/busybox", "bin/sh", "dev/console", "modules.order"} <= set(names)
    assert len(data) % 512 == 0
    files = [n for n in names if n.startswith("lib/modules/")]
    assert [f.split("-", 1)[1].removesuffix(".ko") for f in sorted(files)] == order
    # the order file inside the archive is what init reads
    listed = read_cpio(data)["modules.order"].decode().split()
    assert [name.split("-", 1)[1].removesuffix(".ko") for name in listed] == order
    assert read_cpio(data)["init"] == initramfs.INIT_SCRIPT.read_bytes()


def test_dynamic_busybox_is_refused(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF ... /lib64/ld-linux-x86-64.so.2 ...")
    with pytest.raises(InitramfsError, match="busybox-static"):
        build_initramfs(_fake_modules(tmp_path, DEPS, True), busybox, modules=("ext4",))


def test_init_script_is_valid_shell_and_mounts_the_documented_layout():
    script = initramfs.INIT_SCRIPT.read_text()
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert "trans=virtio,version=9p2000.L,msize=1048576,cache=loose hostroot" in script
    assert "switch_root /newroot" in script and "echo o > /proc/sysrq-trigger" in script


def test_cpio_round_trip_names():
    w = CpioWriter()
    w.directory("dev")
    w.char_device("dev/console", 5, 1)
    w.file("a/b.txt", b"hello")
    w.symlink("bin/sh", "busybox")
    assert read_cpio_names(w.finish()) == ["dev", "dev/console", "a/b.txt", "bin/sh"]


# -- the kernel --------------------------------------------------------------------------------
def test_vmlinux_is_found_after_the_xz_magic():
    elf = b"\x7fELF" + bytes(1000)
    image = b"MZ" + b"\0" * 600 + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"trailer"
    assert kernel.extract_vmlinux(image) == elf
    assert kernel.extract_vmlinux(b"MZ no payload") is None


def test_bzimage_release_reads_the_setup_header():
    image = bytearray(0x600)
    image[0x202:0x206] = b"HdrS"
    image[0x20E:0x210] = (0x300).to_bytes(2, "little")
    image[0x500:0x520] = b"6.1.0-57-amd64 (debian@x) #1\0\0\0\0"
    assert kernel.bzimage_release(bytes(image)) == "6.1.0-57-amd64"
    assert kernel.bzimage_release(b"\0" * 0x600) is None


def test_a_missing_kernel_file_is_a_one_line_error(tmp_path):
    with pytest.raises(GuestAssetError, match="guest kernel .*nope does not exist"):
        guest_mod.prepare(str(tmp_path / "nope"))
    with pytest.raises(GuestAssetError, match="--initrd needs --kernel"):
        guest_mod.prepare(None, str(tmp_path / "i"))


def test_user_kernel_and_initrd_are_used_as_they_are(tmp_path):
    (tmp_path / "k").write_bytes(b"\0" * 0x400)
    (tmp_path / "i").write_bytes(b"x")
    assets = guest_mod.prepare(str(tmp_path / "k"), str(tmp_path / "i"))
    assert assets.source == "user" and assets.kernel == str(tmp_path / "k")


def test_kernel_without_modules_needs_an_initrd(tmp_path):
    (tmp_path / "k").write_bytes(b"\0" * 0x400)
    with pytest.raises(GuestAssetError, match="give --initrd too"):
        guest_mod.prepare(str(tmp_path / "k"))


def test_no_kernel_when_apt_download_fails_is_a_one_line_error(monkeypatch):
    def fake_apt(*args, cwd=None, timeout=300):
        if args[:2] == ("apt-cache", "depends"):
            return subprocess.CompletedProcess(args, 0, "  Depends: linux-image-6.1.0-99-amd64\n", "")
        return subprocess.CompletedProcess(args, 100, "", "E: Failed to fetch http://deb.debian.org/... (offline)\n")

    monkeypatch.setattr(kernel, "_apt", fake_apt)
    with pytest.raises(GuestAssetError) as err:
        guest_mod.prepare()
    message = str(err.value)
    assert "\n" not in message
    assert "apt-get download linux-image-6.1.0-99-amd64" in message and "--kernel" in message


def test_no_apt_at_all_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(GuestAssetError, match="not installed: give --kernel and --initrd"):
        guest_mod.prepare()


# -- the accelerator ---------------------------------------------------------------------------
def _assets(tmp_path):
    (tmp_path / "vmlinux").write_bytes(b"k")
    (tmp_path / "i").write_bytes(b"i")
    return GuestAssets(str(tmp_path / "vmlinux"), str(tmp_path / "i"), "6.1", "user")


def _decide(requested, assets, **kw):
    return kvm_decision(requested, assets.kernel, assets.initrd, **kw)


def test_tcg_requested_is_used_without_probing(tmp_path, monkeypatch):
    monkeypatch.setattr(vm_mod, "probe_kvm", lambda *_: pytest.fail("probed"))
    assert _decide("tcg", _assets(tmp_path)).accel == "tcg"


def test_kvm_requested_without_a_usable_device_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(vm_mod, "kvm_device_problem", lambda: "no /dev/kvm (no hardware virtualisation here)")
    with pytest.raises(PlatformError, match="--accel kvm: no /dev/kvm"):
        _decide("kvm", _assets(tmp_path))
    choice = _decide("auto", _assets(tmp_path))
    assert choice.accel == "tcg" and choice.kvm_usable is False


def test_auto_uses_the_cached_probe_verdict(tmp_path, monkeypatch):
    assets = _assets(tmp_path)
    monkeypatch.setattr(vm_mod, "kvm_device_problem", lambda: None)
    calls = []

    def fake_probe(a, deadline_s=25):
        calls.append(a)
        verdict = KvmVerdict(False, "/dev/kvm present but guests do not boot under it in 25 s "
                             "(paravirtual/nested KVM)", None, time.time())
        path = vm_mod._probe_path(a)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(verdict.to_json()))
        return verdict

    monkeypatch.setattr(vm_mod, "probe_kvm", fake_probe)
    choice = _decide("auto", assets)
    assert choice.accel == "tcg" and choice.reason.endswith("TCG emulation is used")
    assert _decide("auto", assets).accel == "tcg"
    assert len(calls) == 1  # the second run read the cached verdict
    with pytest.raises(PlatformError, match="unknown accelerator"):
        _decide("hvf", assets)
    # the planner and doctor ask the same function: the planner may probe, doctor never boots
    vm = platform_class(PlatformName.VM)(PlatformOptions(kernel=assets.kernel, initrd=assets.initrd))
    assert vm.emulated(None) is True


def test_doctor_explains_kvm_in_one_line_without_booting(tmp_path, monkeypatch):
    monkeypatch.setattr(vm_mod, "probe_kvm", lambda *_: pytest.fail("doctor must not boot"))
    from deploybench.host import host_facts

    checks = platform_class(PlatformName.VM)().doctor_checks(host_facts())
    kvm = [c for c in checks if c.key == "kvm"][0]
    assert "\n" not in kvm.detail and ("kvm" in kvm.detail.lower())
    assert [c.key for c in platform_class(PlatformName.MVM)().doctor_checks(host_facts())] == ["platform.MVM"]


# -- the data disk -----------------------------------------------------------------------------
def test_data_key_follows_the_manifest(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "manifest.json").write_text('{"n": 1}')
    first = data_key(d)
    (d / "manifest.json").write_text('{"n": 2}')
    assert data_key(d) != first


@pytest.mark.skipif(not shutil.which("mkfs.ext4") and not Path("/sbin/mkfs.ext4").exists(),
                    reason="mkfs.ext4 (e2fsprogs) not installed")
def test_data_image_is_an_ext4_copy_of_the_data_built_once(tmp_path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "manifest.json").write_text("{}")
    (d / "sub" / "a.jpg").write_bytes(os.urandom(100_000))
    image = ensure_data_image(d, tmp_path / "disks")
    size, _ = image_size_bytes(d)
    assert image.stat().st_size == size
    listing = subprocess.run(["debugfs", "-R", "ls -l /sub", str(image)], capture_output=True, text=True)
    assert "a.jpg" in listing.stdout and "100000" in listing.stdout
    mtime = image.stat().st_mtime_ns
    assert ensure_data_image(d, tmp_path / "disks") == image and image.stat().st_mtime_ns == mtime


# -- VMCN's container --------------------------------------------------------------------------
def test_container_limits_inside_the_guest_use_guest_cpu_numbers():
    from deploybench.platforms.container.oci import cpu_resources

    assert cpu_resources(guest_limits(1, pinned=True), "0") == {"cpus": "0", "mems": "0"}
    assert cpu_resources(guest_limits(3, pinned=True), "0")["cpus"] == "0-2"
    vanilla = cpu_resources(guest_limits(2, pinned=False), "0")
    assert vanilla["quota"] == 200000 and vanilla["period"] == 100000 and vanilla["cpus"] == "0-1"


def test_vmcn_writes_cn_bundle_into_the_share_and_runs_the_host_runtime(tmp_path, ic_data):
    from deploybench.execute import RunSettings, build_job
    from deploybench.scenario import Scenario

    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    scenario = Scenario.parse("VMCN/1/PIN/CPU", app="ic", requests=2)
    job = build_job(scenario, data_dir=ic_data, settings=RunSettings())
    platform = platform_class(PlatformName.VMCN)()
    plan = vm_mod.GuestPlan(GuestAssets("/k", "/i", None, "user"), "tcg", "test", _cfg(), [0],
                            vm_mod.CpuLimits([0], None))
    command, _ = platform.guest_command(scenario, job, run_dir, plan)
    assert command[0] == shutil.which("runc") and command[-1] == plan.extra_facts["container_id"]
    config = json.loads((Path(command[command.index("--bundle") + 1]) / "config.json").read_text())
    assert Path(command[command.index("--bundle") + 1]).parent == run_dir
    assert config["linux"]["resources"]["cpu"]["cpus"] == "0" and config["root"]["readonly"] is True
    args = config["process"]["args"]
    assert args[args.index("--job") + 1] == str(run_dir / "job.json")
    assert args[args.index("--serve") + 1] == "files" and args[args.index("--channel-dir") + 1] == str(run_dir)
    writable = [m["destination"] for m in config["mounts"] if m.get("type") == "bind" and "rw" in m["options"]]
    assert writable == [str(run_dir.resolve())]
    with pytest.raises(PlatformError, match="runc or crun"):
        platform_class(PlatformName.VMCN)(PlatformOptions(runtime="kata")).runtime


def test_vm_platforms_are_registered():
    assert platform_class(PlatformName.VM).name == "VM"
    assert platform_class(PlatformName.MVM).machine == "microvm"
    assert platform_class(PlatformName.VMCN).name == "VMCN"


def test_gpu_scenarios_are_refused_with_a_reason(host):
    from deploybench.scenario import Scenario

    scenario = Scenario.parse("MVM/1/PIN/GPU")
    assert "GPU" in platform_class(PlatformName.MVM)().scenario_problem(scenario, host)
    assert "GPU" in platform_class(PlatformName.VM)().scenario_problem(Scenario.parse("VM/1/PIN/GPU"), host)


def test_prepare_command_refuses_unknown_targets():
    out = subprocess.run([sys.executable, "-m", "deploybench", "prepare", "gpu"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == "error: nothing to prepare for 'gpu': use `deploybench prepare vm`"


# -- turning a finished guest into an outcome --------------------------------------------------
class _Console:
    def __init__(self, markers, errors=(), lines=()):
        self.markers, self.errors, self.lines = markers, list(errors), list(lines)

    def last_line(self):
        return self.lines[-1] if self.lines else ""

    def join(self, timeout_s=5.0):
        pass


def _plan(accel="tcg"):
    return vm_mod.GuestPlan(GuestAssets("/k", "/i", None, "user"), accel, "test", _cfg(accel=accel), [1],
                            vm_mod.CpuLimits([0, 1], None))


class _Ledger:
    def close(self):
        pass


def _session(tmp_path, console, plan):
    from deploybench.platforms.base import LaunchFacts

    session = vm_mod.GuestSession(LaunchFacts("l1", "VM", "files", 1000.0), tmp_path, _Ledger())
    session.console, session.plan, session.sockets, session.vcpu_threads = console, plan, tmp_path, {}
    return session


def test_boot_times_and_the_guest_clock_offset_are_on_the_host_clock(tmp_path):
    console = _Console({"init": (1001.0, []), "switch-root": (1001.5, []), "worker-start": (1003.0, ["99.5"]),
                        "data-mount": (1003.1, ["ext4,/dev/vda"]), "clocksource-start": (1003.0, ["tsc"])})
    session = _session(tmp_path, console, _plan())
    session._after_ready()
    f = session.facts.details
    assert f["boot_userspace_s"] == 1.0 and f["boot_rootfs_s"] == 1.5 and f["worker_start_s"] == 3.0
    assert f["guest_clock_offset_s"] == 903.5
    assert f["data_mount_seen"] == "ext4,/dev/vda" and f["guest_clocksource_start"] == "tsc"


def test_a_round_moves_guest_times_onto_the_host_clock_and_warns(tmp_path, monkeypatch):
    from deploybench.platforms.base import RunOutcome
    from deploybench.platforms.session import WorkerSession
    from deploybench.worker.job import WorkerJob, WorkerResult

    session = _session(tmp_path, _Console({}), _plan())
    session.facts.details.update({"guest_clock_offset_s": 900.0, "vcpu_pinning": {"0": 1}})
    job = WorkerJob(app="ic", data_dir="/d", result_path="")
    result = WorkerResult("ok", job.to_json(), timings={"first_query_wall": 110.0})
    facts = {"round_wall": 1005.0, "vcpu_affinity_at_round": {"0": [0, 1]}}
    monkeypatch.setattr(WorkerSession, "measure", lambda self, job, timeout_s: RunOutcome("ok", result, None, facts))
    outcome = session.measure(job, 60)
    assert outcome.host_facts["first_query_s"] == pytest.approx(10.0)
    assert outcome.host_facts["round_start_latency_s"] == pytest.approx(5.0)
    codes = [w["code"] for w in outcome.result.warnings]
    assert "emulated_vm" in codes and "affinity_mismatch" in codes


def test_a_guest_that_ends_says_why_with_its_console_error(tmp_path):
    import subprocess as sp

    console = _Console({"init": (1001.0, [])}, errors=["mount hostroot (9p)"])
    session = _session(tmp_path, console, _plan("kvm"))
    session.proc = sp.Popen(["true"])
    session.proc.wait()
    assert session._exit_detail() == " (QEMU exit status 0): mount hostroot (9p)"
