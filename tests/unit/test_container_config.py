"""The OCI bundle the CN platform writes: config.json fields, mounts, CPU resources, and a
rootfs skeleton that holds no host file and is removed without following mounts."""
from __future__ import annotations

import json
import os

import pytest

from deploybench.platforms.container import ContainerSpec, container_env, remove_cgroup_dirs
from deploybench.platforms.cpu import CpuLimits
from deploybench.platforms.container.oci import (BindMount, cpu_resources, make_rootfs, oci_config,
                                       plan_mounts, python_dirs, remove_bundle, write_bundle)

PIN1 = CpuLimits(cpus=[1], quota_cores=None)
VNL2 = CpuLimits(cpus=[0, 1, 2, 3], quota_cores=2.0)


def config(limits=PIN1, mounts=(), **kw):
    args = dict(args=["/venv/bin/python", "-m", "deploybench.worker", "--serve", "stdio", "--job",
                      "/runs/r/job.json"],
                env={"PATH": "/usr/bin", "OMP_NUM_THREADS": "1"}, cwd="/runs/r",
                hostname="deploybench-abc", mounts=list(mounts), limits=limits,
                cgroups_path="/deploybench-abc", mems="0")
    args.update(kw)
    return oci_config(**args)


def test_config_has_every_namespace_but_user():
    kinds = [ns["type"] for ns in config()["linux"]["namespaces"]]
    assert sorted(kinds) == ["cgroup", "ipc", "mount", "network", "pid", "uts"]
    assert not any("path" in ns for ns in config()["linux"]["namespaces"])  # all new ones


def test_config_root_is_read_only_and_no_new_privileges():
    c = config()
    assert c["root"] == {"path": "rootfs", "readonly": True}
    assert c["process"]["noNewPrivileges"] is True
    assert c["process"]["terminal"] is False


def test_config_drops_every_capability():
    caps = config()["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted", "inheritable", "ambient"}
    assert all(v == [] for v in caps.values())


def test_config_mounts_proc_dev_sys_read_only_sys_and_tmpfs_tmp():
    by_dest = {m["destination"]: m for m in config()["mounts"]}
    assert by_dest["/proc"]["type"] == "proc"
    assert by_dest["/dev"]["type"] == "tmpfs"
    assert by_dest["/sys"]["type"] == "sysfs" and "ro" in by_dest["/sys"]["options"]
    assert by_dest["/sys/fs/cgroup"]["type"] == "cgroup" and "ro" in by_dest["/sys/fs/cgroup"]["options"]
    assert by_dest["/tmp"]["type"] == "tmpfs"


def test_config_bind_mounts_keep_read_only_flags():
    c = config(mounts=[BindMount("/usr", "/usr"), BindMount("/runs/r", "/runs/r", readonly=False)])
    binds = {m["destination"]: m["options"] for m in c["mounts"] if m["type"] == "bind"}
    assert "ro" in binds["/usr"] and "rbind" in binds["/usr"]
    assert "rw" in binds["/runs/r"] and "ro" not in binds["/runs/r"]


def test_config_process_args_env_cwd_hostname_and_cgroups_path():
    c = config()
    assert c["process"]["args"][1:3] == ["-m", "deploybench.worker"]
    assert "OMP_NUM_THREADS=1" in c["process"]["env"]
    assert c["process"]["cwd"] == "/runs/r"
    assert c["hostname"] == "deploybench-abc"
    assert c["linux"]["cgroupsPath"] == "/deploybench-abc"


def test_pinned_resources_are_a_cpuset_without_quota():
    cpu = config(PIN1)["linux"]["resources"]["cpu"]
    assert cpu == {"cpus": "1", "mems": "0"}


def test_vanilla_resources_are_a_quota_of_n_cores_over_all_cpus():
    cpu = config(VNL2)["linux"]["resources"]["cpu"]
    assert cpu["quota"] == 200_000 and cpu["period"] == 100_000
    assert cpu["cpus"] == "0-3"


def test_fractional_quota_rounds_to_microseconds():
    assert cpu_resources(CpuLimits([0, 1], 0.5, 100_000), "0")["quota"] == 50_000


def test_config_is_json_serialisable():
    assert json.loads(json.dumps(config(VNL2)))["ociVersion"].startswith("1.0")


def test_plan_mounts_has_one_writable_dir_and_skips_nested_read_only_dirs(tmp_path):
    (tmp_path / "py" / "lib").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "run").mkdir()
    mounts = plan_mounts([str(tmp_path / "py"), str(tmp_path / "py" / "lib"), str(tmp_path / "data")],
                         str(tmp_path / "run"), system_dirs=["/usr"])
    dests = [m.destination for m in mounts]
    assert [m.destination for m in mounts if not m.readonly] == [str(tmp_path / "run")]
    assert str(tmp_path / "py" / "lib") not in dests  # covered by its parent
    assert {"/usr", str(tmp_path / "py"), str(tmp_path / "data")} <= set(dests)
    assert all(m.source == m.destination for m in mounts)


def test_plan_mounts_orders_parents_before_children(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    mounts = plan_mounts([str(tmp_path / "a" / "b")], str(tmp_path / "a"), system_dirs=[])
    assert [m.destination for m in mounts] == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]


