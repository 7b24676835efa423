"""A fake platform whose rounds are a simulated single-server queue: Poisson arrivals at the
job's target QPS, a fixed service time per request (scaled per launch, to model a host whose
speed differs from launch to launch), and LoadGen's Server verdict from its early-stopping
rule. Offline rounds serve every request back to back. As in LoadGen, the arrival schedule
comes from a fixed seed, so a rate's verdict changes only with the launch's speed."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, ClassVar

from deploybench.capacity import _binomial_cdf
from deploybench.synthetic import simulate_queue as simulate
from deploybench.platforms.base import LaunchFacts, PlatformBase, RunOutcome, SessionSetup
from deploybench.scenario import Scenario
from deploybench.worker.job import WorkerJob, WorkerResult


class QueueSession:
    def __init__(self, platform: "QueuePlatform", setup: SessionSetup) -> None:
        self.platform = platform
        self.launch = platform.launches
        platform.launches += 1
        self.facts = LaunchFacts(setup.launch_id, "BM", "stdio", time.time(), time.time() + 0.001,
                                 details={"limits": {"cpus": [0], "quota_cores": None}})
        self.rounds = 0
        self.closed = False

    @property
    def alive(self) -> bool:
        return not self.closed

    def ready(self, timeout_s: float) -> None:
        pass

    def measure(self, job: WorkerJob, timeout_s: float) -> RunOutcome:
        self.rounds += 1
        self.platform.jobs.append(job)
        service = self.platform.service_s(self.launch)
        n = job.requests
        if job.loadgen_scenario == "Server":
            # LoadGen draws the arrivals from a fixed seed: the same schedule at a given rate
            delays = simulate(job.server_target_qps, n, service, seed=self.platform.schedule_seed)
        else:
            delays = [0.0] * n
        ns = int(service * 1e9)
        samples = {"sample_index": list(range(n)), "preprocess_ns": [ns] * n, "infer_ns": [0] * n,
                   "postprocess_ns": [0] * n, "batch": list(range(n)),
                   "queue_ns": [int(d * 1e9) for d in delays], "done_ns": [ns] * n,
                   "sample_id": [f"s{i}" for i in range(n)]}
        loadgen: dict[str, Any] = {}
        if job.loadgen_scenario == "Server":
            bound = (job.server_target_latency_ms or 100.0) / 1e3
            p = (job.server_latency_percentile or 99.0) / 100
            slow = sum(1 for d in delays if d + service > bound)
            valid = _binomial_cdf(slow, n, 1 - p) <= 0.01
            loadgen = {"validity": "VALID" if valid else "INVALID",
                       "early_stopping_met": valid, "early_stopping_result": "" if valid else "Run unsuccessful."}
        run_s = n / (job.server_target_qps if job.loadgen_scenario == "Server" else 1 / service)
        result = WorkerResult(status="ok", job=job.to_json(), samples=samples, loadgen=loadgen,
                              timings={"run_s": max(run_s, n * service)})
        return RunOutcome("ok", result, host_facts={**self.facts.to_json(), "launch_round": self.rounds})

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "QueueSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class QueuePlatform(PlatformBase):
    name: ClassVar[str] = "BM"

    def __init__(self, service_s: Callable[[int], float] = lambda launch: 0.01,
                 schedule_seed: int = 1) -> None:
        super().__init__()
        self.service_s = service_s
        self.schedule_seed = schedule_seed
        self.launches = 0
        self.jobs: list[WorkerJob] = []
        self.sessions: list[QueueSession] = []

    def unavailable_reason(self, host) -> str | None:
        return None

    def open(self, scenario: Scenario, setup: SessionSetup) -> QueueSession:
        session = QueueSession(self, setup)
        self.sessions.append(session)
        return session


def true_capacity(service_s: float, slo_s: float, n: int, pct: float = 99.0) -> float:
    """The highest rate (to 0.5%) at which the simulation itself passes, for checking."""
    lo, hi = 0.01 / service_s, 1 / service_s
    while (hi - lo) / lo > 0.005:
        mid = (lo + hi) / 2
        delays = sorted(d + service_s for d in simulate(mid, n, service_s, 1))
        q = delays[min(n - 1, math.ceil(pct / 100 * n) - 1)]
        lo, hi = (mid, hi) if q <= slo_s else (lo, mid)
    return lo
