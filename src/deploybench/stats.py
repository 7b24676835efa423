"""Statistics computed when results are read (raw values are what is stored).

Confidence intervals: Student t over independent runs (each run's mean E2E per request is
one observation); with a single run, over its samples, flagged as such. Percentiles of the
pooled per-request E2E times, with bootstrap CIs on request. Outliers by the modified
z-score on the median absolute deviation (Iglewicz and Hoaglin), reported, never dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class MeanCI:
    mean: float
    half_width: float  # of the confidence interval; nan when it cannot be computed
    n: int
    confidence: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def relative(self) -> float:
        """Half-width as a fraction of the mean (the adaptive stopping rule's measure)."""
        return self.half_width / abs(self.mean) if self.mean else math.inf


def t_critical(df: int, confidence: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, df))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Mean with a Student-t confidence interval (nan half-width for fewer than 2 values)."""
    arr = np.asarray(values, dtype=float)
    n = int(arr.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0, confidence)
    mean = float(arr.mean())
    if n < 2:
        return MeanCI(mean, math.nan, n, confidence)
    sem = float(arr.std(ddof=1)) / math.sqrt(n)
    return MeanCI(mean, t_critical(n - 1, confidence) * sem, n, confidence)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[float, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {q: math.nan for q in qs}
    return {q: float(v) for q, v in zip(qs, np.percentile(arr, qs))}


def bootstrap_percentile_ci(values: Sequence[float], q: float, confidence: float = 0.95,
                            resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of the ``q``-th percentile (resampled in chunks, so memory
    stays bounded for large pooled samples)."""
    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // arr.size)
    parts = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, arr.size, size=(min(chunk, resamples - start), arr.size))
        parts.append(np.percentile(arr[idx], q, axis=1))
    boot = np.concatenate(parts)
    alpha = (1 - confidence) / 2
    return float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def coefficient_of_variation(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=float)
    if arr.size < 2 or arr.mean() == 0:
        return math.nan
    return float(arr.std(ddof=1) / arr.mean())


def mad_outliers(values: Sequence[float], threshold: float = 3.5) -> list[int]:
    """Indices whose modified z-score |0.6745 (x - median) / MAD| exceeds ``threshold``."""
    arr = np.asarray(values, dtype=float)
    if arr.size < 3:
        return []
    median = np.median(arr)
    mad = np.median(np.abs(arr - median))
    if mad > 0:
        z = 0.6745 * (arr - median) / mad
    else:  # more than half the values equal: fall back to the mean absolute deviation
        mean_ad = np.mean(np.abs(arr - median))
        if mean_ad == 0:
            return []
        z = (arr - median) / (1.253314 * mean_ad)
    return [int(i) for i in np.flatnonzero(np.abs(z) > threshold)]


def runs_needed(values: Sequence[float], target_rel: float, confidence: float = 0.95) -> int:
    """Independent runs a fixed-count design needs for a CI half-width of ``target_rel`` x mean,
    from the spread of ``values``: the smallest n with t(n-1) s / sqrt(n) <= target x mean."""
    arr = np.asarray(values, dtype=float)
    if arr.size < 2 or arr.mean() == 0:
        return 2
    sd, goal = float(arr.std(ddof=1)), target_rel * abs(float(arr.mean()))
    if sd == 0:
        return 2
    n = max(2, math.ceil((1.96 * sd / goal) ** 2))
    while t_critical(n - 1, confidence) * sd / math.sqrt(n) > goal:
        n += 1
    return n


def welch_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (nan when either side has < 2 values)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarize_samples(samples: dict[str, Sequence[int]], run_s: float | None = None) -> dict[str, float]:
    """One run's summary from its raw per-sample columns (all times in ms)."""
    pre = np.asarray(samples.get("preprocess_ns", []), dtype=float) / 1e6
    inf = np.asarray(samples.get("infer_ns", []), dtype=float) / 1e6
    post = np.asarray(samples.get("postprocess_ns", []), dtype=float) / 1e6
    n = int(pre.size)
    if n == 0:
        return {"samples": 0}
    e2e = pre + inf + post
    pct = percentiles(e2e)
    out = {
        "samples": n,
        "e2e_mean_ms": float(e2e.mean()),
        "pre_ms": float(pre.mean()),
        "infer_ms": float(inf.mean()),
        "post_ms": float(post.mean()),
        "p50_ms": pct[50],
        "p90_ms": pct[90],
        "p99_ms": pct[99],
        "e2e_total_s": float(e2e.sum() / 1e3),
    }
    if run_s:
        out["samples_per_s"] = n / run_s
    return out
