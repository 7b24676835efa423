"""Statistics: the one home of every number deploybench derives from stored runs.

Raw values are what is stored; everything here is computed when results are read.

What is measured. A *round* is one LoadGen test in a warm worker; its mean E2E per request
is one observation (:func:`summarize_samples`, where under LoadGen's Server scenario E2E
includes the wait in the queue). A *launch* is one start of a platform and its worker,
holding several rounds. A *block* is one round of every scenario under comparison, in a
fresh random order, on one host; a *launch epoch* launches every active scenario once and
runs several blocks; then everything is relaunched.

One scenario (:func:`scenario_ci`): the mean E2E with a hierarchical CI, Student t over the
launch means (each the mean of its rounds), since launches, not rounds, are independent.
With one launch it falls back to its rounds, with one round to its requests, and says so
(``basis``). Nothing is ``converged`` with fewer than 3 launches.

Two scenarios (:func:`compare_paired`): the unit of replication is the *launch pair*. Per
block, the log of the ratio of the two rounds' means (drift of the host's speed multiplies
both and cancels); per launch pair, the mean over its blocks (they share the two launch
effects, so they are not independent); then the estimate of the ratio a/b, its CIs and
tests are over launch pairs (t, df = launch pairs - 1). Outlier blocks (a 1.5-3x hiccup in
one round) are found within each launch pair by a MAD rule, left out of its mean and
listed. A comparison ends as one of:

- ``faster`` / ``slower``: the (1-alpha) CI of the ratio excludes 1 and lies beyond the
  margin, wholly (below 1/(1+m) or above 1+m): a claim that a is faster or slower than b *by
  more than the margin*, so a real difference smaller than the margin (two cores of one
  host, one busier with interrupts) is never reported as one;
- ``equivalent``: TOST within the margin (default ±5%): the (1-2 alpha) CI inside
  [1/(1+m), 1+m];
- ``undecided``: neither, or fewer than 3 launch pairs.

Claims made together are decided together with Holm's correction (:func:`holm`,
:func:`decide_family`), so all of a report's claims hold with probability >= 1 - alpha.

Many scenarios (:func:`select_best`): ranking and selection with an indifference zone,
"pick X: every other scenario is slower than X, or within the margin of X". It is decided
when every rival is *cleared* (not faster than X beyond the margin, one-sided, Bonferroni
over the rivals); then the probability that X is within the margin of the truly fastest
scenario is at least 1 - alpha, however X was picked.

Racing (:func:`plan_epoch`): a pure function of the stored rounds that says which scenarios
the next launch epoch needs (those in a pending decision: a rival cleared against the best
drops out unless a claim needs it), how many blocks per launch buy the most precision per
second (:func:`blocks_per_launch`, from the variance between and within launch pairs), and
for each pending pair about how many more epochs would decide it (:func:`outlook`). The
guarantees above are for one look at the data; racing looks after every epoch, and the
simulated studies in tests/unit/test_decisions.py measure what that costs (A/A
false-positive rate, power, coverage, correct selection).

Older helpers, used by the per-run summaries of ``show``: Student-t CIs (:func:`mean_ci`),
percentiles with bootstrap CIs, and outliers by the modified z-score on the median absolute
deviation (Iglewicz and Hoaglin), reported, never dropped.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

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

def format_p(p: float) -> str:
    """``=0.03`` or ``<0.001`` (to follow a ``p``)."""
    return f"={p:.2g}" if p >= 0.001 else "<0.001"


def satterthwaite_df(parts: Sequence[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance terms
    ``(variance of the term, its degrees of freedom)``."""
    num = sum(v for v, _ in parts) ** 2
    den = sum(v * v / df for v, df in parts if df > 0)
    return num / den if den > 0 else math.inf


# =========================================================================================
# Launches, rounds, blocks: the hierarchical CI, paired comparisons, verdicts, selection and
# racing. See the module docstring for the procedure as a whole.
# =========================================================================================

#: Nothing is converged, faster, slower or equivalent with fewer independent launches (of a
#: scenario) or launch pairs (of a comparison) than this.
MIN_LAUNCHES = 3
#: The equivalence margin: ratios within [1/(1+m), 1+m] are "the same" (issue: ±5%).
DEFAULT_MARGIN = 0.05
DEFAULT_ALPHA = 0.05
#: Blocks per launch the racing plan chooses between. Three is the fewest with which one
#: outlier round in a launch pair can be told apart from the other two (see _flag_outliers).
MIN_BLOCKS, MAX_BLOCKS = 3, 8
#: why a scenario stops running when only claims out of reach still need it (plan_epoch)
GIVEN_UP = "its claims cannot be decided"
#: A block whose log-ratio lies further than this many robust standard deviations from its
#: launch pair's median is an outlier (chosen with tests/unit/simulate.py: about 0.3% of
#: clean blocks are flagged with 3 blocks per launch pair, fewer with more).
OUTLIER_Z = 4.5
#: The racing outlook gives up beyond this many more launch epochs ("out of reach").
MAX_OUTLOOK_EPOCHS = 200


def _t_quantile(df: float, q: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def _t_cdf(df: float, x: float) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom (x may be +-inf)."""
    from scipy.special import stdtr

    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    return float(stdtr(df, x))


def _t_stat(value: float, se: float) -> float:
    """value / se, with se == 0 read as an exact measurement (+-inf, or 0 for 0 / 0)."""
    if se > 0:
        return value / se
    return 0.0 if value == 0 else math.copysign(math.inf, value)


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _group_codes(keys: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Integer codes of ``keys`` in order of first appearance, and how many groups."""
    codes: dict[Any, int] = {}
    out = np.array([codes.setdefault(k, len(codes)) for k in keys], dtype=int)
    return out, len(codes)


def _variance_components(values: np.ndarray, groups: np.ndarray, n_groups: int
                         ) -> tuple[np.ndarray, float, float]:
    """One-way random-effects split of ``values`` grouped by ``groups``: the group means, the
    pooled within-group variance and the between-group variance (moment estimate, floored
    at 0; nan when it cannot be estimated)."""
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    means = np.bincount(groups, weights=values, minlength=n_groups) / counts
    resid_df = values.size - n_groups
    within = (float(np.sum((values - means[groups]) ** 2)) / resid_df) if resid_df > 0 else math.nan
    if n_groups >= 2:
        spread = float(np.var(means, ddof=1))
        between = max(0.0, spread - (within if math.isfinite(within) else 0.0) * float(np.mean(1 / counts)))
    else:
        between = math.nan
    return means, within, between


# -- one scenario: the hierarchical CI ---------------------------------------------------

@dataclass(frozen=True)
class Round:
    """One measured round: a LoadGen test of ``scenario`` in a warm worker of launch
    ``launch``, with its mean E2E per request; ``block`` names the block it was part of
    (None when it was not run in a block). Block ids must be unique within a study."""

    scenario: str
    launch: str
    mean_ms: float
    block: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "launch": self.launch, "mean_ms": self.mean_ms,
                "block": self.block}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Round":
        return cls(str(data["scenario"]), str(data["launch"]), float(data["mean_ms"]),
                   None if data.get("block") is None else str(data["block"]))


CI_BASES = ("launches", "rounds", "requests", "none")


