"""Capacity under a latency SLO: the highest Server arrival rate a deployment sustains.

A *probe* is one LoadGen Server round in a warm session, at one target QPS; it **passes**
when both hold:

- LoadGen calls the run VALID, judged against the SLO itself (the job sets LoadGen's
  ``server_target_latency_ns`` and percentile to the SLO's, so its early-stopping rule
  applies: at p99 a run needs at least 459 requests all within the bound, see
  :func:`loadgen_min_requests`);
- the chosen percentile of the per-request latency *including the wait in the queue*
  (``stats.request_e2e_ms`` under Server) is within the SLO.

The search (:func:`search`) works as LoadGen's FindPeakPerformance does: from a lower bound
it widens the rate exponentially (doubling) until a probe fails, then bisects between the
last pass and the first failure until they are within ``precision`` of each other. Unlike
LoadGen it also finds its own start (half the throughput of an Offline warm-up round) and
narrows (halves) when even that fails. Then it repeats on *another launch*: the largest rate
that passed and the smallest that failed are probed again in a fresh session (warmed by an
Offline round and then a Server round at the largest rate that passed, so that no probe is
a launch's first Server round: that one runs slower than the next ones); a bracket
that does not hold is searched again on that launch and repeated on the next one, up to
``max_launches``.

Every probe is stored as a run whose scenario carries its ``target_qps`` (so probes at
different rates never pool), with ``host["capacity_probe"]`` saying which search it belongs
to, its SLO and its verdict. :func:`answer` turns probes into the answer and its confidence
statement, the same way for the search as it runs and for the report reading the store:

- ``capacity_qps`` (lo): the largest rate that passed on every launch it was probed on,
  below every rate that ever failed;
- ``first_failure_qps`` (u): the smallest rate that ever failed (the bisection's upper end);
- ``failing_qps`` (hi): the smallest rate that failed on every launch it was probed on;
- ``confirmed``: lo passed on at least two launches and hi failed on at least two;
- ``flaky``: rates that passed on one launch and failed on another (between lo and hi).

Under TCG emulation the search works the same and its answer is flagged ``emulated``: a
function check, never a capacity of real hardware.
"""
from __future__ import annotations

import dataclasses
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .datasets.cache import home
from .execute import Contender, RoundMeasurer, Slot, launch, launch_failure_record, loadgen_reason
from .host import host_facts
from .planning import format_duration
from .platforms.ledger import Ledger
from .scenario import LoadgenScenario, Scenario, ScenarioError
from .stats import percentiles, request_e2e_ms

PROBE_SCHEMA = 1
ANSWER_SCHEMA = 1
#: LoadGen's early-stopping confidence (its default, ``early_stopping_confidence``)
LOADGEN_CONFIDENCE = 0.99
DEFAULT_PRECISION = 0.05
DEFAULT_MAX_LAUNCHES = 3
#: widen at most this far above the start rate (doubling is cheap: probes get shorter)
SEARCH_SPAN = 64.0
#: narrow at most this far below it: at an eighth of the Offline throughput's half there is
#: hardly a queue left, so a failure there is the service time's own tail, not the rate
NARROW_SPAN = 8.0


def _binomial_cdf(k: int, n: int, q: float) -> float:
    return sum(math.comb(n, i) * q ** i * (1 - q) ** (n - i) for i in range(k + 1))


def loadgen_min_requests(percentile: float, over_latency: int = 0,
                         confidence: float = LOADGEN_CONFIDENCE) -> int:
    """The fewest requests with which LoadGen can call a Server run VALID at ``percentile``
    when ``over_latency`` of them exceed the bound. Its early-stopping rule asks that, were
    the true share of slow requests ``1 - p``, seeing that few would have a chance of at most
    ``1 - confidence``: ``P(Binomial(n, 1 - p) <= k) <= 0.01``. With none over: ``p ** n <=
    0.01``, 459 requests at p99, 44 at p90, 7 at p50 (as LoadGen itself reports)."""
    p = percentile / 100.0
    n = max(over_latency + 1, math.ceil(math.log(1.0 - confidence) / math.log(p)))
    while _binomial_cdf(over_latency, n, 1 - p) > 1 - confidence:
        n += 1
    return n


