"""CN with a GPU: the NVIDIA device nodes and driver libraries found on a fake host tree, and
what the OCI bundle and the engines get from them."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploybench.platforms.gpu import (DeviceNode, find_device_nodes, find_driver_libraries,
                                       nvidia_passthrough, parse_ldconfig)

#: what a one-GPU host has (major 195 is the NVIDIA driver's; uvm and caps get dynamic ones)
NODES = {"dev/nvidiactl": (195, 255), "dev/nvidia0": (195, 0), "dev/nvidia-uvm": (508, 0),
         "dev/nvidia-uvm-tools": (508, 1), "dev/nvidia-modeset": (195, 254),
         "dev/nvidia-caps/nvidia-cap1": (511, 1), "dev/nvidia-caps/nvidia-cap2": (511, 2)}


def fake_host(root: Path, nodes=NODES, libdir="usr/lib/x86_64-linux-gnu", extra_lib_dir=None):
    """Regular files stand in for device nodes (a fake stat gives them char-device modes);
    the libraries are real files and links."""
    for rel in nodes:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev" / "null").write_text("")  # not NVIDIA: ignored
    lib = root / libdir
    lib.mkdir(parents=True, exist_ok=True)
    for name in ("libcuda.so.570.86.15", "libnvidia-ml.so.570.86.15", "libnvidia-ptxjitcompiler.so.570.86.15"):
        (lib / name).write_text("elf")
    (lib / "libcuda.so.1").symlink_to("libcuda.so.570.86.15")
    (lib / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.570.86.15")
    (lib / "libc.so.6").write_text("not nvidia")
    if extra_lib_dir:
        other = root / extra_lib_dir
        other.mkdir(parents=True)
        (other / "libnvidia-gpucomp.so.570.86.15").write_text("elf")

    def fake_stat(path: Path):
        rel = str(Path(path).relative_to(root))
        if rel not in nodes:
            return os.stat(path)
        major, minor = nodes[rel]
        return SimpleNamespace(st_mode=stat.S_IFCHR | 0o666, st_rdev=os.makedev(major, minor),
                               st_uid=0, st_gid=0)
    return fake_stat


def test_device_nodes_are_found_with_their_numbers_and_modes(tmp_path):
    nodes = find_device_nodes(tmp_path, fake_host(tmp_path))
    assert [n.path for n in nodes] == ["/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2",
                                       "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                       "/dev/nvidia0", "/dev/nvidiactl"]
    ctl = next(n for n in nodes if n.path == "/dev/nvidiactl")
    assert ctl == DeviceNode("/dev/nvidiactl", 195, 255, 0o666, 0, 0)
    assert ctl.to_oci() == {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255,
                            "fileMode": 0o666, "uid": 0, "gid": 0}
    assert ctl.allow_rule() == {"allow": True, "type": "c", "major": 195, "minor": 255, "access": "rwm"}


def test_a_regular_file_named_like_a_device_is_not_a_device(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidia0").write_text("")
    assert find_device_nodes(tmp_path) == []


def test_ldconfig_lines_give_the_64_bit_driver_libraries_only():
    text = ("1234 libs found in cache `/etc/ld.so.cache'\n"
            "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n"
            "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
            "\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1\n"
            "\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12\n"
            "\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6\n")
    assert parse_ldconfig(text) == ["/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
                                    "/usr/lib/x86_64-linux-gnu/libcuda.so.1"]


def test_libraries_come_with_the_files_their_links_name(tmp_path):
    fake_host(tmp_path)
    text = f"\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
    libs = find_driver_libraries(tmp_path, text)
    assert libs == ["/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.570.86.15"]
    # without a linker cache: the usual folders are searched
    scanned = find_driver_libraries(tmp_path, "")
    assert "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.570.86.15" in scanned
    assert not any("libc.so" in p for p in scanned)


def test_passthrough_gives_the_bundle_devices_rules_and_library_folders(tmp_path):
    fake_stat = fake_host(tmp_path, extra_lib_dir="opt/nvidia/lib")
    text = ("\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
            "\tlibnvidia-gpucomp.so.570.86.15 (libc6,x86-64) => /opt/nvidia/lib/libnvidia-gpucomp.so.570.86.15\n")
    gpu = nvidia_passthrough(tmp_path, text, fake_stat)
    assert gpu.problem is None
    assert len(gpu.oci_devices()) == 7 and all(r["allow"] for r in gpu.oci_device_rules())
    assert gpu.library_dirs() == ["/opt/nvidia/lib", "/usr/lib/x86_64-linux-gnu"]
    assert gpu.podman_args()[:2] == ["--device", "/dev/nvidia-caps/nvidia-cap1:/dev/nvidia-caps/nvidia-cap1:rwm"]
    assert gpu.docker_args() == ["--gpus", "all"]


@pytest.mark.parametrize("drop, problem", [
    (("dev/nvidiactl", "dev/nvidia0", "dev/nvidia-uvm", "dev/nvidia-uvm-tools", "dev/nvidia-modeset",
      "dev/nvidia-caps/nvidia-cap1", "dev/nvidia-caps/nvidia-cap2"), "no NVIDIA device nodes"),
    (("dev/nvidia0",), "/dev/nvidiactl or /dev/nvidia<N> is missing"),
    (("dev/nvidia-uvm",), "load the nvidia-uvm module"),
])
def test_a_host_missing_a_piece_gets_a_reason(tmp_path, drop, problem):
    nodes = {k: v for k, v in NODES.items() if k not in drop}
    gpu = nvidia_passthrough(tmp_path, "", fake_host(tmp_path, nodes))
    assert problem in gpu.problem


def test_no_libcuda_is_a_reason(tmp_path):
    fake_stat = fake_host(tmp_path, libdir="usr/share/empty")
    for p in (tmp_path / "usr/share/empty").iterdir():
        if p.name.startswith("libcuda"):
            p.unlink()
    assert "libcuda.so" in nvidia_passthrough(tmp_path, "", fake_stat).problem


def test_the_oci_config_gets_the_nodes_after_the_deny_all_rule(tmp_path):
    from deploybench.platforms.cpu import limits_for
    from deploybench.platforms.container.oci import oci_config, plan_mounts

    gpu = nvidia_passthrough(tmp_path, "", fake_host(tmp_path))
    args = dict(args=["true"], env={"PATH": "/bin"}, cwd=str(tmp_path), hostname="h",
                mounts=plan_mounts([], str(tmp_path)), limits=limits_for(1, True), cgroups_path="/x")
    plain = oci_config(**args)
    config = oci_config(**args, gpu=gpu)
    assert "devices" not in plain["linux"] and plain["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    rules = config["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"} and len(rules) == 1 + len(gpu.devices)
    assert [d["path"] for d in config["linux"]["devices"]] == [d.path for d in gpu.devices]
    # nothing else changes: still no capabilities, still a read-only root
    assert config["process"] == plain["process"] and config["root"] == {"path": "rootfs", "readonly": True}


def test_engines_pass_the_gpu_on(tmp_path, monkeypatch):
    from deploybench.platforms.container.launchers import ContainerSpec, EngineCli
    from deploybench.platforms.container.oci import plan_mounts
    from deploybench.platforms.cpu import limits_for

    gpu = nvidia_passthrough(tmp_path, "", fake_host(tmp_path))
    spec = ContainerSpec("deploybench-gputest", ["true"], {}, str(tmp_path), plan_mounts([], str(tmp_path)),
                         limits_for(1, True), tmp_path / "e", gpu=gpu)
    docker = EngineCli("docker")
    monkeypatch.setattr(docker, "_docker_cgroup_driver", lambda: "cgroupfs")
    args = docker.create_args(spec, ["deploybench-rootfs:x"])
    assert args[args.index("--gpus") + 1] == "all"
    assert args.index("--gpus") < args.index("deploybench-rootfs:x")  # flags before the image
    podman = EngineCli("podman")
    args = podman.create_args(spec, ["--rootfs", str(tmp_path / "rootfs")])
    assert args.count("--device") == len(gpu.devices)
    assert args.index("--device") < args.index("--rootfs")  # every flag before --rootfs


def test_cn_gpu_scenarios_are_refused_on_this_host_in_one_line(host):
    from deploybench.platforms.container import Container
    from deploybench.scenario import Scenario

    if host.gpus:
        pytest.skip("this host has a GPU")
    reason = Container().scenario_problem(Scenario.parse("CN/1/PIN/GPU"), host)
    assert reason.startswith("no GPU on this host") and "\n" not in reason
