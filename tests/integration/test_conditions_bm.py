"""Host conditions take effect on real bare metal: at the limits studies/practices-quick.toml
uses, a cold page cache makes IC's timed requests read their inputs from the disk, and a
cold cache on a throttled disk makes their pre-processing measurably slower than warm (and
than cold on the native disk); each round carries the evidence (bytes read from the disk
and the time the input reads took, counted over the timed requests). A cold cache alone
costs little here: this host's virtual disk is served from its host's memory."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploybench import stats
from deploybench.apps import create_app
from deploybench.conditions import DROP_CACHES, io_limits_for
from deploybench.datasets.cache import ensure_data
from deploybench.execute import BlockSet, Contender, RunSettings, run_block_set
from deploybench.platforms.base import PlatformOptions
from deploybench.platforms.baremetal import BareMetal
from deploybench.scenario import PageCache, Scenario, Storage
from deploybench.study import load_study

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("needs_cgroups")


def test_cold_and_throttled_ic_preprocessing_is_measurably_slower_than_warm(tmp_path_factory):
    import os

    if os.geteuid() != 0 or not os.access(DROP_CACHES, os.W_OK):
        pytest.skip("dropping the page cache needs root")
    study = load_study(REPO / "studies" / "practices-quick.toml")
    throttle = study.model.host.throttle
    count = study.model.data_count
    # the data set on the real disk (not a tmpfs): the home cache's folder
    data_dir = ensure_data(create_app("ic"), count, 0, out_dir=Path.home() / ".cache" / "deploybench-test" / f"ic-n{count}")
    limits, problem = io_limits_for(data_dir, int(throttle.read_mb_s * 1_000_000), throttle.read_iops,
                                    throttle.device)
    if limits is None:
        pytest.skip(problem)
    warm = Scenario.parse("BM/1/PIN/CPU", app="ic", model_size="tiny", requests=study.model.requests
                          if isinstance(study.model.requests, int) else 16)
    cold = warm.with_(page_cache=PageCache.COLD)
    throttled = cold.with_(storage=Storage.THROTTLED)
    settings = RunSettings(timeout_s=300, busy_threshold=0)
    contenders = (Contender(warm, BareMetal(), data_dir, settings),
                  Contender(cold, BareMetal(), data_dir, settings),
                  Contender(throttled, BareMetal(PlatformOptions(io_limits=limits)), data_dir, settings))
    records = []
    for epoch in range(3):
        out = run_block_set(BlockSet(contenders, blocks=3, warmup_rounds=1, epoch=epoch, seed=epoch),
                            lambda record: None)
        assert not out.launch_failures, out.launch_failures
        records += [r for r in out.records if r.status == "ok"]
    assert len(records) == 3 * 3 * 3
    name = {warm.key: "warm", cold.key: "cold", throttled.key: "throttled"}
    rounds = [stats.Round(name[r.scenario.key], r.launch_id, r.summary["pre_ms"], r.block_id) for r in records]
    for r in records:
        codes = r.warning_codes
        assert "condition_ineffective" not in codes and "condition_unmet" not in codes, (r.scenario.label, r.warnings)
        env = r.environment
        if r.scenario.page_cache is PageCache.COLD:
            assert r.host["conditions"]["caches_dropped"] is True
            # every input read from the disk during the timed requests
            assert env["io_read_bytes"] > 0.5 * sum(f.stat().st_size for f in data_dir.glob("*.jpg"))
        if r.scenario.storage is Storage.THROTTLED:
            assert r.platform["io_limits"]["read_iops"] == throttle.read_iops
            assert env["input_read_ms"] / env["input_reads"] >= 0.5  # held back by the throttle
    per_read = {side: sorted(r.environment["input_read_ms"] / r.environment["input_reads"]
                             for r in records if name[r.scenario.key] == side) for side in name.values()}
    median = {side: v[len(v) // 2] for side, v in per_read.items()}
    # a cold input comes from the disk, a warm one from the page cache; a throttled disk waits
    assert median["cold"] > 2 * median["warm"], median
    assert median["throttled"] > 2 * median["cold"], median
    throttled_vs_warm = stats.compare_rounds(rounds, "throttled", "warm")
    throttled_vs_cold = stats.compare_rounds(rounds, "throttled", "cold")
    assert throttled_vs_warm.verdict is stats.Verdict.SLOWER, throttled_vs_warm.describe()
    assert throttled_vs_cold.verdict is stats.Verdict.SLOWER, throttled_vs_cold.describe()