def default_requests(percentile: float) -> int:
    """Requests per probe: what LoadGen needs to call a run VALID with one slow request in it,
    so that a single hiccup does not fail a probe by itself (662 at p99, 64 at p90)."""
    return max(16, loadgen_min_requests(percentile, over_latency=1))


def round_rate(rate: float) -> float:
    """Rates to 3 significant digits: probe identities stay readable (87.3, 0.512)."""
    if rate <= 0:
        return rate
    digits = 2 - int(math.floor(math.log10(rate)))
    return round(rate, digits)


@dataclass(frozen=True)
class Criteria:
    """The SLO a probe must meet: ``percentile`` of latency (queue included) <= ``slo_ms``."""

    slo_ms: float = 100.0
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if not self.slo_ms > 0:
            raise ScenarioError(f"the SLO must be > 0 ms, got {self.slo_ms:g}")
        if not 0 < self.percentile < 100:
            raise ScenarioError(f"the percentile must be between 0 and 100 (e.g. 99), got {self.percentile:g}")

    @property
    def describe(self) -> str:
        return f"p{self.percentile:g} <= {self.slo_ms:g} ms"

    def check_requests(self, requests: int) -> None:
        """Refuse a probe size with which LoadGen can never call the run VALID."""
        needed = loadgen_min_requests(self.percentile)
        if requests < needed:
            raise ScenarioError(
                f"--requests {requests} can never make LoadGen's Server run VALID at "
                f"p{self.percentile:g}: its early-stopping rule needs at least {needed} requests all "
                f"within the SLO; use --requests {default_requests(self.percentile)} (the default) "
                "or a lower --percentile")

    def to_json(self) -> dict[str, Any]:
        return {"slo_ms": self.slo_ms, "percentile": self.percentile}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Criteria":
        return cls(float(data["slo_ms"]), float(data["percentile"]))


# -- one probe ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    passed: bool
    loadgen_valid: bool
    latency_ms: float | None  # the chosen percentile, queue included
    reason: str  # why it failed ("" when it passed)


def judge(record: Any, criteria: Criteria) -> Verdict:
    """Whether a stored probe (a RunRecord) met the SLO, and if not why."""

    if record.status != "ok" or not record.samples.get("preprocess_ns"):
        return Verdict(False, False, None, f"the round {record.status}: {record.error or 'no samples'}")
    e2e = request_e2e_ms(record.samples, LoadgenScenario.SERVER.value)
    latency = float(percentiles(e2e, (criteria.percentile,))[criteria.percentile])
    valid = record.loadgen.get("validity") == "VALID"
    reasons = []
    if not valid:
        reasons.append(f"LoadGen {record.loadgen.get('validity') or 'gave no verdict'}"
                       + (f" ({why})" if (why := loadgen_reason(record.loadgen)) else ""))
    if latency > criteria.slo_ms:
        reasons.append(f"p{criteria.percentile:g} {latency:.1f} ms > {criteria.slo_ms:g} ms")
    return Verdict(valid and latency <= criteria.slo_ms, valid, latency, "; ".join(reasons))


@dataclass(frozen=True)
class Probe:
    """One probe as the answer reads it (from a stored run)."""

    rate_qps: float
    launch: int  # 0-based launch of the search
    passed: bool
    latency_ms: float | None
    loadgen_valid: bool
    reason: str
    step: str  # start | widen | narrow | bisect | repeat
    run_id: str = ""
    achieved_qps: float | None = None  # requests / run time

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Probe":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def probe_facts(search_id: str, criteria: Criteria, launch: int, step: str, verdict: Verdict,
                base: Scenario) -> dict[str, Any]:
    """What a probe's record keeps in ``host["capacity_probe"]``."""
    return {"schema": PROBE_SCHEMA, "search_id": search_id, "base_key": base.key,
            **criteria.to_json(), "launch": launch, "step": step, "passed": verdict.passed,
            "loadgen_valid": verdict.loadgen_valid, "latency_ms": verdict.latency_ms,
            "reason": verdict.reason}