@dataclass(frozen=True)
class ScenarioCI:
    """A scenario's mean E2E per request with a hierarchical CI.

    ``basis`` says what the CI is over: ``launches`` (t over the launch means, each the mean
    of its rounds: the honest one), ``rounds`` (one launch: t over its rounds, which knows
    nothing of how much another launch would differ), ``requests`` (one round: t over its
    requests), ``none`` (nothing to go on). The variance components are relative to the
    mean (standard deviations as fractions of it): between launches (beyond what round
    noise explains) and between rounds within a launch; nan when they cannot be estimated.
    """

    mean_ms: float
    half_width_ms: float  # nan when it cannot be computed
    basis: str
    launches: int
    rounds: int
    requests: int
    confidence: float = 0.95
    between_launch_sd_rel: float = math.nan
    within_launch_sd_rel: float = math.nan

    @property
    def low_ms(self) -> float:
        return self.mean_ms - self.half_width_ms

    @property
    def high_ms(self) -> float:
        return self.mean_ms + self.half_width_ms

    @property
    def relative(self) -> float:
        """Half-width as a fraction of the mean."""
        return self.half_width_ms / abs(self.mean_ms) if self.mean_ms else math.inf

    @property
    def within_one_launch(self) -> bool:
        """The CI is over rounds or requests of a single launch: it says nothing about how
        much another launch would differ."""
        return self.basis in ("rounds", "requests")

    def converged(self, target_rel_ci: float, min_launches: int = MIN_LAUNCHES) -> bool:
        """The CI is over at least ``min_launches`` launches and no wider than
        ``target_rel_ci`` x the mean."""
        return (self.basis == "launches" and self.launches >= min_launches
                and math.isfinite(self.half_width_ms) and self.relative <= target_rel_ci)

    def to_json(self) -> dict[str, Any]:
        return {"schema": 1, "mean_ms": _finite(self.mean_ms),
                "half_width_ms": _finite(self.half_width_ms), "basis": self.basis,
                "launches": self.launches, "rounds": self.rounds, "requests": self.requests,
                "confidence": self.confidence,
                "between_launch_sd_rel": _finite(self.between_launch_sd_rel),
                "within_launch_sd_rel": _finite(self.within_launch_sd_rel),
                "within_one_launch": self.within_one_launch}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ScenarioCI":
        if data.get("schema") != 1:
            raise ValueError(f"unsupported ScenarioCI schema {data.get('schema')!r} (expected 1)")
        return cls(_float(data["mean_ms"]), _float(data["half_width_ms"]), str(data["basis"]),
                   int(data["launches"]), int(data["rounds"]), int(data["requests"]),
                   float(data["confidence"]), _float(data["between_launch_sd_rel"]),
                   _float(data["within_launch_sd_rel"]))


def scenario_ci(rounds: Sequence[Round], request_ms: Sequence[float] = (),
                confidence: float = 0.95) -> ScenarioCI:
    """The hierarchical CI of one scenario's mean E2E (see :class:`ScenarioCI`).

    ``rounds`` are that scenario's rounds (all launches); ``request_ms`` are the per-request
    E2E times of its single round, used only when there is exactly one round.
    """
    if len({r.scenario for r in rounds}) > 1:
        raise ValueError("scenario_ci takes the rounds of one scenario; got "
                         + ", ".join(sorted({r.scenario for r in rounds})))
    requests = np.asarray(request_ms, dtype=float)
    if not rounds:
        return ScenarioCI(math.nan, math.nan, "none", 0, 0, int(requests.size), confidence)
    values = np.array([r.mean_ms for r in rounds], dtype=float)
    groups, n_launches = _group_codes([r.launch for r in rounds])
    launch_means, within, between = _variance_components(values, groups, n_launches)
    mean = float(launch_means.mean())
    rel = lambda var: math.sqrt(var) / abs(mean) if math.isfinite(var) and mean else math.nan  # noqa: E731
    parts = dict(between_launch_sd_rel=rel(between), within_launch_sd_rel=rel(within))
    if n_launches >= 2:
        ci = mean_ci(launch_means, confidence)
        return ScenarioCI(mean, ci.half_width, "launches", n_launches, len(rounds),
                          int(requests.size), confidence, **parts)
    if len(rounds) >= 2:
        ci = mean_ci(values, confidence)
        return ScenarioCI(mean, ci.half_width, "rounds", 1, len(rounds), int(requests.size),
                          confidence, **parts)
    if requests.size >= 2:
        ci = mean_ci(requests, confidence)
        return ScenarioCI(mean, ci.half_width, "requests", 1, 1, int(requests.size), confidence,
                          **parts)
    return ScenarioCI(mean, math.nan, "none", 1, 1, int(requests.size), confidence, **parts)


# -- two scenarios: the paired comparison ------------------------------------------------

@dataclass(frozen=True)
class PairedBlock:
    """One block as seen by a comparison of ``a`` with ``b``: the launches of the two rounds
    and their mean E2E per request."""

    block: str
    launch_a: str
    launch_b: str
    mean_a_ms: float
    mean_b_ms: float


def paired_blocks(rounds: Sequence[Round], a: str, b: str) -> list[PairedBlock]:
    """The blocks that hold one round of ``a`` and one of ``b``, in order of appearance."""
    by_block: dict[str, dict[str, Round]] = {}
    for r in rounds:
        if r.block is None or r.scenario not in (a, b):
            continue
        seen = by_block.setdefault(r.block, {})
        if r.scenario in seen:
            raise ValueError(f"block {r.block!r} holds two rounds of {r.scenario}; "
                             "a block has one round of each scenario")
        seen[r.scenario] = r
    return [PairedBlock(block, pair[a].launch, pair[b].launch, pair[a].mean_ms, pair[b].mean_ms)
            for block, pair in by_block.items() if a in pair and b in pair]


class Verdict(str, Enum):
    FASTER = "faster"  # a is faster than b (ratio a/b < 1)
    SLOWER = "slower"
    EQUIVALENT = "equivalent"
    UNDECIDED = "undecided"

    @property
    def decided(self) -> bool:
        return self is not Verdict.UNDECIDED


@dataclass(frozen=True)
class FlaggedBlock:
    """A block left out of its launch pair's mean as an outlier: its ratio a/b against the
    launch pair's median ratio (above it: a's round was slow or b's fast)."""

    block: str
    launch_a: str
    launch_b: str
    ratio: float
    launch_pair_median: float

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "launch_a": self.launch_a, "launch_b": self.launch_b,
                "ratio": self.ratio, "launch_pair_median": self.launch_pair_median}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FlaggedBlock":
        return cls(str(data["block"]), str(data["launch_a"]), str(data["launch_b"]),
                   float(data["ratio"]), float(data["launch_pair_median"]))


