"""The fleet's values and rules that need no cluster: host fingerprints and classes, the task
spec a block set travels as, the task process's environment, the cores of a host and of a
local fleet, refusing a host of another version, the answer per host class in the report,
and lost runs in show, the report and progress lines."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from .fakes import record
from .sweep_fakes import QUIET, FakePlatform

from deploybench import __version__
from deploybench.cli import app
from deploybench.execute import BlockSet, Contender
from deploybench.fleet import (REMOVED_THREAD_VARIABLES, FleetError, HostCard, TaskSpec, choose_cores,
                               compatibility_problem, local_shares, parse_fleet, task_environment, task_spec)
from deploybench.fleetview import fleet_view
from deploybench.host import git_revision, host_class_label, host_fingerprint, run_metadata
from deploybench.platforms.base import PlatformOptions
from deploybench.platforms.cpu import IoLimits
from deploybench.progress import run_line
from deploybench.scenario import Scenario
from deploybench.store import LOST_STATUS, Store
from deploybench.synthetic import synthetic_runs

runner = CliRunner()
BOX = {"host": "node1", "cpu_model": "AMD EPYC 7B13", "host_cores": 8, "memory_gib": 31.3,
       "kernel": "6.1.0-18-amd64", "kvm": True, "gpus": []}


# -- host classes -------------------------------------------------------------------------------
def test_identical_hosts_share_a_fingerprint_whatever_their_name():
    twin = {**BOX, "host": "node2", "memory_gib": 31.1, "loadavg_1m": 3.0, "git_revision": "other"}
    assert host_fingerprint(BOX) == host_fingerprint(twin)
    assert host_fingerprint(BOX).startswith("hc-") and len(host_fingerprint(BOX)) == 13


@pytest.mark.parametrize("change", [{"host_cores": 4}, {"cpu_model": "Intel Xeon"}, {"kernel": "6.8.0"},
                                    {"kvm": False}, {"gpus": ["NVIDIA H200"]}, {"memory_gib": 63.8}])
def test_another_kind_of_host_is_another_class(change):
    assert host_fingerprint({**BOX, **change}) != host_fingerprint(BOX)


def test_runs_stored_before_kvm_and_gpus_were_recorded_hash_as_a_host_without_them():
    old = {k: v for k, v in BOX.items() if k not in ("kvm", "gpus")}
    assert host_fingerprint(old) == host_fingerprint({**BOX, "kvm": False, "gpus": []})


def test_run_metadata_carries_its_fingerprint_and_the_label_says_the_class():
    meta = run_metadata()
    assert meta["fingerprint"] == host_fingerprint(meta)
    assert meta["deploybench_version"] == __version__
    assert host_class_label(BOX) == "AMD EPYC 7B13, 8 cores, 32 GiB, Linux 6.1.0-18-amd64, /dev/kvm"


# -- where things run ------------------------------------------------------------------------------
def test_fleet_addresses_and_local_counts_are_parsed_or_refused_in_one_line():
    assert parse_fleet("local:3") == ("local", 3)
    assert parse_fleet("tcp://10.0.0.1:8786") == ("tcp", "tcp://10.0.0.1:8786")
    assert parse_fleet("sched:8786") == ("tcp", "tcp://sched:8786")
    for bad in ("local:0", "local:x", "sched", "tcp://"):
        with pytest.raises(FleetError) as info:
            parse_fleet(bad)
        assert "\n" not in str(info.value)


def test_local_workers_get_disjoint_equal_shares_and_the_rest_keeps_dask_threads():
    assert local_shares(2, [0, 1]) == ([[0], [1]], None)
    assert local_shares(2, [0, 1, 2, 3, 4]) == ([[0, 1], [2, 3]], 4)
    with pytest.raises(FleetError, match="use at most local:2"):
        local_shares(3, [0, 1])


def test_a_host_with_cores_to_spare_keeps_one_for_dask_threads():
    assert choose_cores([0, 1]) == ([0, 1], None)  # none to spare: recorded, not taken
    assert choose_cores([0, 1, 2, 3]) == ([0, 1, 2], 3)
    assert choose_cores([0, 1, 2, 3], "none") == ([0, 1, 2, 3], None)
    assert choose_cores([0, 1], "1") == ([0], 1)
    with pytest.raises(FleetError, match="--housekeeping-cpu"):
        choose_cores([0, 1], "two")


def test_the_task_environment_drops_the_thread_variables_dask_sets_and_says_which():
    env, removed = task_environment({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/bin"})
    assert removed == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert not set(REMOVED_THREAD_VARIABLES) & set(env) and env["PATH"] == "/bin"


# -- what travels ---------------------------------------------------------------------------------
def test_a_block_set_travels_as_a_task_spec_with_its_data_recipe_and_throttle(tmp_path):
    from deploybench.apps import create_app
    from deploybench.datasets.cache import ensure_data

    data = ensure_data(create_app("ic"), 2, 7, out_dir=tmp_path / "ic-data")
    platform = FakePlatform()
    platform.options = PlatformOptions(pin_cpus=(1,), io_limits=IoLimits("254:0", 100_000_000, 150))
    contenders = (Contender(Scenario.parse("BM/1/PIN/CPU", requests=4), platform, data, QUIET),
                  Contender(Scenario.parse("BM/1/VNL/CPU", requests=4), FakePlatform(), tmp_path, QUIET))
    spec = task_spec(BlockSet(contenders, blocks=3, warmup_rounds=1, epoch=5, study="s", seed=9))
    back = TaskSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert back == spec and spec.to_json()["schema"] == 1
    first, second = back.contenders
    assert (first.data.app, first.data.count, first.data.seed) == ("ic", 2, 7) and first.data.sha256
    assert first.throttle == {"read_bps": 100_000_000, "read_iops": 150}  # the device: the host's own
    assert first.options["pin_cpus"] == [1] and "io_limits" not in first.options
    assert second.data.app is None and second.data.path == str(tmp_path)  # no manifest: the path as is
    assert Scenario.from_json(first.scenario).name == "BM/1/PIN/CPU" and back.epoch == 5


def card(**changes) -> HostCard:
    values = dict(name="node1", hostname="node1", fingerprint=host_fingerprint(BOX), label=host_class_label(BOX),
                  cpus=[0, 1], version=__version__, git_revision=git_revision(),
                  platforms={"BM": "ok", "CN": "ok", "VM": "emulated", "MVM": "no"},
                  resources={"bench_host": 1, "BM": 1, "CN": 1, "VM": 1}, kvm="no", gpus=[],
                  housekeeping_cpu=None, metadata=BOX)
    values.update(changes)
    return HostCard(**values)


def test_a_host_card_round_trips_and_says_what_it_can_run():
    c = card()
    assert HostCard.from_json(json.loads(json.dumps(c.to_json()))) == c
    assert c.can_run() == ["BM", "CN", "VM"] and c.cores == 2
    with pytest.raises(FleetError, match="schema"):
        HostCard.from_json({**c.to_json(), "schema": 99})


def test_a_local_fleet_waits_for_all_its_workers_to_become_hosts(monkeypatch):
    """Workers join the scheduler before their preload (doctor) makes them hosts: the sweep of
    a local:N fleet starts when N are hosts, not on the first one."""
    import itertools

    from deploybench import executors, fleet

    addresses = ["tcp://a", "tcp://b", "tcp://c"]
    looks = itertools.count()
    ready_after = {"tcp://a": 0, "tcp://b": 2, "tcp://c": 4}  # the look at which each is a host

    def describe(client, which):
        n = next(looks)
        return {a: (card(name=a) if n >= ready_after[a] else None, None) for a in which}

    monkeypatch.setattr(fleet, "worker_addresses", lambda client: addresses)
    monkeypatch.setattr(fleet, "describe_workers", describe)
    monkeypatch.setattr(executors.time, "sleep", lambda s: None)
    ex = object.__new__(executors.DaskExecutor)
    ex.client, ex.on_note, ex.cards, ex.refused, ex._unready = None, lambda line: None, {}, {}, set()
    ex._refresh()
    assert sorted(ex.cards) == ["tcp://a"]
    ex.wait_for_hosts(count=3)
    assert sorted(ex.cards) == addresses and ex.capacity(card().fingerprint) == 3 * (1 + executors.QUEUED_PER_HOST)


def test_a_host_of_another_version_or_revision_is_refused_in_one_line():
    assert compatibility_problem(card()) is None
    for other in (card(version="9.9.9"), card(git_revision="0123456789ab")):
        problem = compatibility_problem(other)
        assert problem and "\n" not in problem and "install the same version on every host" in problem
    assert "deploybench 9.9.9" in compatibility_problem(card(version="9.9.9"))


# -- the answer per host class --------------------------------------------------------------------
def two_classes(b_pin_ms: float) -> list:
    """BM/1/PIN vs BM/1/VNL on two kinds of host (16 and 8 cores, two hosts of the first)."""
    runs = []
    for host, cores, pin, seed in (("a1", 16, 10.0, 0), ("a2", 16, 10.0, 1), ("b1", 8, b_pin_ms, 2)):
        runs += synthetic_runs("BM/1/PIN/CPU", pin, runs=3, host=host, host_cores=cores, seed=seed)
        runs += synthetic_runs("BM/1/VNL/CPU", 14.0, runs=3, host=host, host_cores=cores, seed=seed)
    return runs


def test_each_host_class_gets_its_own_answer_and_agreeing_classes_are_said_to_agree():
    view = fleet_view(two_classes(b_pin_ms=10.0))
    assert view.shown and len(view.classes) == 2 and view.agree is True
    big = view.classes[0]
    assert big.hosts == ("a1", "a2") and big.runs == 12  # identical hosts pool
    assert big.answers[0].best == "BM/1/PIN/CPU"
    (w,) = view.workloads
    assert set(w.best.values()) == {"BM/1/PIN/CPU"} and w.agree


def test_classes_whose_best_differ_beyond_the_ci_disagree():
    view = fleet_view(two_classes(b_pin_ms=20.0))
    assert view.agree is False
    assert [c.answers[0].best for c in view.classes] == ["BM/1/PIN/CPU", "BM/1/VNL/CPU"]


def test_one_host_needs_no_host_class_section(tmp_path):
    runs = synthetic_runs("BM/1/PIN/CPU", 10.0) + synthetic_runs("BM/1/VNL/CPU", 12.0)
    view = fleet_view(runs)
    assert not view.shown and view.agree is None
    from deploybench.report.build import write_report

    write_report(runs, tmp_path / "one.html")
    assert 'id="host-classes"' not in (tmp_path / "one.html").read_text()
    write_report(two_classes(20.0), tmp_path / "two.html")
    html = (tmp_path / "two.html").read_text()
    section = html[html.index('id="host-classes"'):]
    assert "The host classes disagree" in section and "a1, a2" in section


# -- lost runs --------------------------------------------------------------------------------------
def lost_run():
    return record(status=LOST_STATUS, error="lost with host node2: its host died during the round",
                  host={**BOX, "host": "node2", "fleet": {"worker": "node2"}})


def test_lost_runs_are_neither_failures_nor_averaged_and_show_says_so(tmp_path):
    from deploybench.findings import failures, summarize

    db = tmp_path / "s.db"
    with Store(db) as store:
        for r in [record(), record(), lost_run()]:
            store.add(r)
        records = store.runs()
    assert failures(records) == [] and summarize(records)[0].runs == 2
    out = runner.invoke(app, ["show", "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert "1 runs lost with their host" in out.output and "node2" in out.output


def test_the_report_lists_lost_runs_with_their_host(tmp_path):
    from deploybench.report.build import analyze

    failures = analyze([record(), record(), lost_run()]).failures
    assert [(f["status"], "node2" in f["error"]) for f in failures] == [("lost", True)]


def test_a_fleet_runs_progress_line_names_its_host():
    assert "@ node2 lost" in run_line(lost_run(), 1, None, 1.0)
    assert " @ " not in run_line(record(), 1, None, 1.0)
