"""A fake platform for sweep tests: no process, a WorkerResult made up from a recipe."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, ClassVar

from deploybench.platforms.base import PlatformOptions, RunOutcome
from deploybench.scenario import Scenario
from deploybench.sweep import PlannedScenario, RunSettings, StopRule
from deploybench.worker.job import WorkerResult

QUIET = RunSettings(timeout_s=10, busy_probe_s=0)


class FakePlatform:
    """``mean_ms(call_index)`` gives each run's per-request time; ``outcome(call_index)`` may
    return a status other than ok ("failed", "timeout", "interrupted")."""

    name: ClassVar[str] = "BM"

    def __init__(self, mean_ms: Callable[[int], float] = lambda i: 10.0,
                 outcome: Callable[[int], str] = lambda i: "ok", log: list | None = None) -> None:
        self.mean_ms = mean_ms
        self.outcome = outcome
        self.calls = 0
        self.log = log if log is not None else []
        self.options = PlatformOptions()

    def unavailable_reason(self, host) -> str | None:
        return None

    def run(self, scenario: Scenario, job, timeout_s: float) -> RunOutcome:
        index = self.calls
        self.calls += 1
        self.log.append(scenario.key)
        status = self.outcome(index)
        if status != "ok":
            return RunOutcome(status, error=f"fake {status} #{index}")
        ns = int(self.mean_ms(index) * 1e6)
        n = 4
        samples = {"sample_index": list(range(n)), "preprocess_ns": [ns // 2] * n,
                   "infer_ns": [ns - ns // 2] * n, "postprocess_ns": [0] * n,
                   "batch": list(range(n)), "queue_ns": [0] * n, "done_ns": [ns] * n,
                   "sample_id": [f"s{i}" for i in range(n)]}
        result = WorkerResult(status="ok", job=job.to_json(), samples=samples,
                              timings={"run_s": n * ns / 1e9})
        return RunOutcome("ok", result)


def noisy(seed: int = 1, mean: float = 10.0, sd: float = 4.0) -> Callable[[int], float]:
    rng = random.Random(seed)
    return lambda i: max(0.1, rng.gauss(mean, sd))


def scenarios(n: int) -> list[Scenario]:
    names = ["BM/1/PIN/CPU", "BM/1/VNL/CPU", "BM/2/PIN/CPU", "BM/2/VNL/CPU"]
    out = []
    for i in range(n):
        out.append(Scenario.parse(names[i % 4], requests=4 + i // 4))
    return out


def planned(platforms: list[FakePlatform], data_dir: Path, rule: StopRule,
            skip: dict[int, str] | None = None) -> list[PlannedScenario]:
    skip = skip or {}
    return [PlannedScenario(s, platform=p, data_dir=data_dir, rule=rule, settings=QUIET,
                            skip_reason=skip.get(i))
            for i, (s, p) in enumerate(zip(scenarios(len(platforms)), platforms))]
