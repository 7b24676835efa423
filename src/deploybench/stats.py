"""Statistics computed when results are read (raw values are what is stored).

Confidence intervals: Student t over independent runs (each run's mean E2E per request is
one observation); with a single run, over its samples, flagged as such. Percentiles of the
pooled per-request E2E times, with bootstrap CIs on request. Outliers by the modified
z-score on the median absolute deviation (Iglewicz and Hoaglin), reported, never dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

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


#: LoadGen scenarios whose per-request E2E includes the wait in the queue. Under Server,
#: queries arrive on LoadGen's schedule whether or not the worker is free, so the wait
#: (issue to start of processing) is latency the user sees. Under Offline every sample is
#: issued at once and under SingleStream the next query waits for the previous one: there
#: ``queue_ns`` measures the run's own progress, not latency, and E2E is the work itself.
QUEUE_COUNTS_IN = ("Server",)
LOADGEN_SCENARIOS = ("Offline", "SingleStream", "Server")


def request_e2e_ms(samples: Mapping[str, Sequence[int]], loadgen_scenario: str) -> np.ndarray:
    """Each request's E2E time in ms: pre + infer + post, plus the queue wait under Server."""
    if loadgen_scenario not in LOADGEN_SCENARIOS:
        raise ValueError(f"unknown LoadGen scenario {loadgen_scenario!r}; "
                         f"expected one of {', '.join(LOADGEN_SCENARIOS)}")
    e2e = _phase_ms(samples, "preprocess_ns") + _phase_ms(samples, "infer_ns") \
        + _phase_ms(samples, "postprocess_ns")
    if loadgen_scenario in QUEUE_COUNTS_IN and e2e.size:
        queue = samples.get("queue_ns")
        if queue is None or len(queue) != e2e.size:
            raise ValueError("a Server run needs its per-request queue_ns column to count the "
                             "wait in the queue; re-run it with this version of deploybench")
        e2e = e2e + _phase_ms(samples, "queue_ns")
    return e2e


def _phase_ms(samples: Mapping[str, Sequence[int]], column: str) -> np.ndarray:
    return np.asarray(samples.get(column, []), dtype=float) / 1e6


def summarize_samples(samples: Mapping[str, Sequence[int]], loadgen_scenario: str,
                      run_s: float | None = None) -> dict[str, float]:
    """One run's summary from its raw per-sample columns (all times in ms).

    E2E and its percentiles are :func:`request_e2e_ms`: under Server they include the wait in
    the queue, reported as ``queue_ms`` (so that queue + pre + infer + post = E2E there);
    the other scenarios have no ``queue_ms``.
    """
    e2e = request_e2e_ms(samples, loadgen_scenario)
    n = int(e2e.size)
    if n == 0:
        return {"samples": 0}
    pct = percentiles(e2e)
    out = {
        "samples": n,
        "e2e_mean_ms": float(e2e.mean()),
        "pre_ms": float(_phase_ms(samples, "preprocess_ns").mean()),
        "infer_ms": float(_phase_ms(samples, "infer_ns").mean()),
        "post_ms": float(_phase_ms(samples, "postprocess_ns").mean()),
        "p50_ms": pct[50],
        "p90_ms": pct[90],
        "p99_ms": pct[99],
        "e2e_total_s": float(e2e.sum() / 1e3),
    }
    if loadgen_scenario in QUEUE_COUNTS_IN:
        out["queue_ms"] = float(_phase_ms(samples, "queue_ns").mean())
    if run_s:
        out["samples_per_s"] = n / run_s
    return out