def test_plan_mounts_resolves_links(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "run").mkdir()
    mounts = plan_mounts([str(tmp_path / "link")], str(tmp_path / "run"), system_dirs=[])
    assert str(tmp_path / "real") in [m.source for m in mounts]


def test_python_dirs_cover_the_interpreter_and_the_package():
    import deploybench

    dirs = python_dirs()
    package = os.path.realpath(deploybench.__file__)
    exe = os.path.realpath(os.path.join(os.path.dirname(os.__file__)))
    assert any(package.startswith(d + "/") for d in dirs)
    assert any(exe == d or exe.startswith(d + "/") for d in dirs)


def test_rootfs_skeleton_has_mount_points_links_and_no_files(tmp_path):
    rootfs = tmp_path / "rootfs"
    make_rootfs(rootfs, [BindMount("/opt/x/y", "/opt/x/y")], extra_dirs=["/work/run"])
    for d in ("proc", "dev", "sys", "tmp", "usr", "etc", "opt/x/y", "work/run"):
        assert (rootfs / d).is_dir(), d
    if os.path.islink("/bin"):
        assert (rootfs / "bin").is_symlink() and os.readlink(rootfs / "bin") == os.readlink("/bin")
    files = [f for d, _, fs in os.walk(rootfs) for f in fs if not os.path.islink(os.path.join(d, f))]
    assert files == []


def test_write_and_remove_bundle_leaves_nothing(tmp_path):
    mounts = [BindMount("/usr", "/usr"), BindMount(str(tmp_path / "run"), str(tmp_path / "run"), False)]
    bundle = write_bundle("deploybench-t1", dict(
        args=["/bin/true"], env={}, cwd=str(tmp_path / "run"), hostname="h", limits=PIN1,
        cgroups_path="/deploybench-t1", mems="0"), mounts, parent=tmp_path)
    written = json.loads((bundle.path / "config.json").read_text())
    assert written["root"]["readonly"] is True
    assert (bundle.rootfs / str(tmp_path / "run").lstrip("/")).is_dir()
    remove_bundle(bundle.path)
    assert not bundle.path.exists()


def test_remove_bundle_refuses_to_delete_foreign_files(tmp_path):
    bundle = tmp_path / "deploybench-t2"
    make_rootfs(bundle / "rootfs", [])
    stray = bundle / "rootfs" / "usr" / "precious"
    stray.write_text("host data")
    with pytest.raises(OSError):
        remove_bundle(bundle)
    assert stray.read_text() == "host data"


def test_container_env_is_clean_and_sized_to_the_budget(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "x")
    env = container_env(2, {"PYTHONPATH": "/apps"})
    assert env["OMP_NUM_THREADS"] == "2" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env["PYTHONPATH"] == "/apps"
    assert "SECRET_TOKEN" not in env
    assert env["HOME"] == "/tmp"


def test_remove_cgroup_dirs_refuses_names_that_are_not_ours(tmp_path):
    with pytest.raises(ValueError):
        remove_cgroup_dirs("user.slice", root=tmp_path)


def test_remove_cgroup_dirs_removes_the_name_in_every_hierarchy(tmp_path):
    for h in ("cpu", "cpuset", "memory"):
        (tmp_path / h / "deploybench-x1" / "child").mkdir(parents=True)
    (tmp_path / "cpu" / "deploybench-other").mkdir()
    removed = remove_cgroup_dirs("deploybench-x1", root=tmp_path)
    assert len(removed) == 3
    assert not any((tmp_path / h / "deploybench-x1").exists() for h in ("cpu", "cpuset", "memory"))
    assert (tmp_path / "cpu" / "deploybench-other").exists()


def test_unknown_runtime_or_engine_is_a_one_line_error():
    from deploybench.platforms.base import PlatformError, PlatformOptions
    from deploybench.platforms.container import Container

    with pytest.raises(PlatformError, match="runc, crun"):
        Container(PlatformOptions(runtime="kata"))
    with pytest.raises(PlatformError, match="docker, podman"):
        Container(PlatformOptions(engine="lxc"))


def test_spec_for_a_session_mounts_data_read_only_and_its_folder_writable(tmp_path):
    from deploybench.execute import RunSettings, build_job
    from deploybench.platforms.container import Container
    from deploybench.scenario import Scenario

    (tmp_path / "data").mkdir()
    (tmp_path / "run").mkdir()
    scenario = Scenario.parse("CN/1/VNL/CPU", app="ic", model_size="tiny")
    job = build_job(scenario, data_dir=tmp_path / "data", settings=RunSettings())
    spec = Container().spec_for(scenario, job, tmp_path / "run")
    by_dest = {m.destination: m for m in spec.mounts}
    assert by_dest[str(tmp_path / "data")].readonly
    assert not by_dest[str(tmp_path / "run")].readonly
    assert [m for m in spec.mounts if not m.readonly] == [by_dest[str(tmp_path / "run")]]
    assert spec.limits.quota_cores == 1.0
    assert spec.container_id.startswith("deploybench-")
    assert spec.args[spec.args.index("--job") + 1] == str(tmp_path / "run" / "job.json")
    assert spec.args[spec.args.index("--serve") + 1] == "stdio" and "--die-with-parent" in spec.args
    assert isinstance(spec, ContainerSpec)
