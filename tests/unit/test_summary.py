import pytest

from deploybench.findings import summarize

from .fakes import record


def test_summary_ci_is_over_launch_means_and_excludes_failures():
    runs = [record(e2e_ms=[10, 10]), record(e2e_ms=[12, 12]), record(e2e_ms=[14, 14]),
            record(status="failed", error="boom")]
    [s] = summarize(runs)
    assert s.runs == 3 and s.launches == 3 and s.failed_runs == 1 and s.samples == 6
    assert s.e2e_mean_ms == pytest.approx(12.0)
    assert s.ci_basis == "launches" and s.e2e_ci95_ms == pytest.approx(4.968, abs=1e-3)  # t(2)=4.303, sem 1.155
    assert s.pre_ms + s.infer_ms + s.post_ms == pytest.approx(s.e2e_mean_ms, rel=1e-6)


def test_a_single_run_gets_a_ci_over_its_requests():
    [s] = summarize([record(e2e_ms=[9, 10, 11])])
    assert s.ci_basis == "requests" and s.e2e_ci95_ms > 0


def test_rounds_of_one_launch_get_a_ci_over_rounds_and_launch_means_weigh_equally():
    one = [record(e2e_ms=[v, v], launch_id="L1") for v in (10, 11, 12)]
    [s] = summarize(one)
    assert s.launches == 1 and s.runs == 3 and s.ci_basis == "rounds"
    two = one + [record(e2e_ms=[20, 20], launch_id="L2")]
    [s] = summarize(two)
    assert s.launches == 2 and s.ci_basis == "launches"
    assert s.e2e_mean_ms == pytest.approx((11 + 20) / 2)  # launch means, not rounds, weigh equally


def test_high_variance_across_runs_is_flagged():
    [s] = summarize([record(e2e_ms=[v]) for v in (10, 20, 10, 30)])
    assert "high_variance" in s.warnings


def test_scenarios_are_kept_apart():
    rows = summarize([record("BM/1/PIN/CPU"), record("BM/1/VNL/CPU"), record("BM/1/PIN/CPU", app="sr")])
    assert sorted((r.app, r.scenario) for r in rows) == [("ic", "BM/1/PIN/CPU"), ("ic", "BM/1/VNL/CPU"),
                                                          ("sr", "BM/1/PIN/CPU")]


def test_server_rows_count_the_queue_in_e2e_and_percentiles():
    from deploybench.scenario import LoadgenScenario, Scenario

    rec = record(e2e_ms=[2.0] * 9 + [2.0])
    rec.scenario = Scenario.parse("BM/1/PIN/CPU", app="ic").with_(loadgen_scenario=LoadgenScenario.SERVER)
    rec.samples["queue_ns"] = [0] * 9 + [100_000_000]
    [s] = summarize([rec])
    assert s.e2e_mean_ms == pytest.approx(12.0) and s.queue_ms == pytest.approx(10.0)
    assert s.p99_ms > 90
    assert s.queue_ms + s.pre_ms + s.infer_ms + s.post_ms == pytest.approx(s.e2e_mean_ms, rel=1e-6)
