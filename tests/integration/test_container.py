"""CN through real OCI runtimes and engines: the warm worker's own view from inside the
container (namespaces, read-only root, no network, pinned cores or quota), several rounds
over stdin/stdout, pause, clean-up after success, a hung round, a killed worker and Ctrl-C,
the thread-pool trap, and the Docker / Podman engines."""
from __future__ import annotations

import os
import shutil
import signal
import textwrap
import threading
import time

import pytest

from deploybench.host import CGROUP_ROOT
from deploybench.platforms.base import PlatformOptions
from deploybench.platforms.container import Container, probe
from deploybench.platforms.container.launchers import EngineCli, OciRuntime
from deploybench.platforms.container.oci import bundles_root, mounts_under
from deploybench.scenario import Scenario
from deploybench.warnings import WarningCode
from tests.conftest import measure, open_session, round_job

ISOLATED = ("pid", "mnt", "ipc", "uts", "net", "cgroup")


@pytest.fixture(scope="module")
def runc(needs_cgroups):
    problem = probe(OciRuntime("runc"))
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


def _scenario(name="CN/1/PIN/CPU", requests=8, **kw):
    return Scenario.parse(name, app="ic", model_size="tiny", requests=requests, **kw)


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("mode", ["PIN", "VNL"])
def test_runc_container_gives_the_warm_worker_what_was_asked(runc, host, ic_data, cores, mode):
    if cores > host.cores:
        pytest.skip(f"the host has {host.cores} usable cores")
    records = measure(_scenario(f"CN/{cores}/{mode}/CPU"), Container(), ic_data, rounds=2, timeout_s=180)
    assert [r.status for r in records] == ["ok", "ok"], records[0].error
    record = records[-1]
    facts, env = record.platform, record.environment
    cid = facts["container_id"]
    assert records[0].platform["container_id"] == cid  # two rounds in one container
    check_isolation(env, cid)
    if mode == "PIN":
        assert env["affinity"] == facts["limits"]["cpus"] and len(env["affinity"]) == cores
        assert env["cgroup"]["cpuset"] == env["affinity"]
        assert env["cgroup"]["cpu_quota_cores"] is None
    else:
        assert env["cgroup"]["cpu_quota_cores"] == pytest.approx(cores)
        assert env["affinity"] == host.usable_cpus  # floats over the whole host
    assert env["cpu_budget"] == cores and env["torch_threads"] == cores
    assert facts["runtime"] == "runc" and facts["runtime_version"] and facts["channel"] == "stdio"
    assert facts["cpu_stat"]["cpu_usage_ms"] > 0  # the round's share, read from the host
    for latency in ("create_s", "start_s", "start_latency_s"):
        assert facts[latency] > 0, latency
    assert not [w for w in record.warnings if w["code"] in
                (WarningCode.THREADS_OVER_BUDGET.value, WarningCode.AFFINITY_MISMATCH.value)]
    assert_nothing_left(cid)


def test_crun_runs_the_same_container(needs_cgroups, ic_data):
    problem = probe(OciRuntime("crun"))
    if problem:
        pytest.skip(f"crun cannot run a container here: {problem}")
    (record,) = measure(_scenario(requests=4), Container(PlatformOptions(runtime="crun")), ic_data,
                        timeout_s=180)
    assert record.status == "ok", record.error
    assert record.platform["runtime"] == "crun"
    check_isolation(record.environment, record.platform["container_id"])
    assert record.environment["affinity"] == record.platform["limits"]["cpus"]
    assert_nothing_left(record.platform["container_id"], "crun")


def test_a_paused_container_uses_no_cpu(runc, ic_data):
    scenario = _scenario(requests=4)
    with open_session(scenario, Container(), ic_data) as session:
        pid = session.attached.pid
        assert session.measure(round_job(scenario, ic_data), 120).status == "ok"
        session.pause()
        fields = lambda: sum(int(x) for x in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13])  # noqa: E731
        before = fields()
        time.sleep(1.0)
        assert fields() == before
        assert session.measure(round_job(scenario, ic_data), 120).status == "ok"
        cid = session.spec.container_id
    assert_nothing_left(cid)


