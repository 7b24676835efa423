"""A fake platform for sweep tests: sessions with no process, results made up from a recipe."""
from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any, Callable, ClassVar

from deploybench.execute import RunSettings
from deploybench.platforms.base import (LaunchFacts, PlatformBase, PlatformError, RunOutcome,
                                        SessionSetup)
from deploybench.scenario import Scenario
from deploybench.sweep import PlannedScenario, RaceRule
from deploybench.worker.job import WorkerJob, WorkerResult

QUIET = RunSettings(timeout_s=10, busy_threshold=0)


class FakeSession:
    """A warm session: ``mean_ms(round_index, launch_index)`` gives each round's per-request
    time; ``outcome(round_index)`` may say "failed" (the worker dies), "timeout" or
    "interrupted"."""

    def __init__(self, platform: "FakePlatform", scenario: Scenario, setup: SessionSetup) -> None:
        self.platform = platform
        self.scenario = scenario
        self.launch_index = platform.launches
        platform.launches += 1
        self.facts = LaunchFacts(setup.launch_id, platform.name, "stdio", time.time(), time.time() + 0.001,
                                 details={"limits": {"cpus": [0], "quota_cores": None}})
        self.rounds = 0
        self.paused = False
        self.closed = False
        self.ended: str | None = None
        platform.sessions.append(self)

    @property
    def alive(self) -> bool:
        return not self.closed and self.ended is None

    def ready(self, timeout_s: float) -> None:
        self.platform.events.append(("ready", self.scenario.key))
        if self.platform.ready_fails(self.launch_index):
            self.close()
            raise PlatformError("fake worker never ready")
        self.facts.ready_wall = time.time()

    def measure(self, job: WorkerJob, timeout_s: float) -> RunOutcome:
        index = self.platform.calls
        self.platform.calls += 1
        self.platform.log.append(self.scenario.key)
        self.rounds += 1
        facts = {**self.facts.to_json(), "launch_round": self.rounds}
        status = self.platform.outcome(index)
        if status != "ok":
            self.ended = status
            return RunOutcome(status, error=f"fake {status} #{index}", host_facts=facts)
        ns = int(self.platform.mean_ms(index, self.launch_index) * 1e6)
        n = 4
        samples = {"sample_index": list(range(n)), "preprocess_ns": [ns // 2] * n,
                   "infer_ns": [ns - ns // 2] * n, "postprocess_ns": [0] * n,
                   "batch": list(range(n)), "queue_ns": [0] * n, "done_ns": [ns] * n,
                   "sample_id": [f"s{i}" for i in range(n)]}
        result = WorkerResult(status="ok", job=job.to_json(), samples=samples,
                              timings={"run_s": n * ns / 1e9})
        return RunOutcome("ok", result, host_facts=facts)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "FakeSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FakePlatform(PlatformBase):
    name: ClassVar[str] = "BM"

    def __init__(self, mean_ms: Callable[..., float] = lambda i, launch=0: 10.0,
                 outcome: Callable[[int], str] = lambda i: "ok", log: list | None = None,
                 launch_fails: Callable[[int], bool] = lambda i: False,
                 ready_fails: Callable[[int], bool] = lambda i: False,
                 events: list | None = None) -> None:
        super().__init__()
        self.mean_ms = mean_ms
        self.outcome = outcome
        self.launch_fails = launch_fails
        self.ready_fails = ready_fails  # by launch index: the worker starts, never says ready
        #: ("open" | "ready", scenario key), in order; may be shared by several platforms
        self.events = events if events is not None else []
        self.calls = 0
        self.launches = 0
        self.log = log if log is not None else []
        self.sessions: list[FakeSession] = []

    def unavailable_reason(self, host) -> str | None:
        return None

    def open(self, scenario: Scenario, setup: SessionSetup) -> FakeSession:
        self.events.append(("open", scenario.key))
        if self.launch_fails(self.launches):
            self.launches += 1
            raise PlatformError("fake launch failure")
        return FakeSession(self, scenario, setup)


def noisy(seed: int = 1, mean: float = 10.0, sd: float = 4.0) -> Callable[..., float]:
    rng = random.Random(seed)
    return lambda i, launch=0: max(0.1, rng.gauss(mean, sd))


def scenarios(n: int) -> list[Scenario]:
    names = ["BM/1/PIN/CPU", "BM/1/VNL/CPU", "BM/2/PIN/CPU", "BM/2/VNL/CPU"]
    return [Scenario.parse(names[i % 4], requests=4) for i in range(n)]


def planned(platforms: list[FakePlatform], data_dir: Path, rule: RaceRule,
            skip: dict[int, str] | None = None, names: list[str] | None = None) -> list[PlannedScenario]:
    skip = skip or {}
    chosen = [Scenario.parse(n, requests=4) for n in names] if names else scenarios(len(platforms))
    return [PlannedScenario(s, platform=p, data_dir=data_dir, rule=rule, settings=QUIET,
                            skip_reason=skip.get(i))
            for i, (s, p) in enumerate(zip(chosen, platforms))]


def launch_id() -> str:
    return uuid.uuid4().hex