def probe_of(record: Any) -> Probe | None:
    facts = record.host.get("capacity_probe")
    if not facts or facts.get("schema") != PROBE_SCHEMA or record.scenario.target_qps is None:
        return None
    run_s = record.timings.get("run_s")
    n = len(record.samples.get("preprocess_ns") or [])
    return Probe(record.scenario.target_qps, int(facts["launch"]), bool(facts["passed"]),
                 facts.get("latency_ms"), bool(facts.get("loadgen_valid")), facts.get("reason") or "",
                 facts.get("step") or "", record.run_id,
                 round(n / run_s, 3) if run_s and n else None)


# -- the answer --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RateRecord:
    rate_qps: float
    passed_launches: tuple[int, ...]
    failed_launches: tuple[int, ...]

    @property
    def launches(self) -> int:
        return len(set(self.passed_launches) | set(self.failed_launches))

    @property
    def always_passed(self) -> bool:
        return bool(self.passed_launches) and not self.failed_launches

    @property
    def always_failed(self) -> bool:
        return bool(self.failed_launches) and not self.passed_launches

    @property
    def mixed(self) -> bool:
        return bool(self.passed_launches) and bool(self.failed_launches)


def rate_records(probes: Sequence[Probe]) -> dict[float, RateRecord]:
    passed: dict[float, set[int]] = {}
    failed: dict[float, set[int]] = {}
    for p in probes:
        (passed if p.passed else failed).setdefault(p.rate_qps, set()).add(p.launch)
        passed.setdefault(p.rate_qps, set())
        failed.setdefault(p.rate_qps, set())
    return {r: RateRecord(r, tuple(sorted(passed[r])), tuple(sorted(failed[r]))) for r in sorted(passed)}


