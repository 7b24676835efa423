"""CN through real OCI runtimes and engines: the worker's own view from inside the container
(namespaces, read-only root, no network, pinned cores or quota), clean-up after success,
timeout, kill and Ctrl-C, the thread-pool trap, and the Docker / Podman engines."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from deploybench.platforms.base import PlatformOptions
from deploybench.platforms.container import Container, OciRuntime
from deploybench.host import CGROUP_ROOT
from deploybench.platforms.oci import bundles_root, mounts_under
from deploybench.scenario import Scenario
from deploybench.sweep import RunSettings, build_job, run_one
from deploybench.warnings import WarningCode

ISOLATED = ("pid", "mnt", "ipc", "uts", "net", "cgroup")


@pytest.fixture(scope="module")
def runc(needs_cgroups):
    problem = OciRuntime("runc").probe()
    if problem:
        pytest.skip(f"runc cannot run a container here: {problem}")
    return OciRuntime("runc")


def host_namespaces() -> dict[str, str]:
    return {n: os.readlink(f"/proc/self/ns/{n}") for n in ISOLATED}


def assert_nothing_left(cid: str, runtime: str = "runc") -> None:
    if shutil.which(runtime):
        assert cid not in OciRuntime(runtime).container_ids()
    left = [str(p) for p in CGROUP_ROOT.glob(f"*/{cid}")] + [str(p) for p in CGROUP_ROOT.glob(cid)]
    assert left == [], f"cgroups left: {left}"
    assert not (bundles_root() / cid).exists()
    assert mounts_under(bundles_root()) == []


def check_isolation(env: dict, cid: str) -> None:
    iso = env["isolation"]
    host = host_namespaces()
    for name in ISOLATED:
        assert iso["namespaces"][name] != host[name], f"{name} namespace is the host's"
    assert iso["hostname"] == cid
    assert iso["pid"] == 1  # the worker is the container's init
    assert iso["root_readonly"] is True
    assert iso["net_interfaces"] == ["lo"]


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("mode", ["PIN", "VNL"])
def test_runc_container_gives_the_worker_what_was_asked(runc, host, ic_data, cores, mode):
    if cores > host.cores:
        pytest.skip(f"the host has {host.cores} usable cores")
    scenario = Scenario.parse(f"CN/{cores}/{mode}/CPU", app="ic", model_size="tiny", requests=8)
    record = run_one(scenario, Container(), data_dir=ic_data, settings=RunSettings(timeout_s=180))
    assert record.status == "ok", record.error
    facts, env = record.platform, record.environment
    cid = facts["container_id"]
    check_isolation(env, cid)
    if mode == "PIN":
        assert env["affinity"] == facts["limits"]["cpus"] and len(env["affinity"]) == cores
        assert env["cgroup"]["cpuset"] == env["affinity"]
        assert env["cgroup"]["cpu_quota_cores"] is None
    else:
        assert env["cgroup"]["cpu_quota_cores"] == pytest.approx(cores)
        assert env["affinity"] == host.usable_cpus  # floats over the whole host
        assert facts["cpu_stat"]["nr_periods"] > 0
    assert env["cpu_budget"] == cores and env["torch_threads"] == cores
    assert facts["runtime"] == "runc" and facts["runtime_version"]
    assert facts["cpu_stat"]["cpu_usage_ms"] > 0
    for latency in ("create_s", "start_s", "delete_s", "start_latency_s"):
        assert facts[latency] > 0, latency
    assert not [w for w in record.warnings if w["code"] in
                (WarningCode.THREADS_OVER_BUDGET.value, WarningCode.AFFINITY_MISMATCH.value)]
    assert_nothing_left(cid)


def test_crun_runs_the_same_container(needs_cgroups, ic_data):
    crun = OciRuntime("crun")
    problem = crun.probe()
    if problem:
        pytest.skip(f"crun cannot run a container here: {problem}")
    scenario = Scenario.parse("CN/1/PIN/CPU", app="ic", model_size="tiny", requests=4)
    record = run_one(scenario, Container(PlatformOptions(runtime="crun")), data_dir=ic_data,
                     settings=RunSettings(timeout_s=180))
    assert record.status == "ok", record.error
    assert record.platform["runtime"] == "crun"
    check_isolation(record.environment, record.platform["container_id"])
    assert record.environment["affinity"] == record.platform["limits"]["cpus"]
    assert_nothing_left(record.platform["container_id"], "crun")


def _job(tmp_path, ic_data, name="CN/1/PIN/CPU", **changes):
    run_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    run_dir.chmod(0o777)
    scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=4)
    job = build_job(scenario, data_dir=ic_data, run_dir=run_dir, run_id="t",
                    settings=RunSettings()).with_(**changes)
    return scenario, job


def test_a_hung_worker_is_killed_at_the_timeout_and_nothing_is_left(runc, tmp_path, ic_data):
    scenario, job = _job(tmp_path, ic_data, debug_hang_s=120)
    t = time.monotonic()
    outcome = Container().run(scenario, job, timeout_s=3)
    assert time.monotonic() - t < 30
    assert outcome.status == "timeout" and "3 s timeout" in outcome.error
    assert "delete_s" in outcome.host_facts
    assert_nothing_left(outcome.host_facts["container_id"])


def test_a_worker_killed_mid_run_is_a_recorded_failure_and_nothing_is_left(runc, tmp_path, ic_data, store):
    before = set(runc.container_ids())
    killed: list[int] = []

    def kill_new_container() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for cid in set(runc.container_ids()) - before:
                state = subprocess.run(["runc", "state", cid], capture_output=True, text=True)
                if state.returncode == 0 and json.loads(state.stdout)["status"] == "running":
                    pid = json.loads(state.stdout)["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.1)

    scenario = Scenario.parse("CN/1/PIN/CPU", app="ic", model_size="tiny", requests=4)
    platform = Container()
    killer = threading.Thread(target=kill_new_container)
    killer.start()
    # debug_hang_s keeps the worker alive long enough to be killed from outside
    original = platform.run
    platform.run = lambda sc, job, timeout_s: original(sc, job.with_(debug_hang_s=30), timeout_s)
    record = run_one(scenario, platform, data_dir=ic_data, settings=RunSettings(timeout_s=120))
    killer.join()
    store.add(record)
    assert killed, "the container never ran"
    assert record.status == "failed"
    assert "no result" in record.error and "-9" in record.error
    assert [r.status for r in store.runs()] == ["failed"]
    assert_nothing_left(record.platform["container_id"])


def test_ctrl_c_during_a_run_cleans_up_and_reports_interrupted(runc, tmp_path, ic_data):
    scenario, job = _job(tmp_path, ic_data, debug_hang_s=60)
    timer = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        outcome = Container().run(scenario, job, timeout_s=120)
    finally:
        timer.cancel()
    assert outcome.status == "interrupted"
    assert_nothing_left(outcome.host_facts["container_id"])


HOST_SIZED_APP = textwrap.dedent('''
    import os
    from threadpoolctl import threadpool_limits
    from deploybench.apps.ic import ImageClassification

    class HostSizedPools(ImageClassification):
        """Sizes its BLAS pool from os.cpu_count(), as many libraries do."""
        def load(self, data_dir, size, backend, threads, **kw):
            super().load(data_dir, size, backend, threads, **kw)
            self._limits = threadpool_limits(os.cpu_count(), user_api="blas")
''')


def test_a_pool_sized_from_the_host_inside_a_container_is_warned_about(runc, host, tmp_path, ic_data):
    if host.cores < 2:
        pytest.skip("needs a host with more cores than the container's budget")
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "hostsized.py").write_text(HOST_SIZED_APP)
    scenario = Scenario.parse("CN/1/PIN/CPU", app="hostsized:HostSizedPools", model_size="tiny", requests=4)
    platform = Container(extra_env={"PYTHONPATH": str(apps)}, extra_mounts=(str(apps),))
    _, job = _job(tmp_path, ic_data)
    job = job.with_(app="hostsized:HostSizedPools")
    outcome = platform.run(scenario, job, timeout_s=180)
    assert outcome.status == "ok", outcome.error
    env = outcome.result.environment
    assert env["os_cpu_count"] == os.cpu_count()  # the host's count leaks into the container
    assert env["cpu_budget"] == 1 and env["torch_threads"] == 1  # the worker's own pools obey
    codes = [w["code"] for w in outcome.result.warnings]
    assert WarningCode.THREADS_OVER_BUDGET.value in codes


# -- engines -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def private_dockerd(needs_cgroups):
    """A dockerd of our own (private data root, no networking set-up), stopped after."""
    from deploybench.platforms.base import PlatformError
    from deploybench.platforms.engines import private_dockerd as start_dockerd

    try:
        daemon = start_dockerd()
        host = daemon.__enter__()
    except PlatformError as exc:
        pytest.skip(str(exc))
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    try:
        yield host
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old
        daemon.__exit__(None, None, None)


def test_docker_engine_runs_the_worker_with_cpus_and_leaves_no_container(private_dockerd, host, ic_data):
    from deploybench.platforms.engines import DockerEngine

    engine = DockerEngine()
    assert engine.problem() is None
    scenario = Scenario.parse("CN/1/VNL/CPU", app="ic", model_size="tiny", requests=4)
    record = run_one(scenario, Container(PlatformOptions(engine="docker")), data_dir=ic_data,
                     settings=RunSettings(timeout_s=180))
    assert record.status == "ok", record.error
    facts, env = record.platform, record.environment
    check_isolation(env, facts["container_id"])
    assert env["cgroup"]["cpu_quota_cores"] == pytest.approx(1.0)
    assert env["affinity"] == host.usable_cpus
    assert facts["image"].startswith("deploybench-rootfs:")
    assert facts["cpu_stat"]["cpu_usage_ms"] > 0
    assert engine.container_ids() == []
    assert_nothing_left(facts["container_id"])


def test_docker_engine_that_is_not_running_is_explained_in_one_line(monkeypatch, tmp_path):
    from deploybench.platforms.engines import DockerEngine

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    problem = DockerEngine().problem()
    assert "nothing.sock" in problem and "\n" not in problem


def test_podman_engine_runs_the_worker_pinned(needs_cgroups, ic_data):
    from deploybench.platforms.engines import PodmanEngine

    engine = PodmanEngine()
    problem = engine.problem()
    if problem:
        pytest.skip(problem)
    scenario = Scenario.parse("CN/1/PIN/CPU", app="ic", model_size="tiny", requests=4)
    record = run_one(scenario, Container(PlatformOptions(engine="podman")), data_dir=ic_data,
                     settings=RunSettings(timeout_s=180))
    assert record.status == "ok", record.error
    facts, env = record.platform, record.environment
    check_isolation(env, facts["container_id"])
    assert env["affinity"] == facts["limits"]["cpus"]
    assert facts["container_id"] not in engine.container_ids()
    assert_nothing_left(facts["container_id"])
