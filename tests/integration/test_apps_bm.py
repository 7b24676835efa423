"""SR and RS end to end on bare metal: the real CLI, a real pinned cgroup, the real worker
under LoadGen, then `show --json` on the store it wrote."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOYBENCH = [sys.executable, "-m", "deploybench"]


@pytest.fixture(scope="module")
def bench_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploybench-home")


def _deploybench(args: list[str], home: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPLOYBENCH_HOME": str(home)}
    return subprocess.run(DEPLOYBENCH + args, capture_output=True, text=True, env=env,
                          timeout=timeout)


def _run_and_show(app: str, extra: list[str], home: Path, db: Path) -> dict:
    run = _deploybench(["run", "BM/1/PIN/CPU", "--app", app, "--model-size", "tiny",
                        "--requests", "16", "--data-count", "16", "--db", str(db), *extra],
                       home, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    show = _deploybench(["show", "--db", str(db), "--json"], home, timeout=60)
    assert show.returncode == 0, show.stderr[-2000:]
    (summary,) = [s for s in json.loads(show.stdout) if s["app"] == app]
    assert summary["runs"] == 1 and summary["failed_runs"] == 0
    assert summary["samples"] == 16
    assert summary["affinity_cpus"] and len(summary["affinity_cpus"]) == 1
    for phase in ("pre_ms", "infer_ms", "post_ms"):
        assert summary[phase] > 0, phase
    # under Server the wait in the queue is part of E2E (0 for the other scenarios)
    assert summary["e2e_mean_ms"] == pytest.approx(
        summary["queue_ms"] + summary["pre_ms"] + summary["infer_ms"] + summary["post_ms"], rel=1e-6)
    return summary


def test_sr_tiny_runs_on_pinned_bare_metal_with_inference_the_largest_phase(
        needs_cgroups, bench_home, tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/install.sh installs it)")
    s = _run_and_show("sr", [], bench_home, tmp_path / "sr.db")
    # log-mel of 15 s of audio costs milliseconds; the RNN-T plus its decode costs more,
    # and turning ~250 ids into text is nearly free.
    assert s["infer_ms"] > s["pre_ms"] > s["post_ms"]
    assert s["pre_ms"] > 1.0  # it really read and transformed a 15 s WAV


def test_rs_tiny_runs_on_pinned_bare_metal_with_a_large_preprocessing_share(
        needs_cgroups, bench_home, tmp_path):
    s = _run_and_show("rs", [], bench_home, tmp_path / "rs.db")
    # parsing 128 Criteo lines is comparable to running a tiny DLRM on them
    assert s["pre_ms"] / s["e2e_mean_ms"] > 0.2
    assert s["post_ms"] < s["pre_ms"]


def test_rs_batches_requests_in_the_server_scenario(needs_cgroups, bench_home, tmp_path):
    s = _run_and_show("rs", ["--loadgen-scenario", "Server", "--target-qps", "200",
                             "--batch-size", "4"], bench_home, tmp_path / "rs-server.db")
    assert s["samples_per_s"] > 0
    assert s["queue_ms"] > 0  # each request waits at least until the worker takes it from the queue
