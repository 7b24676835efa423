"""Decisions on real measurements (bare metal): an A/A study never claims a difference, and
the Server scenario's latency is LoadGen's, queue included."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deploybench import stats
from deploybench.cli import app
from deploybench.execute import BlockSet, Contender, RunSettings, run_block_set
from deploybench.findings import summarize
from deploybench.platforms.base import PlatformOptions
from deploybench.platforms.baremetal import BareMetal
from deploybench.scenario import Scenario
from deploybench.store import Store

pytestmark = pytest.mark.usefixtures("needs_cgroups")


def test_the_same_scenario_on_core_0_and_on_core_1_is_never_called_faster_or_slower(ic_data, host):
    """A/A: BM/1/PIN/CPU pinned to core 0 against the same on core 1, in interleaved blocks
    over 3 launch epochs, as the racing sweep measures. The two cores of a host may really
    differ a little (on a CI host once: 1.051x, 95% CI 1.016..1.087, core 0 taking more of
    the interrupts), but faster/slower claim a difference beyond the ±5% margin with the
    whole CI, so the verdict is equivalent or undecided, never faster or slower."""
    if host.cores < 2:
        pytest.skip("needs 2 cores")
    scenario = Scenario.parse("BM/1/PIN/CPU", app="ic", model_size="tiny", requests=32)
    settings = RunSettings(timeout_s=300, busy_threshold=0)
    sides = [Contender(scenario, BareMetal(PlatformOptions(pin_cpus=(core,))), ic_data, settings,
                       label=f"core{core}") for core in (0, 1)]
    rounds = []
    for epoch in range(3):
        out = run_block_set(BlockSet(tuple(sides), blocks=3, warmup_rounds=1, epoch=epoch,
                                     seed=epoch), lambda record: None)
        assert not out.launch_failures, out.launch_failures
        for r in out.records:
            if r.status != "ok":
                assert r.status == "warmup", r.error
                continue
            side = f"core{r.platform['limits']['cpus'][0]}"
            assert r.environment["affinity"] == [int(side[4:])]
            rounds.append(stats.Round(side, r.launch_id, r.summary["e2e_mean_ms"], r.block_id))
    assert len(rounds) == 2 * 3 * 3
    result = stats.compare_rounds(rounds, "core0", "core1")
    # every block is used, or left out of its launch pair's mean as an outlier (and named)
    assert result.launch_pairs == 3 and result.blocks + len(result.outliers) == 9
    assert len(result.outliers) <= 2, result.outliers
    assert result.verdict in (stats.Verdict.EQUIVALENT, stats.Verdict.UNDECIDED), result.describe()


def test_server_latency_counts_the_queue_and_matches_loadgen_p99(tmp_path, ic_data, host):
    """Offered more than one core can serve, requests wait in LoadGen's queue: deploybench's
    p99 is LoadGen's own (within 10%) and the run carries loadgen_invalid."""
    db = tmp_path / "server.db"
    result = CliRunner().invoke(app, [
        "run", "BM/1/PIN/CPU", "--app", "ic", "--model-size", "tiny", "--requests", "128",
        "--loadgen-scenario", "Server", "--target-qps", "200", "--repeat", "1",
        "--data-count", "8", "--db", str(db), "--allow-concurrent"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(CliRunner().invoke(app, ["show", "--db", str(db), "--json"]).output)
    assert row["loadgen_scenario"] == "Server"
    assert row["loadgen_valid"] is False and row["loadgen_reason"]
    assert "loadgen_invalid" in row["warnings"]
    assert row["queue_ms"] > row["pre_ms"] + row["infer_ms"] + row["post_ms"]  # overloaded: mostly waiting
    assert row["p99_ms"] == pytest.approx(row["loadgen_p99_ms"], rel=0.10)
    [summary] = summarize(Store(db, readonly=True).runs())
    assert summary.queue_ms + summary.pre_ms + summary.infer_ms + summary.post_ms == pytest.approx(
        summary.e2e_mean_ms, rel=1e-6)
