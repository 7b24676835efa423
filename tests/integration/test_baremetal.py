"""Bare metal on real cgroups: the worker gets exactly the cores it was given, and nothing
is left behind whatever happens to the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploybench.platforms.base import PlatformOptions
from deploybench.platforms.baremetal import BareMetal
from deploybench.host import usable_cpus
from deploybench.platforms.cpu import CgroupManager
from deploybench.scenario import Scenario
from deploybench.sweep import RunSettings, build_job, run_one

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("needs_cgroups")


def _run(name, ic_data, **options):
    scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=16)
    return run_one(scenario, BareMetal(PlatformOptions(**options)), data_dir=ic_data,
                   settings=RunSettings(timeout_s=300))


def _no_leftovers(facts):
    """The run's own cgroup is gone in every hierarchy (other sessions may run theirs)."""
    name = Path(facts["cgroup"]).name
    assert name.startswith("deploybench-")
    assert [p for p in CgroupManager().leftovers() if p.name == name] == []


@pytest.mark.parametrize("cores", [1, 2])
def test_pinned_worker_runs_on_exactly_the_pinned_cores(ic_data, host, cores):
    if cores > host.cores:
        pytest.skip(f"host has {host.cores} cores")
    record = _run(f"BM/{cores}/PIN/CPU", ic_data)
    assert record.status == "ok", record.error
    pinned = record.platform["limits"]["cpus"]
    assert len(pinned) == cores
    assert record.environment["affinity"] == pinned
    assert record.environment["cgroup"]["cpuset"] == pinned  # seen from inside
    assert record.environment["cgroup"]["cpu_quota_cores"] is None
    assert record.environment["cpu_budget"] == cores == record.environment["torch_threads"]
    assert record.platform["cpu_stat"]["cpu_usage_ms"] > 0
    assert not [w for w in record.warnings if w["code"] == "affinity_mismatch"]
    _no_leftovers(record.platform)


@pytest.mark.parametrize("cores", [1, 2])
def test_vanilla_worker_floats_under_a_quota(ic_data, host, cores):
    if cores > host.cores:
        pytest.skip(f"host has {host.cores} cores")
    record = _run(f"BM/{cores}/VNL/CPU", ic_data)
    assert record.status == "ok", record.error
    assert record.environment["cgroup"]["cpu_quota_cores"] == pytest.approx(cores)
    assert record.environment["affinity"] == usable_cpus()  # floats over every core
    assert record.platform["cpu_stat"]["nr_periods"] > 0
    _no_leftovers(record.platform)


def test_explicit_pin_cpus_are_honoured(ic_data, host):
    last = host.usable_cpus[-1]
    record = _run("BM/1/PIN/CPU", ic_data, pin_cpus=(last,))
    assert record.environment["affinity"] == [last]


def test_a_hung_worker_is_killed_at_the_timeout(ic_data, tmp_path):
    scenario = Scenario.parse("BM/1/PIN/CPU", app="ic", model_size="tiny", requests=4)
    platform = BareMetal()
    run_dir = tmp_path
    job = build_job(scenario, data_dir=ic_data, run_dir=run_dir, run_id="hang",
                    settings=RunSettings()).with_(debug_hang_s=600)
    started = time.monotonic()
    outcome = platform.run(scenario, job, timeout_s=3)
    assert time.monotonic() - started < 30
    assert outcome.status == "timeout" and "3 s timeout" in outcome.error
    _no_leftovers(outcome.host_facts)
    out = subprocess.run(["pgrep", "-f", str(run_dir / "job.json")], capture_output=True)
    assert out.returncode == 1, "the worker is still running"


def test_a_crashing_worker_is_recorded_as_failed(tmp_path, monkeypatch):
    from tests.unit.fakes import CrashApp

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    CrashApp().generate_data(tmp_path / "d", 4, 0)
    scenario = Scenario.parse("BM/1/VNL/CPU", app="tests.unit.fakes:CrashApp", requests=4)
    record = run_one(scenario, BareMetal(), data_dir=tmp_path / "d", settings=RunSettings(timeout_s=60))
    assert record.status == "failed"
    assert "no result" in record.error and "-9" in record.error
    _no_leftovers(record.platform)


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "deploybench", *args], capture_output=True,
                          text=True, cwd=REPO, **kwargs)


def test_run_then_show_json_from_the_command_line(tmp_path):
    db = tmp_path / "x.db"
    run = _cli("run", "BM/1/PIN/CPU", "--app", "ic", "--model-size", "tiny", "--requests", "32",
               "--data-count", "8", "--db", str(db))
    assert run.returncode == 0, run.stderr
    shown = _cli("show", "--db", str(db), "--json")
    [row] = json.loads(shown.stdout)
    assert row["scenario"] == "BM/1/PIN/CPU" and len(row["affinity_cpus"]) == 1
    assert row["pre_ms"] > 0 and row["infer_ms"] > 0 and row["post_ms"] > 0
    assert row["e2e_mean_ms"] == pytest.approx(row["pre_ms"] + row["infer_ms"] + row["post_ms"], rel=1e-6)
    assert row["samples"] == 32


def test_ctrl_c_stores_the_interrupted_run_and_cleans_up(tmp_path):
    db = tmp_path / "x.db"
    proc = subprocess.Popen([sys.executable, "-m", "deploybench", "run", "BM/1/PIN/CPU", "--app", "ic",
                             "--model-size", "full", "--requests", "2000", "--data-count", "8",
                             "--db", str(db)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    before = set(CgroupManager().leftovers())
    deadline = time.monotonic() + 60
    while not (set(CgroupManager().leftovers()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # let the worker get going
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    from deploybench.store import Store

    [record] = Store(db).runs()
    assert record.status == "interrupted"
    _no_leftovers(record.platform)
