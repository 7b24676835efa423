"""The fleet on real platforms: `sweep --fleet local:2` (a LocalCluster scheduler and two
`deploybench fleet worker` processes on disjoint cores of this host) runs a BM+CN study;
a worker SIGKILLed mid-study loses its round and the study completes on the other; a fleet
sweep interrupted and restarted sends only what is missing; a worker of another deploybench
version is refused in one line."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploybench.execute import run_key
from deploybench.scenario import Scenario
from deploybench.platforms import procfs
from deploybench.store import LOST_STATUS, Store

STUDY = """
name = "{name}"
apps = ["ic", "rs"]
platforms = ["BM", "CN"]
cores = [1]
modes = ["PIN"]
model_sizes = "tiny"
requests = 4
data_count = 8
timeout_s = 300

[stopping]
warmup_rounds = 1
min_launches = 3
max_launches = 2
blocks = {blocks}
"""
EPOCHS = 2  # min_launches above max_launches: every group runs exactly max_launches epochs


@pytest.fixture()
def env(tmp_path):
    """A private deploybench home and sessions ledger (other people measure on this host too),
    and the thread variables a Dask nanny would set, which every task process must drop."""
    return {**os.environ, "DEPLOYBENCH_HOME": str(tmp_path / "home"),
            "DEPLOYBENCH_LEDGER": str(tmp_path / "ledger"), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def two_cores_and_runc(needs_cgroups, host):
    from deploybench.platforms.container import probe
    from deploybench.platforms.container.launchers import OciRuntime

    if host.cores < 2:
        pytest.skip("a local fleet of 2 needs 2 usable cores (one each)")
    problem = probe(OciRuntime("runc"))
    if problem:
        pytest.skip(f"runc cannot run a container here: {problem}")


def write_study(tmp_path: Path, name: str, blocks: int = 2) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(name=name, blocks=blocks))
    return path


def sweep(study: Path, db: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "deploybench", "sweep", str(study), "--db", str(db), *more]


def expected_keys(name: str, blocks: int) -> set[str]:
    keys = set()
    for app in ("ic", "rs"):
        for platform in ("BM", "CN"):
            scenario = Scenario.parse(f"{platform}/1/PIN/CPU", app=app, requests=4)
            for epoch in range(EPOCHS):
                keys.add(run_key(name, scenario, f"e{epoch}w0"))
                keys |= {run_key(name, scenario, f"e{epoch}b{b}") for b in range(blocks)}
    return keys


def ours_left(env: dict[str, str]) -> list[str]:
    """Processes that carry this test's deploybench home (task processes, workers, containers'
    runtimes), and this test's ledger entries: what would still be running."""
    marker = f"DEPLOYBENCH_HOME={env['DEPLOYBENCH_HOME']}".encode()
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in environ.split(b"\0") or env["DEPLOYBENCH_HOME"] in cmd:
            left.append(f"pid {pid}: {cmd[:120]}")
    ledger = Path(env["DEPLOYBENCH_LEDGER"])
    left += [f"ledger entry {p.name}" for p in ledger.glob("deploybench-*.json")] if ledger.is_dir() else []
    return left


def wait_until_gone(env: dict[str, str], timeout_s: float = 60) -> list[str]:
    deadline = time.time() + timeout_s
    while (left := ours_left(env)) and time.time() < deadline:
        time.sleep(0.5)
    return left