def test_a_hung_round_is_killed_at_the_timeout_and_nothing_is_left(runc, ic_data):
    scenario = _scenario(requests=4)
    with open_session(scenario, Container(), ic_data) as session:
        t = time.monotonic()
        outcome = session.measure(round_job(scenario, ic_data, debug_hang_s=120), timeout_s=3)
        assert time.monotonic() - t < 30
        assert outcome.status == "timeout" and "3 s timeout" in outcome.error
        cid = session.spec.container_id
    assert session.facts.details["delete_s"] >= 0
    assert_nothing_left(cid)


def test_a_worker_killed_mid_round_is_a_recorded_failure_and_nothing_is_left(runc, ic_data):
    scenario = _scenario(requests=4)
    with open_session(scenario, Container(), ic_data) as session:
        pid = session.attached.pid  # the container's init, as the host sees it
        threading.Timer(1.0, lambda: os.kill(pid, signal.SIGKILL)).start()
        outcome = session.measure(round_job(scenario, ic_data, debug_hang_s=30), 60)
        cid = session.spec.container_id
    assert outcome.status == "failed"
    assert "the worker died during the round" in outcome.error
    assert_nothing_left(cid)


def test_ctrl_c_during_a_round_cleans_up_and_reports_interrupted(runc, ic_data):
    # Python's own SIGINT handler, whatever an earlier test in this process left installed
    # (twice this session a full run's self-sent SIGINT never became a KeyboardInterrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    scenario = _scenario(requests=4)
    with open_session(scenario, Container(), ic_data) as session:
        timer = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        try:
            outcome = session.measure(round_job(scenario, ic_data, debug_hang_s=60), timeout_s=120)
        finally:
            timer.cancel()
        cid = session.spec.container_id
    assert outcome.status == "interrupted"
    assert_nothing_left(cid)


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
    (record,) = measure(scenario, platform, ic_data, timeout_s=180)
    assert record.status == "ok", record.error
    env = record.environment
    assert env["os_cpu_count"] == os.cpu_count()  # the host's count leaks into the container
    assert env["cpu_budget"] == 1 and env["torch_threads"] == 1  # the worker's own pools obey
    assert WarningCode.THREADS_OVER_BUDGET.value in record.warning_codes


# -- engines -------------------------------------------------------------------------------
def test_docker_engine_runs_the_warm_worker_with_cpus_and_leaves_no_container(private_dockerd, host, ic_data):
    engine = EngineCli("docker")
    assert engine.problem() is None
    records = measure(_scenario("CN/1/VNL/CPU", requests=4), Container(PlatformOptions(engine="docker")),
                      ic_data, rounds=2, timeout_s=180)
    assert [r.status for r in records] == ["ok", "ok"], records[0].error
    facts, env = records[-1].platform, records[-1].environment
    check_isolation(env, facts["container_id"])
    assert env["cgroup"]["cpu_quota_cores"] == pytest.approx(1.0)
    assert env["affinity"] == host.usable_cpus
    assert facts["image"].startswith("deploybench-rootfs:")
    assert facts["cpu_stat"]["cpu_usage_ms"] > 0
    assert facts["container_id"] not in engine.container_ids()
    assert_nothing_left(facts["container_id"])


def test_docker_engine_that_is_not_running_is_explained_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    problem = EngineCli("docker").problem()
    assert "nothing.sock" in problem and "\n" not in problem


def test_podman_engine_runs_the_warm_worker_pinned(needs_cgroups, ic_data):
    engine = EngineCli("podman")
    problem = engine.problem()
    if problem:
        pytest.skip(problem)
    records = measure(_scenario(requests=4), Container(PlatformOptions(engine="podman")), ic_data,
                      rounds=2, timeout_s=180)
    assert [r.status for r in records] == ["ok", "ok"], records[0].error
    facts, env = records[-1].platform, records[-1].environment
    check_isolation(env, facts["container_id"])
    assert env["affinity"] == facts["limits"]["cpus"]
    assert facts["container_id"] not in engine.container_ids()
    assert_nothing_left(facts["container_id"])
