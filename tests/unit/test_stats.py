import math

import numpy as np
import pytest

from deploybench import stats


def test_mean_ci_matches_student_t():
    ci = stats.mean_ci([10, 12, 14, 16])
    # sd = 2.582, sem = 1.291, t(3) = 3.182
    assert ci.mean == 13 and ci.half_width == pytest.approx(4.108, abs=1e-3)
    assert ci.relative == pytest.approx(4.108 / 13, abs=1e-4)


def test_mean_ci_of_one_value_has_no_width():
    ci = stats.mean_ci([5.0])
    assert ci.mean == 5.0 and math.isnan(ci.half_width)


def test_percentiles_and_bootstrap_ci_bracket_the_value():
    values = np.random.default_rng(1).normal(100, 5, 400)
    p = stats.percentiles(values)
    low, high = stats.bootstrap_percentile_ci(values, 90)
    assert low < p[90] < high


def test_mad_outliers_are_reported_not_removed():
    values = [10, 10.2, 9.9, 10.1, 10.0, 25.0, 9.8]
    assert stats.mad_outliers(values) == [5]
    assert stats.mad_outliers([1, 1, 1, 1, 9]) == [4]
    assert stats.mad_outliers([3, 3, 3]) == []


def test_sample_summary_sums_phases():
    s = stats.summarize_samples({"preprocess_ns": [1e6, 3e6], "infer_ns": [2e6, 2e6],
                                 "postprocess_ns": [1e6, 1e6], "queue_ns": [7e6, 9e6]},
                                "Offline", run_s=0.5)
    assert s["e2e_mean_ms"] == pytest.approx(5.0)
    assert s["pre_ms"] + s["infer_ms"] + s["post_ms"] == pytest.approx(s["e2e_mean_ms"])
    assert s["samples_per_s"] == 4.0


def _server_like_samples():
    """Ten requests of 2 ms of work each; the last one waited 100 ms in the queue."""
    n = 10
    return {"preprocess_ns": [500_000] * n, "infer_ns": [1_000_000] * n,
            "postprocess_ns": [500_000] * n, "queue_ns": [0] * (n - 1) + [100_000_000]}


def test_server_e2e_and_every_percentile_include_the_wait_in_the_queue():
    samples = _server_like_samples()
    s = stats.summarize_samples(samples, "Server")
    e2e = np.array([2.0] * 9 + [102.0])
    assert s["e2e_mean_ms"] == pytest.approx(e2e.mean())
    assert s["queue_ms"] == pytest.approx(10.0)
    assert s["queue_ms"] + s["pre_ms"] + s["infer_ms"] + s["post_ms"] == pytest.approx(s["e2e_mean_ms"])
    for q in (50, 90, 99):
        assert s[f"p{q}_ms"] == pytest.approx(np.percentile(e2e, q))
    assert s["p99_ms"] > 90  # the queued request dominates the tail, as LoadGen reports it


@pytest.mark.parametrize("loadgen_scenario", ["Offline", "SingleStream"])
def test_offline_and_single_stream_e2e_is_the_work_only(loadgen_scenario):
    s = stats.summarize_samples(_server_like_samples(), loadgen_scenario)
    assert s["e2e_mean_ms"] == pytest.approx(2.0) and s["p99_ms"] == pytest.approx(2.0)
    assert "queue_ms" not in s


def test_the_loadgen_scenario_enum_is_accepted_and_unknown_names_are_refused():
    from deploybench.scenario import LoadgenScenario

    assert stats.summarize_samples(_server_like_samples(), LoadgenScenario.SERVER)["p99_ms"] > 90
    with pytest.raises(ValueError, match="unknown LoadGen scenario"):
        stats.summarize_samples(_server_like_samples(), "MultiStream")


def test_a_server_run_without_queue_times_is_refused_not_understated():
    samples = _server_like_samples()
    del samples["queue_ns"]
    with pytest.raises(ValueError, match="queue_ns"):
        stats.summarize_samples(samples, "Server")
