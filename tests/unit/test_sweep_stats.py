"""Statistics used by sweeps: CIs over runs, percentiles with bootstrap CIs, MAD outliers,
and CV."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deploybench.stats import (
    bootstrap_percentile_ci, coefficient_of_variation, mad_outliers, mean_ci, percentiles,
)


def test_mean_ci_student_t_and_relative_half_width():
    ci = mean_ci([10.0, 12.0, 11.0, 13.0, 9.0])
    assert ci.mean == pytest.approx(11.0)
    # t(4, 0.975) = 2.776, s = 1.5811, n = 5
    assert ci.half_width == pytest.approx(2.776 * 1.5811 / math.sqrt(5), rel=1e-3)
    assert ci.relative == pytest.approx(ci.half_width / 11.0)
    assert math.isnan(mean_ci([1.0]).half_width)


def test_constant_runs_have_a_zero_width_ci():
    assert mean_ci([5.0, 5.0, 5.0]).relative == 0.0


def test_percentiles_and_their_bootstrap_ci_contain_the_estimate():
    rng = np.random.default_rng(0)
    values = rng.lognormal(2, 0.3, 500)
    pct = percentiles(values)
    for q in (50, 90, 99):
        lo, hi = bootstrap_percentile_ci(values, q, resamples=400)
        assert lo <= pct[q] <= hi and lo < hi


def test_bootstrap_is_chunked_and_seeded_for_large_samples():
    values = np.arange(300_000, dtype=float)
    a = bootstrap_percentile_ci(values, 50, resamples=40, seed=3)
    b = bootstrap_percentile_ci(values, 50, resamples=40, seed=3)
    assert a == b and a[0] < 150_000 < a[1]


def test_mad_outliers_reports_the_far_run_only():
    assert mad_outliers([10, 10.2, 9.9, 10.1, 10.0, 25]) == [5]
    assert mad_outliers([1, 1, 1, 1]) == []


def test_coefficient_of_variation():
    assert coefficient_of_variation([10, 10, 10]) == 0.0
    assert coefficient_of_variation([9, 11]) == pytest.approx(math.sqrt(2) / 10)