@dataclass(frozen=True)
class CapacityAnswer:
    """A search's answer and how sure it is (see the module docstring)."""

    label: str  # the deployment and workload, e.g. "BM/1/PIN/CPU · ic (tiny, torch, Server)"
    name: str  # PLATFORM/CORES/MODE/PROC
    app: str
    cores: int
    base_key: str  # the scenario without a rate
    criteria: Criteria
    requests: int
    search_id: str
    capacity_qps: float | None
    capacity_latency_ms: float | None  # the percentile at the capacity (its last probe)
    capacity_launches: int
    first_failure_qps: float | None
    failing_qps: float | None
    failing_launches: int
    flaky_qps: tuple[float, ...]
    passes_above_failure: tuple[float, ...]  # passes above a failed rate: not monotone
    confirmed: bool
    emulated: bool
    host: str = ""
    stop: str = ""  # why the search ended (confirmed, budget, max_launches, ...)
    probes: tuple[Probe, ...] = ()
    #: the largest rate below every failure that passed on two launches or more (None: none)
    repeated_pass_qps: float | None = None

    @property
    def capacity_per_core(self) -> float | None:
        return None if self.capacity_qps is None else self.capacity_qps / self.cores

    @property
    def status(self) -> str:
        if self.capacity_qps is None:
            return "no capacity" if self.probes else "not measured"
        return "confirmed" if self.confirmed else "unconfirmed"

    def statement(self) -> str:
        """The confidence statement, for people."""
        c = self.criteria.describe
        if self.capacity_qps is None:
            if not self.probes:
                return f"no probe ran ({self.stop or 'nothing measured'})"
            lowest = min(p.rate_qps for p in self.probes)
            return (f"no rate met {c}: even {lowest:g} qps failed "
                    f"({next((p.reason for p in self.probes if p.rate_qps == lowest), '')})")
        text = (f"{self.capacity_qps:g} qps meets {c} (passed on {self.capacity_launches} launch"
                f"{'es' if self.capacity_launches != 1 else ''})")
        if self.failing_qps is not None:
            text += (f"; {self.failing_qps:g} qps fails (on {self.failing_launches} launch"
                     f"{'es' if self.failing_launches != 1 else ''})")
        else:
            text += "; no failing rate found above it"
        if self.flaky_qps:
            text += f"; {', '.join(f'{r:g}' for r in self.flaky_qps)} qps passed on one launch and failed on another"
        if self.passes_above_failure:
            text += (f"; {', '.join(f'{r:g}' for r in self.passes_above_failure)} qps passed although a "
                     "lower rate failed (not monotone: noise)")
        if not self.confirmed:
            text += f" -- unconfirmed ({self.stop or 'not repeated on another launch'})"
            if self.repeated_pass_qps is not None and self.repeated_pass_qps != self.capacity_qps:
                text += f"; the largest rate that passed on two launches: {self.repeated_pass_qps:g} qps"
        if self.emulated:
            text += " [emulated (TCG): a function check, not real hardware's capacity]"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"schema": ANSWER_SCHEMA, "label": self.label, "scenario": self.name, "app": self.app,
                "cores": self.cores, "base_key": self.base_key, **self.criteria.to_json(),
                "requests": self.requests, "search_id": self.search_id, "status": self.status,
                "capacity_qps": self.capacity_qps, "capacity_per_core_qps": self.capacity_per_core,
                "capacity_latency_ms": self.capacity_latency_ms, "capacity_launches": self.capacity_launches,
                "first_failure_qps": self.first_failure_qps, "failing_qps": self.failing_qps,
                "failing_launches": self.failing_launches, "flaky_qps": list(self.flaky_qps),
                "passes_above_failure": list(self.passes_above_failure), "confirmed": self.confirmed,
                "emulated": self.emulated, "host": self.host, "stop": self.stop,
                "repeated_pass_qps": self.repeated_pass_qps,
                "statement": self.statement(), "probes": [p.to_json() for p in self.probes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CapacityAnswer":
        if data.get("schema") != ANSWER_SCHEMA:
            raise ValueError(f"capacity answer schema {data.get('schema')!r} is not {ANSWER_SCHEMA}")
        return cls(label=data["label"], name=data["scenario"], app=data["app"], cores=int(data["cores"]),
                   base_key=data["base_key"], criteria=Criteria.from_json(data),
                   requests=int(data["requests"]), search_id=data["search_id"],
                   capacity_qps=data.get("capacity_qps"), capacity_latency_ms=data.get("capacity_latency_ms"),
                   capacity_launches=int(data.get("capacity_launches") or 0),
                   first_failure_qps=data.get("first_failure_qps"), failing_qps=data.get("failing_qps"),
                   failing_launches=int(data.get("failing_launches") or 0),
                   flaky_qps=tuple(data.get("flaky_qps") or ()),
                   passes_above_failure=tuple(data.get("passes_above_failure") or ()),
                   confirmed=bool(data.get("confirmed")), emulated=bool(data.get("emulated")),
                   host=data.get("host", ""), stop=data.get("stop", ""),
                   probes=tuple(Probe.from_json(p) for p in data.get("probes") or ()),
                   repeated_pass_qps=data.get("repeated_pass_qps"))


def answer(probes: Sequence[Probe], *, base: Scenario, criteria: Criteria, search_id: str = "",
           emulated: bool = False, host: str = "", stop: str = "") -> CapacityAnswer:
    """The answer the probes give (the rule of the module docstring)."""
    rates = rate_records(probes)
    failures = [r for r, rec in rates.items() if rec.failed_launches]
    first_failure = min(failures) if failures else None
    passing = [r for r, rec in rates.items() if rec.always_passed
               and (first_failure is None or r < first_failure)]
    lo = max(passing) if passing else None
    always_failing = [r for r, rec in rates.items() if rec.always_failed and (lo is None or r > lo)]
    repeated = [r for r in always_failing if rates[r].launches >= 2]
    # the smallest rate that failed every time, preferring one repeated on another launch
    hi = min(repeated) if repeated else min(always_failing) if always_failing else None
    flaky = tuple(r for r, rec in rates.items() if rec.mixed)
    above = tuple(r for r, rec in rates.items() if rec.always_passed and first_failure is not None
                  and r > first_failure)
    lo_latency = None
    if lo is not None:
        lo_latency = [p.latency_ms for p in probes if p.rate_qps == lo][-1]
    confirmed = (lo is not None and hi is not None and rates[lo].launches >= 2
                 and rates[hi].launches >= 2)
    repeated_passes = [r for r in passing if rates[r].launches >= 2]
    return CapacityAnswer(
        label=base.label, name=base.name, app=base.app, cores=base.cores, base_key=base.key,
        criteria=criteria, requests=base.requests, search_id=search_id, capacity_qps=lo,
        capacity_latency_ms=lo_latency, capacity_launches=rates[lo].launches if lo is not None else 0,
        first_failure_qps=first_failure, failing_qps=hi,
        failing_launches=rates[hi].launches if hi is not None else 0, flaky_qps=flaky,
        passes_above_failure=above, confirmed=confirmed, emulated=emulated, host=host, stop=stop,
        probes=tuple(probes), repeated_pass_qps=max(repeated_passes) if repeated_passes else None)


def next_rate(a: CapacityAnswer, launch: int, start_qps: float, precision: float) -> tuple[float, str] | None:
    """The next rate to probe on launch ``launch`` and why; None when this launch is done.

    The first launch brackets and bisects (LoadGen's FindPeakPerformance): start, then
    ``widen`` (double) until a failure or ``narrow`` (halve) until a pass, then ``bisect``
    until the bracket is within ``precision``. A later launch ``repeat``s the bracket's two
    ends; an end that does not hold there is moved *outward* (``step down`` below a rate
    that failed, ``step up`` above one that passed, by twice the precision, doubling each
    time) rather than bisected again: near the capacity a probe's verdict is a coin toss
    (its tail latency depends on a few requests), and a bracket that is to hold on the next
    launch too must span that zone, not sit in it."""
    if not a.probes:
        return round_rate(start_qps), "start"
    probed = {p.rate_qps for p in a.probes}
    floor, ceiling = start_qps / NARROW_SPAN, start_qps * SEARCH_SPAN
    if launch == 0:
        if a.capacity_qps is None:  # nothing passed yet: halve below the lowest rate tried
            rate = round_rate(min(probed) / 2)
            return None if rate < floor or rate in probed else (rate, "narrow")
        if a.first_failure_qps is None:  # nothing failed yet: double, as LoadGen widens
            rate = round_rate(a.capacity_qps * 2)
            return None if rate > ceiling or rate in probed else (rate, "widen")
        lo, up = a.capacity_qps, a.first_failure_qps
        if (up - lo) / lo <= precision:
            return None
        mid = round_rate((lo + up) / 2)
        return None if mid in (lo, up) or mid in probed else (mid, "bisect")
    here = [p for p in a.probes if p.launch == launch]
    here_rates = {p.rate_qps for p in here}
    rates = rate_records(a.probes)
    lo, hi = a.capacity_qps, a.failing_qps
    if (lo is None or rates[lo].launches < 2) and (lo is None or lo not in here_rates):
        failed_here = [p.rate_qps for p in here if not p.passed]
        if not failed_here:
            if lo is not None:
                return lo, "repeat"
        else:  # the lower end failed here: the next lower pass, or a step below the failure
            steps = sum(1 for p in here if p.step == "step down")
            target = round_rate(min(failed_here) * max(0.0, 1 - 2 * precision * 2 ** steps))
            if lo is not None and lo >= target:
                return lo, "repeat"
            if target >= floor and target not in here_rates:
                return target, "step down"
    if (hi is None or rates[hi].launches < 2) and (hi is None or hi not in here_rates):
        passed_here = [p.rate_qps for p in here if p.passed and (a.first_failure_qps is None
                                                                  or p.rate_qps >= a.first_failure_qps)]
        if not passed_here:
            if hi is not None:
                return hi, "repeat"
        else:  # the upper end passed here: the next higher failure, or a step above the pass
            steps = sum(1 for p in here if p.step == "step up")
            target = round_rate(max(passed_here) * (1 + 2 * precision * 2 ** steps))
            if hi is not None and hi <= target:
                return hi, "repeat"
            if target <= ceiling and target not in here_rates:
                return target, "step up"
    return None


def probe_line(base: Scenario, probe: Probe, criteria: Criteria, took_s: float) -> str:
    """A probe's line for people (the progress of a search)."""
    latency = "-" if probe.latency_ms is None else f"{probe.latency_ms:.1f} ms"
    verdict = "pass" if probe.passed else "FAIL"
    why = f": {probe.reason}" if probe.reason else ", LoadGen VALID"
    return (f"  probe {base.name} @{probe.rate_qps:g} qps (launch {probe.launch + 1}, {probe.step}, "
            f"{took_s:.1f} s) {verdict} p{criteria.percentile:g} {latency}{why}")


# -- the search --------------------------------------------------------------------------------
@dataclass
class SearchSettings:
    criteria: Criteria
    requests: int
    budget_s: float | None = None
    precision: float = DEFAULT_PRECISION
    max_launches: int = DEFAULT_MAX_LAUNCHES
    start_qps: float | None = None  # default: half the Offline warm-up's throughput
    warmup_requests: int | None = None  # default: a quarter of requests, 8 to 64


def base_scenario(scenario: Scenario, requests: int) -> Scenario:
    """The deployment and workload under search: Server, no rate, ``requests`` per probe."""
    return scenario.with_(loadgen_scenario=LoadgenScenario.SERVER, target_qps=None, requests=requests)


def search(contender: Any, settings: SearchSettings, *, sink: Callable[[Any], None],
           study: str | None = None, ledger: Any = None, runs_root: Path | None = None,
           on_record: Callable[[Any], None] | None = None,
           on_note: Callable[[str], None] | None = None,
           clock: Callable[[], float] = time.monotonic) -> CapacityAnswer:
    """Find ``contender``'s capacity (see the module docstring). Each round's record goes to
    ``sink`` as soon as it exists (probes carry ``host["capacity_probe"]``), then to
    ``on_record``. KeyboardInterrupt is raised after the interrupted round is stored and
    the session closed."""

    ledger = ledger or Ledger()
    runs_root = runs_root or home() / "runs"
    criteria = settings.criteria
    base = base_scenario(contender.scenario, settings.requests)
    run_settings = dataclasses.replace(contender.settings, server_target_latency_ms=criteria.slo_ms,
                                       server_latency_percentile=criteria.percentile)
    base_contender = Contender(base, contender.platform, contender.data_dir, run_settings)
    emulated = contender.platform.emulated(host_facts())
    host = host_facts().hostname
    search_id = uuid.uuid4().hex
    measure = RoundMeasurer(study, ledger)
    probes: list[Probe] = []
    began = clock()
    note = on_note or (lambda text: None)
    warm_n = settings.warmup_requests or max(8, min(64, settings.requests // 4))
    start_qps = settings.start_qps
    throughput: float | None = None
    launch_s: float | None = None
    stop = ""
    probed = 0  # probes so far (their slots' numbers)

    def current(stop_text: str = "") -> CapacityAnswer:
        return answer(probes, base=base, criteria=criteria, search_id=search_id, emulated=emulated,
                      host=host, stop=stop_text)

    def left() -> float:
        return math.inf if settings.budget_s is None else settings.budget_s - (clock() - began)

    def keep(record: Any) -> None:
        sink(record)
        if on_record is not None:
            on_record(record)
        if record.status == "interrupted":
            raise KeyboardInterrupt

    def probe_cost(rate: float) -> float:
        served = min(rate, throughput) if throughput else rate
        return settings.requests / max(served, 1e-6) + 1.0

    for launch_index in range(settings.max_launches):
        if launch_index and left() < (launch_s or 0.0) + 2 * probe_cost(probes[-1].rate_qps if probes else 1.0):
            stop = "budget: no time left for another launch"
            break
        started = time.time()
        t_launch = clock()
        try:
            session = launch(base_contender, ledger=ledger, runs_root=runs_root)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed launch is a record, and the end of the search
            keep(launch_failure_record(base_contender, exc, study=study, epoch=launch_index, started=started))
            stop = f"launch failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            break
        try:
            launch_s = launch_s or (clock() - t_launch)
            warm = Contender(base.with_(loadgen_scenario=LoadgenScenario.OFFLINE, requests=warm_n),
                             contender.platform, contender.data_dir, run_settings)
            slot = Slot(launch_index, None, None, None, warmup_index=0,
                        key=f"cap-{search_id[:12]}-l{launch_index}w")
            record = measure(warm, session, slot, True)
            keep(record)
            if record.status not in ("ok", "warmup"):
                stop = f"the warm-up round {record.status}: {record.error}"
                break
            passed = [p.rate_qps for p in probes if p.passed]
            if passed:
                # a later launch repeats rates at the knee: its first probe must not be its first
                # Server round, which runs measurably slower than the next ones even after the
                # Offline round (on this host p99 676 against 195 ms at the same rate)
                serve_warm = Contender(base.with_(target_qps=max(passed), requests=max(warm_n, settings.requests // 4)),
                                       contender.platform, contender.data_dir, run_settings)
                slot = Slot(launch_index, None, None, None, warmup_index=1,
                            key=f"cap-{search_id[:12]}-l{launch_index}s")
                record = measure(serve_warm, session, slot, True)
                keep(record)
                if record.status not in ("ok", "warmup"):
                    stop = f"the warm-up round {record.status}: {record.error}"
                    break
            if throughput is None:
                throughput = record.summary.get("samples_per_s")
                if start_qps is None:
                    start_qps = (throughput or 2.0) / 2
                note(f"capacity {base.name}: Offline warm-up {throughput or 0:.3g} requests/s; "
                     f"starting at {round_rate(start_qps):g} qps ({criteria.describe}, "
                     f"{settings.requests} requests per probe)")
                service_ms = record.summary.get("e2e_mean_ms")  # Offline: no queue, the work itself
                if service_ms and settings.requests * service_ms < criteria.slo_ms:
                    # even if every request arrived at once, the last would wait less than the SLO
                    stop = (f"no rate can fail: a probe's whole work ({settings.requests} requests x "
                            f"{service_ms:.3g} ms = {settings.requests * service_ms:.3g} ms) is shorter than "
                            f"the SLO; use --requests {math.ceil(4 * criteria.slo_ms / service_ms)} or more, "
                            "or a tighter --slo-ms")
                    break
            while True:
                nxt = next_rate(current(), launch_index, start_qps, settings.precision)
                if nxt is None:
                    break
                rate, step = nxt
                if left() < probe_cost(rate):
                    stop = "budget: no time left for another probe"
                    break
                probed += 1
                scenario = base.with_(target_qps=rate)
                slot = Slot(launch_index, probed, None, None,
                            key=f"cap-{search_id[:12]}-l{launch_index}p{probed}")
                record = measure(Contender(scenario, contender.platform, contender.data_dir, run_settings),
                                 session, slot, False)
                verdict = judge(record, criteria)
                record.host["capacity_probe"] = probe_facts(search_id, criteria, launch_index, step,
                                                            verdict, base)
                keep(record)
                if record.status != "ok":
                    stop = f"a probe {record.status}: {record.error}"
                    break
                probes.append(Probe(rate, launch_index, verdict.passed, verdict.latency_ms,
                                    verdict.loadgen_valid, verdict.reason, step, record.run_id))
                note(probe_line(base, probes[-1], criteria, record.finished_at - record.started_at))
        finally:
            session.close()
        if stop:
            break
        a = current()
        if a.confirmed:
            stop = "confirmed"
            break
        if a.capacity_qps is None and launch_index == 0:
            stop = f"no rate met the SLO down to {min(p.rate_qps for p in probes):g} qps" if probes else \
                "nothing was probed"
            break
        if a.capacity_qps is not None and a.first_failure_qps is None and launch_index == 0:
            stop = f"every rate up to {a.capacity_qps:g} qps passed (no failure within the search's span)"
            break
    else:
        stop = stop or f"not confirmed in {settings.max_launches} launches"
    return current(stop)


# -- from the store ----------------------------------------------------------------------------
def searches(records: Sequence[Any]) -> list[CapacityAnswer]:
    """Every capacity search found in ``records`` (stored probes), latest first per
    scenario and SLO, with its answer recomputed from its probes."""
    by_search: dict[str, list[tuple[Any, Probe]]] = {}
    for record in records:
        probe = probe_of(record)
        if probe is not None:
            by_search.setdefault(record.host["capacity_probe"]["search_id"], []).append((record, probe))
    out = []
    for search_id, items in by_search.items():
        items.sort(key=lambda item: item[0].started_at)
        first = items[0][0]
        facts = first.host["capacity_probe"]
        base = base_scenario(first.scenario, first.scenario.requests)
        emulated = any(r.platform.get("accel") == "tcg" for r, _ in items)
        a = answer([p for _, p in items], base=base, criteria=Criteria.from_json(facts), search_id=search_id,
                   emulated=emulated, host=str(first.host.get("host", "")))
        out.append((max(r.finished_at for r, _ in items), a))
    out.sort(key=lambda item: -item[0])
    return [a for _, a in out]


def latest(answers: Sequence[CapacityAnswer]) -> list[CapacityAnswer]:
    """The most recent search of each scenario, SLO and host (``answers`` newest first)."""
    seen: set[tuple] = set()
    out = []
    for a in answers:
        key = (a.base_key, a.criteria, a.host, a.emulated)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def is_probe(record: Any) -> bool:
    """Whether a stored run is a capacity probe (a Server round at a rate a search chose):
    latency tables that compare scenarios at their own workload may want to leave them out."""
    return "capacity_probe" in record.host


# -- in a study ----------------------------------------------------------------------------------
CAPACITY_STOP = "capacity"


def run_study_capacity(study: Any, planned: Sequence[Any], store: Any, *, budget_s: float | None = None,
                       sink: Callable[[Any], None] | None = None,
                       on_record: Callable[[Any], None] | None = None,
                       on_note: Callable[[str], None] | None = None, ledger: Any = None,
                       runs_root: Path | None = None,
                       clock: Callable[[], float] = time.monotonic) -> list[CapacityAnswer]:
    """A study's ``[capacity]`` searches (``planning.plan_capacity``), one after the other
    after the sweep's groups. A search whose answer the store already holds for the same
    SLO (its stop, reason ``capacity``) is not run again: a resumed sweep does only what is
    missing. ``budget_s``: what is left of the sweep's ``--budget``, shared out."""
    note = on_note or (lambda text: None)
    done = {(s["scenario_key"], s["detail"].split("] ", 1)[0] + "]")
            for s in store.stops(study.name) if s["reason"] == CAPACITY_STOP}
    todo = [p for p in planned if p.skip_reason is None]
    for p in planned:
        if p.skip_reason is not None:
            note(f"capacity skip {p.scenario.label}: {p.skip_reason}")
    answers: list[CapacityAnswer] = []
    began = clock()
    for i, p in enumerate(todo):
        settings = study.capacity_search(p.scenario, p.emulated)
        tag = f"[{settings.criteria.describe}]"
        if (p.key, tag) in done:
            note(f"capacity {p.scenario.label}: searched before ({tag}), not again")
            continue
        if budget_s is not None:
            left = budget_s - (clock() - began)
            if left <= 0:
                note(f"capacity {p.scenario.label}: not searched, the sweep's --budget is spent")
                continue
            settings = dataclasses.replace(settings, budget_s=min(settings.budget_s or math.inf,
                                                                  left / (len(todo) - i)))
        a = search(p.contender(), settings, sink=sink or store.keep, study=study.name, ledger=ledger,
                   runs_root=runs_root, on_record=on_record, on_note=note, clock=clock)
        store.record_stop(study.name, p.scenario, CAPACITY_STOP, f"{tag} {a.statement()}", len(a.probes))
        answers.append(a)
    return answers


def capacity_plan_lines(study: Any, planned: Sequence[Any]) -> list[str]:
    """`sweep --plan` lines of the ``[capacity]`` searches (what runs after the groups)."""
    if not planned:
        return []

    c = study.model.capacity
    runnable = [p for p in planned if p.skip_reason is None]
    settings = [study.capacity_search(p.scenario, p.emulated) for p in runnable]
    total = sum(s.budget_s or 0.0 for s in settings)
    lines = [f"  capacity after the groups: {len(runnable)} search(es) of {len(planned)}, up to "
             f"{format_duration(total)} more (each search's budget), {c.max_launches} launches each, "
             f"bracket within {c.precision:.0%}"]
    for p, s in zip(runnable, settings):
        lines.append(f"    search {p.scenario.label}: {s.criteria.describe}, {s.requests} requests per probe, "
                     f"at most {format_duration(s.budget_s or 0.0)}"
                     + (" [emulated (TCG): a function check]" if p.emulated else ""))
    for p in planned:
        if p.skip_reason is not None:
            lines.append(f"    skip {p.scenario.label}: {p.skip_reason}")
    return lines
