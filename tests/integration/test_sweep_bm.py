"""Real sweeps on bare metal: a study interrupted with SIGINT and resumed does only what is
missing and ends as an uninterrupted one would; host conditions (busy neighbours, cold cache,
throttled storage) are applied to real rounds of warm sessions, recorded, and cleaned up."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploybench.store import Store

STUDY = """
name = "{name}"
apps = ["ic"]
platforms = ["BM"]
cores = [1]
modes = {modes}
model_sizes = "tiny"
requests = 4
data_count = 8
timeout_s = 300

[stopping]
warmup_rounds = {warmup}
min_launches = 2
max_launches = {launches}
blocks = {blocks}
target_rel_ci = 0.0001

[host]
{host}
"""


def write_study(tmp_path: Path, name: str, *, modes='["PIN", "VNL"]', warmup=1, launches=2,
                blocks=2, host="") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(name=name, modes=modes, warmup=warmup, launches=launches,
                                 blocks=blocks, host=host))
    return path


def sweep_cmd(study: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "deploybench", "sweep", str(study), "--db", str(db)]


def run_cgroups_left(db: Path, study: str) -> list[str]:
    """The cgroups this study's runs used that still exist (other people's runs on a shared
    host may have their own cgroups at the same time, so only ours are checked)."""
    with Store(db) as store:
        paths = [r.platform.get("cgroup") for r in store.runs(study=study, with_samples=False)]
    assert paths and all(paths)
    return [p for p in paths if Path(p).exists()]


def keyed(db: Path, study: str) -> list[tuple]:
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return con.execute("SELECT run_key, scenario_key, repetition, status FROM runs "
                           "WHERE study=? AND run_key IS NOT NULL", (study,)).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


@pytest.fixture()
def env(tmp_path):
    return {**os.environ, "DEPLOYBENCH_HOME": str(tmp_path / "home")}


def test_sigint_mid_sweep_then_resume_does_only_what_is_missing(tmp_path, env, needs_cgroups):
    study = write_study(tmp_path, "it-resume")
    db = tmp_path / "runs.db"
    proc = subprocess.Popen(sweep_cmd(study, db), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while len(keyed(db, "it-resume")) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert run_cgroups_left(db, "it-resume") == []
    first = {r[0] for r in keyed(db, "it-resume")}
    assert len(first) >= 3

    done = subprocess.run(sweep_cmd(study, db), env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    rows = keyed(db, "it-resume")
    assert first <= {r[0] for r in rows} and len({r[0] for r in rows}) == len(rows)  # nothing redone
    by_epoch: dict[tuple[str, int], list[str]] = {}
    for _, key, epoch, status in rows:
        by_epoch.setdefault((key, epoch), []).append(status)
    assert max(epoch for _, epoch in by_epoch) >= 1  # the resumed sweep launched anew
    with Store(db) as store:
        stops = store.stops("it-resume")
    assert len(stops) == 2 and {s["reason"] for s in stops} <= {"decided", "max_launches", "dropped", "out_of_reach"}
    assert "0 runs this time" not in done.stdout
    # a third start does nothing
    again = subprocess.run(sweep_cmd(study, db), env=env, capture_output=True, text=True, timeout=200)
    assert again.returncode == 0 and "0 runs this time" in again.stdout
    assert len(keyed(db, "it-resume")) == len(rows)
    assert run_cgroups_left(db, "it-resume") == []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_busy_cold_throttled_run_is_applied_recorded_and_cleaned_up(tmp_path, env, host, needs_cgroups):
    if host.cores < 2:
        pytest.skip("host_load=busy needs a core outside the scenario")
    conditions = ('host_load = ["busy"]\npage_cache = ["cold"]\nstorage = ["throttled"]\n'
                  "[host.throttle]\nread_mb_s = 200\nread_iops = 4000\n")
    study = write_study(tmp_path, "it-cond", modes='["PIN"]', warmup=0, launches=1, blocks=1,
                        host=conditions)
    db = tmp_path / "cond.db"
    plan = subprocess.run(sweep_cmd(study, db) + ["--plan"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    skips = [line for line in plan.stdout.splitlines() if line.startswith("  skip ")]
    if skips:
        pytest.skip(f"this host cannot apply the conditions: {skips[0].strip()}")
    out = subprocess.run(sweep_cmd(study, db), env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr + out.stdout
    with Store(db) as store:
        (record,) = store.runs(study="it-cond")
    assert record.status == "ok", record.error
    assert record.scenario.conditions == ["busy", "cold", "throttled"]
    facts = record.host["conditions"]
    assert facts["neighbours"] == host.cores - 1
    assert facts["caches_dropped"] is True
    assert facts["io_limits"]["read_bps"] == 200_000_000
    assert record.platform["io_limits"] == facts["io_limits"]
    assert record.platform["cpu_stat"].get("io_read_bytes", 0) > 0  # this round's reads hit the disk
    assert record.environment["io_read_bytes"] > 0  # and the worker saw them come from storage
    assert not any(alive(p) for p in facts["neighbour_pids"])
    assert "host_busy" not in record.warning_codes  # the load was deliberate
    assert run_cgroups_left(db, "it-cond") == []