@dataclass(frozen=True)
class PairedComparison:
    """``a`` against ``b`` from interleaved blocks: the ratio of means a/b with its CIs, tests
    and verdict (see :func:`compare_paired`). All estimates are on the log scale
    underneath: ``log_ratio`` is the mean over launch pairs of log(a/b), ``log_se`` its
    standard error with ``df`` degrees of freedom.

    ``tost_p_low`` is the one-sided p-value against "a/b <= 1/(1+margin)" (a faster beyond
    the margin), ``tost_p_high`` against "a/b >= 1+margin"; TOST's p-value is the larger.
    ``adjusted_p_value`` is the p-value of the verdict's claim after a family's Holm
    correction (the claim's own p-value for a family of one).
    """

    a: str
    b: str
    log_ratio: float
    log_se: float
    df: float
    p_value: float  # two-sided, against ratio == 1
    tost_p_low: float
    tost_p_high: float
    adjusted_p_value: float
    verdict: Verdict
    margin: float
    alpha: float
    min_launches: int
    launch_pairs: int
    blocks: int  # blocks used (outliers excluded)
    basis: str  # "launch pairs" | "blocks" (one launch pair: within it only) | "none"
    between_var: float  # of log(a/b) between launch pairs, beyond block noise (nan: unknown)
    within_var: float  # of log(a/b) between blocks of one launch pair (nan: unknown)
    outliers: tuple[FlaggedBlock, ...] = ()

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio) if math.isfinite(self.log_ratio) else math.nan

    def _interval(self, two_sided_alpha: float) -> tuple[float, float]:
        if not (math.isfinite(self.log_se) and self.df > 0):
            return (math.nan, math.nan)
        half = _t_quantile(self.df, 1 - two_sided_alpha / 2) * self.log_se
        return (math.exp(self.log_ratio - half), math.exp(self.log_ratio + half))

    @property
    def ci(self) -> tuple[float, float]:
        """The (1 - alpha) CI of the ratio a/b."""
        return self._interval(self.alpha)

    @property
    def tost_ci(self) -> tuple[float, float]:
        """The (1 - 2 alpha) CI of the ratio: inside [1/(1+m), 1+m] exactly when TOST says
        equivalent at level alpha."""
        return self._interval(2 * self.alpha)

    @property
    def tost_p_value(self) -> float:
        return max(self.tost_p_low, self.tost_p_high)

    @property
    def log_margin(self) -> float:
        return math.log1p(self.margin)

    @property
    def beyond_p_value(self) -> float:
        """The p-value of "a and b differ by more than the margin, on the estimate's side":
        twice the one-sided p against the margin's bound there (1+m above 1, 1/(1+m) below),
        so that it is below alpha exactly when the (1-alpha) CI lies wholly beyond the
        margin. nan without an estimate or a standard error."""
        if not (math.isfinite(self.log_ratio) and math.isfinite(self.log_se) and self.df > 0):
            return math.nan
        excess = abs(self.log_ratio) - self.log_margin
        return min(1.0, 2 * _t_cdf(self.df, -_t_stat(excess, self.log_se)))

    @property
    def candidate(self) -> Verdict:
        """The one claim the data could support: faster/slower when the estimate is beyond the
        margin, equivalent when it is within (undecided when there is no estimate)."""
        if not math.isfinite(self.log_ratio):
            return Verdict.UNDECIDED
        if abs(self.log_ratio) > self.log_margin:
            return Verdict.FASTER if self.log_ratio < 0 else Verdict.SLOWER
        return Verdict.EQUIVALENT

    @property
    def claim_p_value(self) -> float:
        """The candidate claim's own p-value (1 when it cannot be tested: too few launch pairs
        or no estimate), the one a family's Holm correction adjusts."""
        if self.launch_pairs < self.min_launches or self.basis != "launch pairs":
            return 1.0
        candidate = self.candidate
        if candidate is Verdict.UNDECIDED:
            return 1.0
        p = self.tost_p_value if candidate is Verdict.EQUIVALENT else self.beyond_p_value
        return p if math.isfinite(p) else 1.0

    def with_adjusted_p(self, adjusted_p: float) -> "PairedComparison":
        """This comparison with its claim judged at ``adjusted_p`` (from a family)."""
        verdict = self.candidate if adjusted_p < self.alpha else Verdict.UNDECIDED
        if self.launch_pairs < self.min_launches or self.basis != "launch pairs":
            verdict = Verdict.UNDECIDED
        return dataclasses.replace(self, adjusted_p_value=adjusted_p, verdict=verdict)

    def flipped(self) -> "PairedComparison":
        """``b`` against ``a`` (the same data, the ratio inverted)."""
        verdict = {Verdict.FASTER: Verdict.SLOWER, Verdict.SLOWER: Verdict.FASTER}.get(
            self.verdict, self.verdict)
        outliers = tuple(FlaggedBlock(f.block, f.launch_b, f.launch_a, 1 / f.ratio,
                                      1 / f.launch_pair_median) for f in self.outliers)
        return dataclasses.replace(self, a=self.b, b=self.a, log_ratio=-self.log_ratio,
                                   tost_p_low=self.tost_p_high, tost_p_high=self.tost_p_low,
                                   verdict=verdict, outliers=outliers)

    def describe(self) -> str:
        """``CN/1/PIN/CPU vs BM/1/PIN/CPU: 0.97x (95% CI 0.95..0.99), equivalent within ±5%
        (p=0.01; 5 launch pairs, 15 blocks, 1 outlier block)``."""
        return f"{self.a} vs {self.b}: {self.describe_result()}"

    def describe_result(self) -> str:
        """What :meth:`describe` says after the two names (which may hold ": " themselves:
        a scenario key is JSON)."""
        lo, hi = self.ci
        conf = f"{(1 - self.alpha) * 100:g}%"
        interval = (f"{conf} CI {lo:.3f}..{hi:.3f}" if math.isfinite(lo)
                    else "no CI: needs >= 2 launch pairs")
        what = {Verdict.FASTER: "faster", Verdict.SLOWER: "slower",
                Verdict.EQUIVALENT: f"equivalent within ±{self.margin:.0%}",
                Verdict.UNDECIDED: "undecided"}[self.verdict]
        counts = f"{self.launch_pairs} launch pair{'s' if self.launch_pairs != 1 else ''}, {self.blocks} blocks"
        if self.outliers:
            counts += f", {len(self.outliers)} outlier block{'s' if len(self.outliers) != 1 else ''}"
        p = "" if self.verdict is Verdict.UNDECIDED else f"p{format_p(self.adjusted_p_value)}; "
        return f"{self.ratio:.3f}x ({interval}), {what} ({p}{counts})"

    def to_json(self) -> dict[str, Any]:
        ci, tost_ci = self.ci, self.tost_ci
        return {"schema": 1, "a": self.a, "b": self.b, "verdict": self.verdict.value,
                "ratio": _finite(self.ratio), "ci": [_finite(ci[0]), _finite(ci[1])],
                "tost_ci": [_finite(tost_ci[0]), _finite(tost_ci[1])], "margin": self.margin,
                "alpha": self.alpha, "p_value": _finite(self.p_value),
                "beyond_p_value": _finite(self.beyond_p_value),
                "tost_p_value": _finite(self.tost_p_value), "tost_p_low": _finite(self.tost_p_low),
                "tost_p_high": _finite(self.tost_p_high),
                "adjusted_p_value": _finite(self.adjusted_p_value),
                "log_ratio": _finite(self.log_ratio), "log_se": _finite(self.log_se),
                "df": _finite(self.df), "min_launches": self.min_launches,
                "launch_pairs": self.launch_pairs, "blocks": self.blocks, "basis": self.basis,
                "between_var": _finite(self.between_var), "within_var": _finite(self.within_var),
                "outliers": [f.to_json() for f in self.outliers], "text": self.describe()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PairedComparison":
        if data.get("schema") != 1:
            raise ValueError(f"unsupported comparison schema {data.get('schema')!r} (expected 1)")
        return cls(str(data["a"]), str(data["b"]), _float(data["log_ratio"]),
                   _float(data["log_se"]), _float(data["df"]), _float(data["p_value"]),
                   _float(data["tost_p_low"]), _float(data["tost_p_high"]),
                   _float(data["adjusted_p_value"]), Verdict(data["verdict"]),
                   float(data["margin"]), float(data["alpha"]), int(data["min_launches"]),
                   int(data["launch_pairs"]), int(data["blocks"]), str(data["basis"]),
                   _float(data["between_var"]), _float(data["within_var"]),
                   tuple(FlaggedBlock.from_json(f) for f in data.get("outliers", ())))


def _flag_outliers(values: np.ndarray, groups: np.ndarray, n_groups: int,
                   threshold: float = OUTLIER_Z) -> tuple[np.ndarray, np.ndarray]:
    """Outliers among ``values`` within their groups, and each group's median.

    A value is an outlier when it lies further than ``threshold`` robust standard deviations
    from its group's median. The scale is pooled over all groups of >= 3 values: 1.4826 x the
    median absolute residual, leaving out the residuals that are exactly 0 (the median value
    of an odd group itself), so that groups of three still give a usable scale. Groups of
    one or two values cannot say which value is off: nothing in them is flagged.
    """
    medians = np.array([np.median(values[groups == g]) for g in range(n_groups)])
    resid = values - medians[groups]
    counts = np.bincount(groups, minlength=n_groups)
    eligible = counts[groups] >= 3
    pooled = np.abs(resid[eligible])
    pooled = pooled[pooled > 0]
    if pooled.size == 0:
        return np.zeros(values.size, dtype=bool), medians
    scale = 1.4826 * float(np.median(pooled))
    flagged = eligible & (np.abs(resid) > threshold * scale)
    for g in np.unique(groups[flagged]):  # never leave a group empty
        if flagged[groups == g].all():
            flagged[groups == g] = False
    return flagged, medians


def _judged(a: str, b: str, log_ratio: float, se: float, df: float, launch_pairs: int,
            used: int, basis: str, *, margin: float, alpha: float, min_launches: int,
            between: float = math.nan, within: float = math.nan,
            outliers: tuple[FlaggedBlock, ...] = ()) -> PairedComparison:
    """A comparison from its estimate of log(a/b), standard error and degrees of freedom:
    its tests, and its verdict as a family of one."""
    log_margin = math.log1p(margin)
    if math.isfinite(se) and df > 0:
        p = 2 * _t_cdf(df, -abs(_t_stat(log_ratio, se)))
        p_low = _t_cdf(df, -_t_stat(log_ratio + log_margin, se))
        p_high = _t_cdf(df, _t_stat(log_ratio - log_margin, se))
    else:
        p = p_low = p_high = math.nan
    comparison = PairedComparison(a, b, log_ratio, se, df, p, p_low, p_high, math.nan,
                                  Verdict.UNDECIDED, margin, alpha, min_launches,
                                  launch_pairs, used, basis, between, within, outliers)
    return comparison.with_adjusted_p(comparison.claim_p_value)


def compare_paired(blocks: Sequence[PairedBlock], *, a: str = "a", b: str = "b",
                   margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA,
                   min_launches: int = MIN_LAUNCHES, outlier_z: float = OUTLIER_Z
                   ) -> PairedComparison:
    """``a`` against ``b`` from the blocks that hold both.

    The unit. Per block, d = log(mean of a's round / mean of b's round). The two rounds of a
    block run back to back on the same host, so a slow multiplicative drift of the host's
    speed (frequency, thermal state, neighbours) multiplies both and cancels in the ratio;
    the random order within the block keeps what drift is left from favouring either side.
    Blocks are not independent replicates, though: every block of one *launch pair* (a's
    launch, b's launch) shares the same two launch effects (where the memory landed, which
    core the threads settled on, the allocator's and JIT's state), a few per cent that no
    number of blocks averages away. Treating blocks as the unit would be pseudo-replication:
    CIs too narrow, false findings. So each launch pair contributes one value, the mean of
    its blocks' d, and the estimate, its standard error and the t test (df = launch pairs
    - 1) are over launch pairs, which are independent because each launch epoch relaunches
    every scenario. The variance over launch pairs includes the block noise, so nothing is
    counted twice. Launch pairs are weighted equally.

    Outlier rounds (a hiccup making one round 1.5-3x slower) would otherwise shift a launch
    pair's mean by a third of the hiccup with three blocks. Within each launch pair of >= 3
    blocks, a block whose d is more than ``outlier_z`` robust SDs (pooled over the
    comparison) from the pair's median is left out of that pair's mean and listed in
    ``outliers``: left out, never silently (``outlier_z=math.inf`` keeps every block). tests/unit/test_decisions.py shows, on simulated studies, that this
    keeps the CI's coverage at its nominal level with outliers present, and that the plain
    mean loses power there. A platform that hiccups often is still seen: its flagged blocks
    are listed, on its side of the ratio.

    The verdict is that of a family of one (see :func:`decide_family` for several claims
    together): ``faster``/``slower`` when the (1-alpha) CI of the ratio lies wholly beyond
    the margin (so it excludes 1 too); ``equivalent`` when the (1-2 alpha) CI lies inside
    [1/(1+m), 1+m] (TOST); otherwise ``undecided``; always ``undecided`` with fewer than
    ``min_launches`` launch pairs.
    """
    if min_launches < 2:
        raise ValueError(f"min_launches must be >= 2 (a comparison over one launch pair knows "
                         f"nothing of launch effects), got {min_launches}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")

    def result(log_ratio: float, se: float, df: float, launch_pairs: int, used: int, basis: str,
               between: float = math.nan, within: float = math.nan,
               outliers: tuple[FlaggedBlock, ...] = ()) -> PairedComparison:
        return _judged(a, b, log_ratio, se, df, launch_pairs, used, basis, margin=margin,
                       alpha=alpha, min_launches=min_launches, between=between, within=within,
                       outliers=outliers)

    if not blocks:
        return result(math.nan, math.nan, math.nan, 0, 0, "none")
    mean_a = np.array([x.mean_a_ms for x in blocks], dtype=float)
    mean_b = np.array([x.mean_b_ms for x in blocks], dtype=float)
    if not (np.all(mean_a > 0) and np.all(mean_b > 0)):
        raise ValueError(f"{a} vs {b}: round means must be > 0 to take their ratio")
    d = np.log(mean_a / mean_b)
    groups, n_pairs = _group_codes([(x.launch_a, x.launch_b) for x in blocks])
    flagged, medians = _flag_outliers(d, groups, n_pairs, outlier_z)
    outliers = tuple(FlaggedBlock(x.block, x.launch_a, x.launch_b, float(math.exp(d[i])),
                                  float(math.exp(medians[groups[i]])))
                     for i, x in enumerate(blocks) if flagged[i])
    kept, kept_groups = d[~flagged], groups[~flagged]
    pair_means, within, between = _variance_components(kept, kept_groups, n_pairs)
    estimate = float(pair_means.mean())
    if n_pairs >= 2:
        se = float(np.std(pair_means, ddof=1)) / math.sqrt(n_pairs)
        return result(estimate, se, n_pairs - 1, n_pairs, int(kept.size), "launch pairs",
                      between, within, outliers)
    if kept.size >= 2:
        se = float(np.std(kept, ddof=1)) / math.sqrt(kept.size)
        return result(estimate, se, kept.size - 1, 1, int(kept.size), "blocks", between, within,
                      outliers)
    return result(estimate, math.nan, math.nan, 1, int(kept.size), "blocks", between, within,
                  outliers)


def compare_rounds(rounds: Sequence[Round], a: str, b: str, **options: Any) -> PairedComparison:
    """:func:`compare_paired` on the blocks of ``rounds`` that hold both ``a`` and ``b``."""
    return compare_paired(paired_blocks(rounds, a, b), a=a, b=b, **options)


def ratio_of_comparisons(x: PairedComparison, y: PairedComparison, *, a: str, b: str
                         ) -> PairedComparison:
    """How much the ratio of one paired comparison differs from another's: ``x.ratio /
    y.ratio`` as a comparison of its own, named ``a`` against ``b`` (e.g. an E2E speedup
    against the same pair's inference-only speedup, best practice 5).

    The two must come from different launches (two workloads never share one), so their
    launch-pair means are independent: log(x/y) = x.log_ratio - y.log_ratio, its standard
    error sqrt(se_x^2 + se_y^2), with Welch-Satterthwaite degrees of freedom from the two
    comparisons' own (launch pairs - 1 each). So it inherits the launch-level replication of
    both sides, never rounds as if they were independent. Its verdict follows the same rules
    (``faster``/``slower``: x's ratio is below/above y's by more than the margin;
    ``equivalent``: within it by TOST; ``undecided`` when either side has fewer than
    min_launches launch pairs), and it joins a family like any claim. Margin, alpha and
    min_launches are x's."""
    both = x.basis == "launch pairs" and y.basis == "launch pairs"
    log_ratio = x.log_ratio - y.log_ratio
    se, df = math.nan, math.nan
    if both and math.isfinite(x.log_se) and math.isfinite(y.log_se):
        se = math.sqrt(x.log_se ** 2 + y.log_se ** 2)
        df = satterthwaite_df([(x.log_se ** 2, x.df), (y.log_se ** 2, y.df)])
        if not math.isfinite(df):  # both standard errors are 0
            df = x.df + y.df
    return _judged(a, b, log_ratio, se, df, min(x.launch_pairs, y.launch_pairs),
                   x.blocks + y.blocks, "launch pairs" if both else "none", margin=x.margin,
                   alpha=x.alpha, min_launches=x.min_launches)


# -- several claims together: Holm -------------------------------------------------------

class Claim(Protocol):
    """What a family decides (:func:`decide_family`): a claim with its own p-value, judged
    again at the p-value the family's correction gives it."""

    @property
    def alpha(self) -> float: ...

    @property
    def claim_p_value(self) -> float: ...

    def with_adjusted_p(self, adjusted_p: float) -> Any: ...


C = TypeVar("C", bound=Claim)


@dataclass(frozen=True)
class LevelEstimate:
    """A quantity measured in every round (a phase's share of E2E, say), estimated over
    launches: the mean of the launch means (each the mean of its rounds), its standard
    error over launches (nan with fewer than 2), as :func:`scenario_ci` does for E2E."""

    name: str
    mean: float
    se: float
    launches: int

    def p_at_most(self, level: float) -> float:
        """One-sided p-value against "the true value is at most ``level``" (t over
        launches): small when the data say it lies above."""
        return self._p(self.mean - level)

    def p_at_least(self, level: float) -> float:
        """One-sided p-value against "the true value is at least ``level``"."""
        return self._p(level - self.mean)

    def _p(self, excess: float) -> float:
        if self.launches < 2 or not math.isfinite(self.se) or not math.isfinite(self.mean):
            return 1.0
        return _t_cdf(self.launches - 1, -_t_stat(excess, self.se))


def level_estimate(name: str, values: Sequence[tuple[str, float]]) -> LevelEstimate:
    """:class:`LevelEstimate` from ``(launch, value)`` per round."""
    if not values:
        return LevelEstimate(name, math.nan, math.nan, 0)
    groups, n = _group_codes([launch for launch, _ in values])
    means, _, _ = _variance_components(np.array([v for _, v in values], dtype=float), groups, n)
    se = float(np.std(means, ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
    return LevelEstimate(name, float(means.mean()), se, n)


@dataclass(frozen=True)
class ThresholdClaim:
    """One claim about several levels against a threshold: *some reach it* when the largest
    estimate does, else *all stay below it*, tested at launch level and decided like any
    claim of a family (``decided`` after :meth:`with_adjusted_p`).

    Some reach it: the smallest of the levels' one-sided p-values against "at most the
    threshold", times the number of levels tested (Bonferroni: which level is largest was
    read from the data). All stay below it: the largest of their p-values against "at least
    the threshold" (an intersection-union test: every level must be shown below, so no
    correction), and only when every level has >= ``min_launches`` launches. A level with
    fewer launches is not tested (p = 1)."""

    label: str
    threshold: float
    levels: tuple[LevelEstimate, ...]
    alpha: float
    min_launches: int = MIN_LAUNCHES
    adjusted_p_value: float = math.nan
    decided: bool = False

    @property
    def reaches(self) -> bool:
        """The claim the estimates point to: some level reaches the threshold."""
        means = [lv.mean for lv in self.levels if math.isfinite(lv.mean)]
        return bool(means) and max(means) >= self.threshold

    @property
    def claim_p_value(self) -> float:
        tested = [lv for lv in self.levels if lv.launches >= self.min_launches]
        if not tested:
            return 1.0
        if self.reaches:
            return min(1.0, len(tested) * min(lv.p_at_most(self.threshold) for lv in tested))
        if len(tested) < len(self.levels):
            return 1.0
        return max(lv.p_at_least(self.threshold) for lv in tested)

    def with_adjusted_p(self, adjusted_p: float) -> "ThresholdClaim":
        return dataclasses.replace(self, adjusted_p_value=adjusted_p, decided=adjusted_p < self.alpha)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: sort ascending, multiply the
    i-th smallest (from 0) by (m - i), carry the running maximum, cap at 1. A claim whose
    adjusted p-value is below alpha holds with the family-wise error rate at most alpha.
    A nan p-value (an untestable claim) counts as 1: it stays in the family."""
    p = np.array([1.0 if (v is None or not math.isfinite(v)) else float(v) for v in pvalues])
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def decide_family(comparisons: Sequence[C], family_size: int | None = None) -> list[C]:
    """The claims with their verdicts decided together: each one's candidate claim (for a
    comparison, faster/slower or equivalent, see :attr:`PairedComparison.candidate`) is
    judged at its Holm-adjusted p-value, so that all the claims made hold together with
    probability at least 1 - alpha (family-wise). The claims must share one alpha.

    ``family_size``: the claims of the whole family when ``comparisons`` are only some of
    them (a sweep deciding one group's claims that its study's report will decide with
    every other group's): the others count as not yet testable (p = 1, ranked last), the
    strictest place Holm can give these, so a claim decided here stays decided in the
    family, whatever the others' p-values turn out to be."""
    if not comparisons:
        return []
    alphas = {c.alpha for c in comparisons}
    if len(alphas) > 1:
        raise ValueError(f"a family is decided at one alpha; got {sorted(alphas)}")
    others = max(0, (family_size or 0) - len(comparisons))
    adjusted = holm([c.claim_p_value for c in comparisons] + [1.0] * others)
    return [c.with_adjusted_p(p) for c, p in zip(comparisons, adjusted)]


# -- how much more data a decision needs -------------------------------------------------

@dataclass(frozen=True)
class PairOutlook:
    """How many more launch epochs (and blocks) would decide the pair (a, b), projected
    from the current estimate and variance components: ``more_epochs`` None when it is out
    of reach (the estimate sits on the decision's boundary) or cannot be projected yet."""

    a: str
    b: str
    test: str  # "verdict" (a claim) | "clearance" (a rival of the selected best)
    more_epochs: int | None
    more_blocks: int | None
    basis: str  # "projected" | "minimum" (variance unknown yet) | "out of reach"

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "test": self.test, "more_epochs": self.more_epochs,
                "more_blocks": self.more_blocks, "basis": self.basis}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PairOutlook":
        return cls(str(data["a"]), str(data["b"]), str(data["test"]), data.get("more_epochs"),
                   data.get("more_blocks"), str(data["basis"]))


def outlook(comparison: PairedComparison, *, blocks_per_launch: int, level: float,
            test: str = "verdict", max_epochs: int = MAX_OUTLOOK_EPOCHS,
            pooled: "PooledVariance | None" = None) -> PairOutlook:
    """More launch epochs needed to decide ``comparison`` at significance ``level``
    (the level its test will face: alpha over the family size, conservatively).

    Plug-in projection: the estimate stays where it is, each new launch pair has
    ``blocks_per_launch`` blocks, and the variance of a launch pair's mean is
    between_var + within_var / blocks (the current components, as if the launch pairs so
    far had that many blocks too). ``test`` "verdict": the smallest total K with the
    (1-level) CI wholly beyond the margin when the estimate is beyond it, or the (1-2 level) CI
    inside the margin when it is within. ``test`` "clearance": the one-sided bound against
    a being faster than b beyond the margin (see :func:`select_best`), with the variance
    and degrees of freedom :func:`clearance_p_value` takes from the rival's ``pooled``
    launch variance when given (the degrees of freedom growing epoch by epoch as they have
    so far).
    """
    c, k = comparison, comparison.launch_pairs
    floor = max(1, c.min_launches - k)
    known = c.basis == "launch pairs" and math.isfinite(c.between_var) and math.isfinite(c.log_ratio)
    if not known:
        return PairOutlook(c.a, c.b, test, floor, floor * blocks_per_launch, "minimum")
    var = c.between_var + (c.within_var if math.isfinite(c.within_var) else 0.0) / blocks_per_launch
    if var <= 0:
        var = c.log_se ** 2 * k if math.isfinite(c.log_se) else 0.0
    est, m = c.log_ratio, c.log_margin
    if test == "clearance":
        gap, quantile = est + m, 1 - level
    elif abs(est) > m:
        gap, quantile = abs(est) - m, 1 - level / 2
    else:
        gap, quantile = m - abs(est), 1 - level
    if gap <= 0:
        return PairOutlook(c.a, c.b, test, None, None, "out of reach")
    df_at: Callable[[int], float] = lambda total: total - 1
    if test == "clearance" and pooled is not None:  # the variance clearance_p_value takes
        var, df_at = clearance_variance(c, pooled), pooled.df_at
    for total in range(max(k + 1, c.min_launches, 2), k + max_epochs + 1):
        if _t_quantile(df_at(total), quantile) * math.sqrt(var / total) < gap:
            more = total - k
            return PairOutlook(c.a, c.b, test, more, more * blocks_per_launch, "projected")
    return PairOutlook(c.a, c.b, test, None, None, "out of reach")


def blocks_per_launch(between_var: float, within_var: float, launch_s: float, round_s: float,
                      lo: int = MIN_BLOCKS, hi: int = MAX_BLOCKS) -> int:
    """Blocks per launch that buy the most precision per second: a launch epoch costs
    launch_s + b round_s and leaves a launch pair's mean with variance between + within / b,
    so (cost x variance) is smallest at b = sqrt(within / between x launch_s / round_s)
    (the classic two-stage allocation). Clamped to [lo, hi]; ``lo`` when unknown."""
    if not (math.isfinite(between_var) and math.isfinite(within_var)) or round_s <= 0:
        return lo
    if between_var <= 0:
        return hi
    best = math.sqrt(within_var / between_var * max(launch_s, 0.0) / round_s)
    return int(min(hi, max(lo, round(best))))


# -- many scenarios: selection of the best with an indifference zone ---------------------

@dataclass(frozen=True)
class PooledVariance:
    """The variance of one launch pair's mean log-ratio, pooled over pairs of a
    selection's scenarios (see :func:`pooled_launch_variance` and :func:`clearance_pool`),
    with its degrees of freedom."""

    log_var: float
    df: float
    pairs: int  # the pairs it pools
    epochs: int  # the most launch pairs of any of them

    def df_at(self, launch_pairs: int) -> float:
        """The degrees of freedom once the best-measured pairs have ``launch_pairs``: each
        further epoch adds what one epoch added so far (a projection for the outlook)."""
        if self.epochs <= 1:
            return float(max(1, launch_pairs - 1))
        return self.df * (launch_pairs - 1) / (self.epochs - 1)

    def to_json(self) -> dict[str, Any]:
        return {"log_var": self.log_var, "df": self.df, "pairs": self.pairs, "epochs": self.epochs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PooledVariance":
        return cls(float(data["log_var"]), float(data["df"]), int(data["pairs"]), int(data["epochs"]))


def pooled_launch_variance(comparisons: Sequence[PairedComparison]) -> PooledVariance | None:
    """The launch pairs' variance pooled over the pairwise comparisons of a set of scenarios
    measured in the same launch epochs: the randomized complete block design, with epochs as
    blocks and scenarios as treatments.

    Model: the mean log round time of scenario s in epoch l is mu_s + lambda_l + e_sl (an
    epoch effect shared by all, a launch effect of variance sigma^2), so one launch pair's
    mean log-ratio has variance 2 sigma^2 for every pair. Each pair's sample variance over
    its launch pairs estimates it; their average, weighted by each pair's degrees of
    freedom, is the estimate. Its degrees of freedom are the two-way model's residual ones,
    (epochs - 1)(scenarios - 1) when all ran every epoch: with K scenarios the K(K-1)/2
    pairs share their data, so their degrees of freedom add up to K/2 times that, and the
    sum is divided by K/2 (in a balanced design exactly the two-way ANOVA's mean square and
    degrees of freedom; in the racing designs worked out, where some scenarios stop after
    the first epochs, fewer degrees of freedom than the two-way fit's own count).

    Why: a selection's clearances each use alpha/(k-1) one-sided; on a pair's own variance
    with 3 launch pairs that is a t quantile at 2 degrees of freedom (6.2 for 5 scenarios),
    and the selection stays open for epochs after the data have settled it. Pooled over 5
    scenarios the same 3 epochs give 8 degrees of freedom (2.8). The price is the
    assumption of one launch variance, which real platforms need not meet (on this project's
    2-core host, IC tiny's launch effects ranged from 1.2% to 3.1% sd over five scenarios):
    :func:`clearance_p_value` therefore never takes a variance below the pair's own, and
    tests/unit/test_decisions.py measures the probability of a correct selection with some
    scenarios' launch effects two and three times as large as the others'. Comparisons made
    as claims (faster, slower, equivalent) keep their own pair's variance and degrees of
    freedom.

    Only comparisons over >= 2 launch pairs count; None when there are none.
    """
    usable = [c for c in comparisons if _usable_for_pooling(c)]
    if not usable:
        return None
    dfs = np.array([c.launch_pairs - 1 for c in usable], dtype=float)
    variances = np.array([_launch_pair_var(c) for c in usable])
    scenarios = {s for c in usable for s in (c.a, c.b)}
    df = float(dfs.sum()) * 2 / len(scenarios)
    return PooledVariance(float(np.sum(dfs * variances) / dfs.sum()), df, len(usable),
                          max(c.launch_pairs for c in usable))


#: a scenario whose launches look more than this many times as variable (variance; twice
#: the sd) as the more variable of a pair's two stays out of that pair's pool
NOISIER_FACTOR = 4.0


def _usable_for_pooling(c: PairedComparison) -> bool:
    return c.basis == "launch pairs" and c.launch_pairs >= 2 and math.isfinite(c.log_se)


def _launch_pair_var(c: PairedComparison) -> float:
    """The variance of one launch pair's mean log-ratio, from the pair's own data."""
    return c.log_se ** 2 * c.launch_pairs


def clearance_variance(c: PairedComparison, pooled: PooledVariance) -> float:
    """The launch-pair variance a clearance takes: the pooled one, never below the pair's own."""
    return max(pooled.log_var, _launch_pair_var(c))


def clearance_pool(comparisons: Sequence[PairedComparison], a: str, b: str) -> PooledVariance | None:
    """The launch variance one clearance (a against b) pools: :func:`pooled_launch_variance`
    over the pairs among a, b and every other scenario whose launches do not look more
    than NOISIER_FACTOR times as variable as the more variable of a and b.

    A scenario's spread is the median, over its pairs, of a launch pair's variance: a
    scenario much noisier than the rest shows it in all its pairs, a quiet one in at most
    the pairs it shares with noisy ones. Why: one noisy scenario takes part in K-1 of the
    K(K-1)/2 pairs, so with every pair pooled it raised every clearance's variance. On
    this host, IC tiny on BM/2/PIN beside a duty-cycling neighbour had a launch-pair sd of
    about 34% against a few % for the 1-core scenarios, and two of those stayed uncleared
    for 20 epochs while their own pairs' CIs (0.995..1.011 and 1.019..1.052 against the
    pick, margin 0.952) would have cleared them. A noisier scenario that is one of the
    pair is always in; the clearance never takes less than its own pair's variance
    (:func:`clearance_variance`)."""
    usable = [c for c in comparisons if _usable_for_pooling(c)]
    spread: dict[str, list[float]] = {}
    for c in usable:
        v = _launch_pair_var(c)
        spread.setdefault(c.a, []).append(v)
        spread.setdefault(c.b, []).append(v)
    median = {s: float(np.median(v)) for s, v in spread.items()}
    if a in median and b in median:
        cap = NOISIER_FACTOR * max(median[a], median[b])
        keep = {a, b} | {s for s, v in median.items() if v <= cap}
        usable = [c for c in usable if c.a in keep and c.b in keep]
    return pooled_launch_variance(usable)


def clearance_p_value(comparison: PairedComparison, pooled: PooledVariance | None) -> float:
    """The one-sided p-value against "a is faster than b beyond the margin" (a/b <=
    1/(1+m)); 1 with fewer than min_launches launch pairs or no estimate.

    With ``pooled`` (the launch variance :func:`clearance_pool` pools for it), the test
    takes the pooled degrees of freedom and the larger of the pooled variance and the
    pair's own: pooling lends the pair the other pairs' degrees of freedom, never a smaller
    variance than its own data show. Without the second half, a scenario whose launches
    vary three times as much as the others' (nine times the variance) would be wrongly
    selected in up to 8% of the simulated studies; with it, at most 5%
    (tests/unit/test_decisions.py)."""
    c = comparison
    if c.basis != "launch pairs" or c.launch_pairs < c.min_launches or not math.isfinite(c.log_ratio):
        return 1.0
    if pooled is None:
        return c.tost_p_low if math.isfinite(c.tost_p_low) else 1.0
    se = math.sqrt(clearance_variance(c, pooled) / c.launch_pairs)
    return _t_cdf(pooled.df, -_t_stat(c.log_ratio + c.log_margin, se))


@dataclass(frozen=True)
class Rival:
    """Another scenario against the selected best: ``comparison`` is rival (a) against
    best (b), its verdict Holm-corrected over the selection's family; ``cleared`` says the
    rival is not faster than the best beyond the margin (one-sided, with the launch
    variance ``pooled`` for it by :func:`clearance_pool`, Bonferroni over the family:
    ``cleared_p_value`` is that p-value times the number of rivals, capped at 1)."""

    comparison: PairedComparison
    cleared: bool
    cleared_p_value: float
    #: the launch variance the clearance pooled (:func:`clearance_pool`; None: none yet)
    pooled: PooledVariance | None = None

    @property
    def name(self) -> str:
        return self.comparison.a

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.name, "cleared": self.cleared,
                "cleared_p_value": _finite(self.cleared_p_value),
                "pooled": self.pooled.to_json() if self.pooled else None,
                "comparison": self.comparison.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Rival":
        pooled = data.get("pooled")
        return cls(PairedComparison.from_json(data["comparison"]), bool(data["cleared"]),
                   _float(data["cleared_p_value"]), PooledVariance.from_json(pooled) if pooled else None)


@dataclass(frozen=True)
class Selection:
    """The answer to "pick X: every other scenario is slower than X, or within the margin of
    X" (see :func:`select_best`)."""

    best: str | None
    scenarios: tuple[str, ...]
    rivals: tuple[Rival, ...]
    margin: float
    alpha: float

    @property
    def decided(self) -> bool:
        return self.best is not None and all(r.cleared for r in self.rivals)

    @property
    def undecided_pairs(self) -> tuple[tuple[str, str], ...]:
        """(best, rival) for every rival not yet cleared."""
        return tuple((self.best, r.name) for r in self.rivals if not r.cleared)  # type: ignore[misc]

    @property
    def guaranteed_pcs(self) -> float | None:
        """The probability of a correct selection the procedure guarantees: 1 - alpha once
        decided, None before."""
        return 1 - self.alpha if self.decided else None

    @property
    def attained_pcs(self) -> float:
        """The confidence at which the selection could be declared on the data so far:
        1 - the largest cleared_p_value (0 when nothing is selected)."""
        if self.best is None:
            return 0.0
        return 1 - max((r.cleared_p_value for r in self.rivals), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"schema": 1, "best": self.best, "scenarios": list(self.scenarios),
                "decided": self.decided, "undecided_pairs": [list(p) for p in self.undecided_pairs],
                "guaranteed_pcs": self.guaranteed_pcs, "attained_pcs": self.attained_pcs,
                "margin": self.margin, "alpha": self.alpha,
                "rivals": [r.to_json() for r in self.rivals]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Selection":
        if data.get("schema") != 1:
            raise ValueError(f"unsupported selection schema {data.get('schema')!r} (expected 1)")
        return cls(data.get("best"), tuple(data["scenarios"]),
                   tuple(Rival.from_json(r) for r in data["rivals"]), float(data["margin"]),
                   float(data["alpha"]))


def _pair_comparisons(rounds: Sequence[Round], names: Sequence[str], **options: Any
                      ) -> dict[tuple[str, str], PairedComparison]:
    """Every ordered pair of ``names``, each unordered pair compared once."""
    out: dict[tuple[str, str], PairedComparison] = {}
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            comparison = compare_rounds(rounds, x, y, **options)
            out[(x, y)], out[(y, x)] = comparison, comparison.flipped()
    return out


def _current_best(names: Sequence[str], pairs: dict[tuple[str, str], PairedComparison]) -> str | None:
    """The scenario with the lowest mean log-ratio against the others that no scenario has
    been found slower than (beyond the margin; all of them while none has): racing stops
    measuring those after a few launch epochs, so their ratios come from other launches
    than the survivors' and would decide between survivors that were measured together. None
    when nothing was compared."""
    dominated = {y for y in names if any(pairs[(y, x)].verdict is Verdict.SLOWER for x in names if x != y)}
    pool = [n for n in names if n not in dominated]
    if len(pool) == 1:
        return pool[0]
    for among in (pool, list(names)):
        scores = []
        for x in among:
            logs = [pairs[(x, y)].log_ratio for y in among if y != x and math.isfinite(pairs[(x, y)].log_ratio)]
            scores.append(float(np.mean(logs)) if logs else math.inf)
        if any(math.isfinite(v) for v in scores):
            return among[int(np.argmin(scores))]
    return None


def select_best(rounds: Sequence[Round], scenarios: Sequence[str], *,
                margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA,
                min_launches: int = MIN_LAUNCHES) -> Selection:
    """Ranking and selection with an indifference zone, from interleaved blocks.

    The current best X is the scenario with the lowest mean log-ratio against the others
    (over the pairs measured together; ties go to the earlier in ``scenarios``), among and
    against those that no scenario was found slower than beyond the margin
    (:func:`_current_best`). X is
    *correct* when it is within the margin of the truly fastest scenario: mu_X <= (1+m)
    mu_best. The selection is *decided* when every rival Y is cleared: the one-sided test
    against "Y is faster than X beyond the margin" (Y/X <= 1/(1+m)) rejects at level
    alpha / (k-1) with >= ``min_launches`` launch pairs (k scenarios, k-1 rivals). A rival
    that is slower than X, equivalent to X, or a little faster but within the margin, can
    all be cleared, so the question can always be decided with enough blocks, even for two
    scenarios that differ by about the margin.

    Guarantee: P(a decided selection is correct) >= 1 - alpha. Why: let B be the truly
    fastest scenario (fixed, unknown). The k-1 one-sided bounds of log(mu_Y / mu_B), Y != B,
    each at level alpha/(k-1), all hold with probability >= 1 - alpha (Bonferroni). If they
    hold and the procedure declares X != B decided, X's clearance of B says the bound of
    log(mu_X / mu_B) is below log(1+m), so X is correct. This holds however X was chosen
    from the data, which is why the clearance uses Bonferroni and not Holm (with Holm, the
    last test of a data-chosen X would face alpha itself). The clearances' standard
    errors use the launch variance pooled over the pairs of the scenarios, leaving out any
    scenario much noisier than the pair's two (:func:`clearance_pool`). Assumptions: the
    launch pairs are independent with approximately normal mean log-ratios (the t test),
    of one variance for the scenarios pooled (the simulated studies measure what unequal
    ones cost); the quantity
    compared is the expected log-ratio over launches on this host; one look at the data.
    Racing looks again after each launch epoch and does not correct for it: the simulated
    studies in tests/unit/test_decisions.py measure what that costs.

    Each rival also gets a verdict (faster/slower/equivalent/undecided) against X, Holm-
    corrected over the k-1 rivals: these are the claims a report makes about the ranking.
    """
    names = list(dict.fromkeys(scenarios))
    if not names:
        return Selection(None, (), (), margin, alpha)
    options = dict(margin=margin, alpha=alpha, min_launches=min_launches)
    if len(names) == 1:
        return Selection(names[0], tuple(names), (), margin, alpha)
    pairs = _pair_comparisons(rounds, names, **options)
    best = _current_best(names, pairs)
    if best is None:
        return Selection(None, tuple(names), (), margin, alpha)
    versus = [pairs[(y, best)] for y in names if y != best]
    decided = decide_family(versus)
    every_pair = [pairs[(x, y)] for i, x in enumerate(names) for y in names[i + 1:]]
    k_rivals = len(versus)
    rivals = []
    for comparison in decided:
        pooled = clearance_pool(every_pair, comparison.a, comparison.b)
        p_adj = min(1.0, clearance_p_value(comparison, pooled) * k_rivals)
        rivals.append(Rival(comparison, p_adj < alpha, p_adj, pooled))
    return Selection(best, tuple(names), tuple(rivals), margin, alpha)


# -- racing: what the next launch epoch measures -----------------------------------------

@dataclass(frozen=True)
class EpochPlan:
    """What the sweep does next, from what is stored (see :func:`plan_epoch`)."""

    active: tuple[str, ...]  # scenarios to launch in the next epoch (empty when done)
    dropped: tuple[tuple[str, str], ...]  # (scenario, why it is not needed now)
    blocks_per_launch: int
    selection: Selection
    claims: tuple[PairedComparison, ...]  # the claim pairs, Holm-corrected together
    pending: tuple[tuple[str, str], ...]  # needed pairs not yet decided
    outlooks: tuple[PairOutlook, ...]  # one per pending pair
    epochs_done: int  # launch epochs so far (the most launches of any scenario)

    @property
    def done(self) -> bool:
        """Every needed decision is made."""
        return not self.pending

    def to_json(self) -> dict[str, Any]:
        return {"schema": 1, "done": self.done, "active": list(self.active),
                "dropped": [list(d) for d in self.dropped],
                "blocks_per_launch": self.blocks_per_launch,
                "selection": self.selection.to_json(),
                "claims": [c.to_json() for c in self.claims],
                "pending": [list(p) for p in self.pending],
                "outlooks": [o.to_json() for o in self.outlooks], "epochs_done": self.epochs_done}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EpochPlan":
        if data.get("schema") != 1:
            raise ValueError(f"unsupported epoch plan schema {data.get('schema')!r} (expected 1)")
        return cls(tuple(data["active"]), tuple(tuple(d) for d in data["dropped"]),  # type: ignore[misc]
                   int(data["blocks_per_launch"]), Selection.from_json(data["selection"]),
                   tuple(PairedComparison.from_json(c) for c in data["claims"]),
                   tuple(tuple(p) for p in data["pending"]),  # type: ignore[misc]
                   tuple(PairOutlook.from_json(o) for o in data["outlooks"]),
                   int(data["epochs_done"]))


def _cost(costs: float | Mapping[str, float] | None, names: Sequence[str]) -> float | None:
    if costs is None:
        return None
    if isinstance(costs, Mapping):
        if any(n not in costs for n in names):
            return None
        return float(sum(costs[n] for n in names))
    return float(costs) * len(names)


def plan_epoch(rounds: Sequence[Round], scenarios: Sequence[str],
               claims: Sequence[tuple[str, str]] = (), *, margin: float = DEFAULT_MARGIN,
               alpha: float = DEFAULT_ALPHA, min_launches: int = MIN_LAUNCHES,
               launch_s: float | Mapping[str, float] | None = None,
               round_s: float | Mapping[str, float] | None = None,
               min_blocks: int = MIN_BLOCKS, max_blocks: int = MAX_BLOCKS,
               epochs_left: int | None = None, family_size: int | None = None) -> EpochPlan:
    """The racing controller: from the rounds stored so far, what the next launch epoch
    measures. A pure function of its arguments, so a resumed sweep plans what it would have.

    Needed decisions: the selection of the best among ``scenarios`` (every rival cleared,
    :func:`select_best`) and each claim pair (a, b) in ``claims`` decided (faster, slower or
    equivalent; the claims are Holm-corrected together as one family). A scenario is active
    in the next epoch when a pending decision involves it: the current best and its
    uncleared rivals while the selection is open, and both sides of every undecided claim.
    So a rival decided slower than the best beyond the margin (or otherwise cleared) drops
    out, unless a pending claim needs it; should the best change later, rivals it has not
    cleared come back. Before ``min_launches`` epochs nothing can be decided and everything
    runs.

    Blocks per launch: from the pending comparisons' variance components (between launch
    pairs and within one), and the cost of an epoch (the active scenarios' ``launch_s`` and
    ``round_s``, seconds; a number is per scenario), :func:`blocks_per_launch`; with no
    costs or no variance estimate yet, ``min_blocks``. Each pending pair gets an outlook:
    how many more epochs would decide it at that many blocks.

    ``epochs_left`` (what the budget still allows): from ``min_launches`` epochs on, a claim
    whose outlook is out of reach or needs more epochs than that is given up -- it stays
    pending and undecided, but no longer keeps its scenarios running, so the epochs left go
    to the decisions they can still make. The selection is never given up.

    ``family_size``: the claims the report will decide together with these (Holm,
    :func:`decide_family`); by default just these.
    """
    names = list(dict.fromkeys(scenarios))
    options = dict(margin=margin, alpha=alpha, min_launches=min_launches)
    selection = select_best(rounds, names, **options)
    claim_pairs = list(dict.fromkeys((a, b) for a, b in claims))
    claim_results = tuple(decide_family([compare_rounds(rounds, a, b, **options)
                                         for a, b in claim_pairs], family_size))
    family = max(len(claim_results), family_size or 0)
    pending_claims = [c for c in claim_results if not c.verdict.decided]
    uncleared = [r for r in selection.rivals if not r.cleared]
    pending: list[tuple[str, str]] = [(r.comparison.b, r.name) for r in uncleared]
    if selection.best is None and len(names) >= 2:  # nothing measured yet
        pending += [(names[0], y) for y in names[1:]]
    pending += [(c.a, c.b) for c in pending_claims]
    needed = {s for pair in pending for s in pair}
    if selection.best is None and len(names) >= 2:
        needed |= set(names)
    everyone = list(dict.fromkeys(names + [s for pair in claim_pairs for s in pair]))
    active = tuple(s for s in everyone if s in needed)
    cleared = {r.name: r for r in selection.rivals if r.cleared}
    dropped = []
    for s in everyone:
        if s in needed:
            continue
        if s in cleared:
            why = cleared[s].comparison.verdict.value
            dropped.append((s, f"{why} against {selection.best}" if why != "undecided"
                            else f"not faster than {selection.best} beyond the margin"))
        elif s == selection.best:
            dropped.append((s, "selected; no pending decision needs it"))
        else:
            dropped.append((s, "no pending decision needs it"))

    launches: dict[str, set[str]] = {}
    for r in rounds:
        launches.setdefault(r.scenario, set()).add(r.launch)
    epochs_done = max((len(v) for v in launches.values()), default=0)

    pending_comparisons = [r.comparison for r in uncleared] + pending_claims
    known = [c for c in pending_comparisons if c.basis == "launch pairs"
             and math.isfinite(c.between_var) and math.isfinite(c.within_var)]
    total_launch, total_round = _cost(launch_s, active), _cost(round_s, active)
    if known and total_launch is not None and total_round:
        blocks = blocks_per_launch(float(np.mean([c.between_var for c in known])),
                                   float(np.mean([c.within_var for c in known])),
                                   total_launch, total_round, min_blocks, max_blocks)
    else:
        blocks = min_blocks
    k_rivals = max(1, len(selection.rivals))
    outlooks = [outlook(r.comparison, blocks_per_launch=blocks, level=alpha / k_rivals,
                        test="clearance", pooled=r.pooled) for r in uncleared]
    claim_outlooks = [outlook(c, blocks_per_launch=blocks, level=alpha / max(1, family))
                      for c in pending_claims]
    outlooks += claim_outlooks
    if epochs_left and epochs_done >= min_launches:  # none left: the budget stops the group anyway
        beyond = {(o.a, o.b) for o in claim_outlooks if o.basis != "minimum"
                  and (o.more_epochs is None or o.more_epochs > epochs_left)}
        if beyond:
            still = {s for pair in pending if pair not in beyond for s in pair}
            for s in active:
                if s not in still:
                    dropped.append((s, f"{GIVEN_UP} in the {epochs_left} epoch(s) left"))
            active = tuple(s for s in active if s in still)
    return EpochPlan(active, tuple(dropped), blocks, selection, claim_results,
                     tuple(pending), tuple(outlooks), epochs_done)