def test_a_local_fleet_of_two_runs_a_bm_cn_study_once_per_run_with_local_run_keys_and_no_overlap(
        tmp_path, env, two_cores_and_runc):
    study = write_study(tmp_path, "it-fleet")
    db = tmp_path / "fleet.db"
    done = subprocess.run(sweep(study, db, "--fleet", "local:2"), env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    with Store(db, readonly=True) as store:
        records = store.runs(study="it-fleet")
    keyed = [r.run_key for r in records if r.run_key]
    assert len(keyed) == len(set(keyed)) == len(records)  # every run once, nothing without a key
    assert set(keyed) == expected_keys("it-fleet", 2)
    # the same study swept on this host alone gives the same run keys
    local = subprocess.run(sweep(study, tmp_path / "local.db", "--allow-concurrent"), env=env,
                           capture_output=True, text=True, timeout=900)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    with Store(tmp_path / "local.db", readonly=True) as store:
        assert {r.run_key for r in store.runs(study="it-fleet")} == set(keyed)
    assert all(r.status in ("ok", "warmup") for r in records), [r.error for r in records]
    by_worker: dict[str, list] = {}
    for r in records:
        fleet = r.host["fleet"]
        by_worker.setdefault(fleet["worker"], []).append(r)
        assert fleet["removed_env"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        assert "concurrent_run" in r.warning_codes  # two workers measure on one machine
        assert set(r.environment["affinity"]) <= set(fleet["measure_cpus"])  # its own cores
    assert len(by_worker) == 2, "both workers measured"
    shares = [set(rs[0].host["fleet"]["measure_cpus"]) for rs in by_worker.values()]
    assert not shares[0] & shares[1]  # disjoint cores
    assert len({r.host["fingerprint"] for r in records}) == 1  # identical shares: one host class
    for worker, runs in by_worker.items():
        runs.sort(key=lambda r: r.started_at)
        for a, b in zip(runs, runs[1:]):
            assert b.started_at >= a.finished_at, f"two runs overlap on {worker}"
    assert wait_until_gone(env) == []


@pytest.mark.parametrize("kill", ["worker", "worker_and_its_task_process"])
def test_a_worker_killed_mid_study_loses_its_round_and_the_study_completes_on_the_other(
        tmp_path, env, two_cores_and_runc, kill):
    """``worker``: the task process gets SIGTERM as its worker dies and closes its sessions;
    ``worker_and_its_task_process``: both SIGKILLed, so what the task process launched is
    left to the sessions ledger, and the next task on the host (on the other worker) reaps it."""
    study = write_study(tmp_path, "it-kill", blocks=3)
    db = tmp_path / "kill.db"
    proc = subprocess.Popen(sweep(study, db, "--fleet", "local:2"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    victim, pids = None, []
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            try:
                con = sqlite3.connect(str(db), timeout=30)
                rows = con.execute("SELECT json_extract(host_json, '$.fleet.worker') FROM runs "
                                   "ORDER BY started_at").fetchall()
                con.close()
            except sqlite3.OperationalError:
                rows = []
            if len(rows) >= 2:  # a block set under way: kill the worker measuring it
                victim = rows[-1][0]
                break
            time.sleep(0.1)
        assert victim is not None, "the sweep ended before a worker could be killed"
        for pid in os.listdir("/proc"):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if b"fleet" in cmd and b"worker" in cmd and victim.encode() in cmd:
                pids.append(int(pid))
        assert len(pids) == 1, pids
        if kill == "worker_and_its_task_process":
            for task in procfs.children(pids[0]):  # the block set's task process and the standbys
                os.kill(task, signal.SIGKILL)
        os.kill(pids[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out and f"lost on host {victim}" in out
    with Store(db, readonly=True) as store:
        records = store.runs(study="it-kill")
        stops = store.stops("it-kill")
    lost = [r for r in records if r.status == LOST_STATUS]
    assert lost and all(victim in r.error and r.run_key is None for r in lost)
    keyed = [r.run_key for r in records if r.run_key]
    assert len(keyed) == len(set(keyed))  # nothing twice
    killed_at = max(r.finished_at for r in lost)
    later = [r for r in records if r.started_at > killed_at]
    assert later and {r.host["fleet"]["worker"] for r in later} == {rs for rs in {r.host["fleet"]["worker"]
                                                                                  for r in records} - {victim}}
    assert {s["reason"] for s in stops} == {"max_launches"}  # every group ran all its epochs
    for app in ("ic", "rs"):  # each group: EPOCHS complete epochs besides the lost one
        epochs = {}
        for r in records:
            if r.scenario.app == app and r.status in ("ok", "warmup", LOST_STATUS):
                epochs.setdefault(r.repetition, set()).add(r.status)
        complete = [e for e, statuses in epochs.items() if LOST_STATUS not in statuses]
        assert len(complete) == EPOCHS, (app, epochs)
    assert wait_until_gone(env) == []  # on either worker: no task process, platform or session left


def test_a_worker_of_another_deploybench_version_is_refused_in_one_line(tmp_path, env):
    import logging

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.CRITICAL)
    address = cluster.scheduler_address
    code = ("import sys, deploybench; deploybench.__version__ = '0.0.1-other'; "
            "from deploybench.cli import main; "
            f"sys.argv = ['deploybench', 'fleet', 'worker', '--scheduler', '{address}', '--name', 'old-host']; "
            "main()")
    worker = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=180)
        hosts = subprocess.run([sys.executable, "-m", "deploybench", "fleet", "hosts", "--scheduler", address],
                               env=env, capture_output=True, text=True, timeout=120)
        assert hosts.returncode == 0, hosts.stderr
        (line,) = [x for x in hosts.stdout.splitlines() if "old-host" in x and x.startswith("refused")]
        assert "deploybench 0.0.1-other" in line and "install the same version on every host" in line
        study = write_study(tmp_path, "it-refused")
        refused = subprocess.run(sweep(study, tmp_path / "r.db", "--fleet", address), env=env,
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        (error,) = refused.stderr.strip().splitlines()
        assert error.startswith("error: no host of the fleet") and "0.0.1-other" in error
        assert "install the same version on every host" in error
        assert not (tmp_path / "r.db").exists() or Store(tmp_path / "r.db", readonly=True).count() == 0
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        client.close()
        cluster.close()


def test_a_fleet_sweep_interrupted_and_restarted_sends_only_what_is_missing(tmp_path, env, two_cores_and_runc):
    study = write_study(tmp_path, "it-resume", blocks=3)
    db = tmp_path / "resume.db"
    proc = subprocess.Popen(sweep(study, db, "--fleet", "local:2"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            try:
                con = sqlite3.connect(str(db), timeout=30)
                n = con.execute("SELECT COUNT(*) FROM runs WHERE run_key IS NOT NULL").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                n = 0
            if n >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted: runs finished so far are stored" in out and "Traceback" not in out
    assert wait_until_gone(env) == []  # the hosts stopped the block sets and closed their sessions
    with Store(db, readonly=True) as store:
        first = {r.run_key for r in store.runs(study="it-resume") if r.run_key}
    again = subprocess.run(sweep(study, db, "--fleet", "local:2"), env=env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    with Store(db, readonly=True) as store:
        records = store.runs(study="it-resume")
    keyed = [r.run_key for r in records if r.run_key]
    assert first <= set(keyed) and len(keyed) == len(set(keyed))  # kept, nothing measured twice
    assert all(r.run_key is None for r in records if r.status == "interrupted")
    for app in ("ic", "rs"):  # as a local sweep: each group ends with max_launches epochs
        assert len({r.repetition for r in records if r.scenario.app == app}) == EPOCHS, app
    third = subprocess.run(sweep(study, db, "--fleet", "local:2"), env=env, capture_output=True, text=True,
                           timeout=600)
    assert third.returncode == 0 and "0 runs this time" in third.stdout, third.stdout[-2000:]
    assert wait_until_gone(env) == []