# -- comparisons of two scenarios ---------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """``a`` against ``b`` (b is the baseline): the difference of means, relative to b.

    DESIGN: the CI is Welch's CI of the difference of means (unequal variances,
    Welch-Satterthwaite degrees of freedom) divided by the baseline's mean, so the CI
    excludes 0 exactly when Welch's test is significant at the same level: the verdict and
    the interval never disagree. Treating the baseline mean as a fixed scale ignores a
    second-order term (its own relative error times the difference), small next to the
    difference's own uncertainty for the run counts used here.
    """

    mean_a: float
    mean_b: float
    diff: float  # mean_a - mean_b
    half_width: float  # of the CI of diff; nan when it cannot be computed
    p_value: float  # Welch's two-sided test; nan when it cannot be computed
    n_a: int
    n_b: int
    df: float
    confidence: float = 0.95

    @property
    def relative(self) -> float:
        """(a - b) / b: +0.10 means a is 10% slower (larger) than b."""
        return self.diff / self.mean_b if self.mean_b else math.nan

    @property
    def relative_low(self) -> float:
        return (self.diff - self.half_width) / self.mean_b if self.mean_b else math.nan

    @property
    def relative_high(self) -> float:
        return (self.diff + self.half_width) / self.mean_b if self.mean_b else math.nan

    @property
    def ratio(self) -> float:
        return self.mean_a / self.mean_b if self.mean_b else math.nan

    @property
    def testable(self) -> bool:
        return not math.isnan(self.p_value)

    @property
    def significant(self) -> bool:
        return self.testable and self.p_value < (1 - self.confidence)

    def describe(self, unit: str = "%") -> str:
        """``+10.0% (CI +8.1..+11.9%, significant, p=0.0004)`` or ``..., not significant``."""
        if not self.testable:
            return f"{self.relative * 100:+.1f}% (no CI: needs >= 2 values on each side)"
        verdict = "significant" if self.significant else "not significant"
        return (f"{self.relative * 100:+.1f}% (CI {self.relative_low * 100:+.1f}.."
                f"{self.relative_high * 100:+.1f}%, {verdict}, p{_fmt_p(self.p_value)})")

    def to_json(self) -> dict[str, float | int | bool | str]:
        return {"mean_a": self.mean_a, "mean_b": self.mean_b, "diff": self.diff,
                "half_width": self.half_width, "p_value": self.p_value, "n_a": self.n_a,
                "n_b": self.n_b, "df": self.df, "relative": self.relative,
                "relative_low": self.relative_low, "relative_high": self.relative_high,
                "significant": self.significant, "text": self.describe()}


def _fmt_p(p: float) -> str:
    """``=0.03`` or ``<0.001`` (to follow a ``p``)."""
    return f"={p:.2g}" if p >= 0.001 else "<0.001"


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Welch's CI and test of mean(a) - mean(b) (see :class:`Difference`)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = int(xa.size), int(xb.size)
    ma = float(xa.mean()) if na else math.nan
    mb = float(xb.mean()) if nb else math.nan
    if na < 2 or nb < 2:
        return Difference(ma, mb, ma - mb, math.nan, math.nan, na, nb, math.nan, confidence)
    va, vb = float(xa.var(ddof=1)) / na, float(xb.var(ddof=1)) / nb
    se = math.sqrt(va + vb)
    if se == 0:  # identical constant samples: no uncertainty at all
        p = 1.0 if ma == mb else 0.0
        return Difference(ma, mb, ma - mb, 0.0, p, na, nb, math.inf, confidence)
    df = satterthwaite_df([(va, na), (vb, nb)])
    from scipy import stats

    t = (ma - mb) / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Difference(ma, mb, ma - mb, half, p, na, nb, df, confidence)


def satterthwaite_df(parts: Sequence[tuple[float, int]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance terms
    ``(variance of the term, observations behind it)``."""
    num = sum(v for v, _ in parts) ** 2
    den = sum(v * v / (n - 1) for v, n in parts if n > 1)
    return num / den if den > 0 else math.inf


@dataclass(frozen=True)
class RatioOfRatios:
    """(a1/b1) / (a2/b2) on the log scale, e.g. an E2E speedup against an inference-only
    speedup. Delta method: var(log mean) ~ s^2 / (n mean^2) for each of the four means."""

    value: float
    low: float
    high: float
    df: float

    @property
    def significant(self) -> bool:
        return not math.isnan(self.low) and (self.low > 1 or self.high < 1)


def ratio_of_ratios(a1: Sequence[float], b1: Sequence[float], a2: Sequence[float],
                    b2: Sequence[float], confidence: float = 0.95) -> RatioOfRatios:
    groups = [np.asarray(g, dtype=float) for g in (a1, b1, a2, b2)]
    means = [float(g.mean()) for g in groups]
    value = (means[0] / means[1]) / (means[2] / means[3])
    if any(g.size < 2 for g in groups) or any(m <= 0 for m in means):
        return RatioOfRatios(value, math.nan, math.nan, math.nan)
    parts = [(float(g.var(ddof=1)) / (g.size * m * m), int(g.size)) for g, m in zip(groups, means)]
    se = math.sqrt(sum(v for v, _ in parts))
    df = satterthwaite_df(parts)
    from scipy import stats

    t = float(stats.t.ppf(0.5 + confidence / 2, df)) if math.isfinite(df) else 1.959964
    log_v = math.log(value)
    return RatioOfRatios(value, math.exp(log_v - t * se), math.exp(log_v + t * se), df)
