"""Probe effect: what our worker adds per sample (LoadGen driving + phase timers +
bookkeeping), measured on a no-op app, against a bare LoadGen null SUT that completes every
sample in its issue callback. Both run in this one process, interleaved, several rounds;
medians are compared. Target: ours <= 1.5x LoadGen's own per-sample cost.

    python benchmarks/probe_effect.py [--samples 20000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlperf_loadgen as lg

from deploybench.worker.driver import LoadgenDriver

SCENARIOS = {"Offline": lg.TestScenario.Offline, "SingleStream": lg.TestScenario.SingleStream}


class NoopApp:
    name = "noop"
    sizes = ("tiny",)

    def __init__(self, count: int) -> None:
        self.ids = [f"s{i}" for i in range(count)]

    def sample_ids(self):
        return self.ids

    def preprocess(self, sample_id):
        return sample_id

    def infer(self, batch):
        return batch

    def postprocess(self, output):
        return output


def _settings(scenario: str, samples: int) -> lg.TestSettings:
    s = lg.TestSettings()
    s.scenario = SCENARIOS[scenario]
    s.mode = lg.TestMode.PerformanceOnly
    s.min_query_count = s.max_query_count = samples
    s.min_duration_ms = 0
    s.offline_expected_qps = samples
    s.single_stream_expected_latency_ns = 1000
    s.performance_sample_count_override = 1024
    return s


def null_sut(scenario: str, samples: int, log_dir: Path) -> float:
    def issue(query_samples):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in query_samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.enable_trace = False
    t = time.perf_counter()
    lg.StartTestWithLogSettings(sut, qsl, _settings(scenario, samples), log)
    elapsed = time.perf_counter() - t
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    return elapsed / samples * 1e6


def ours(scenario: str, samples: int, log_dir: Path) -> float:
    driver = LoadgenDriver(NoopApp(1024), batch_size=1, inference_only=False)
    t = time.perf_counter()
    driver.run(scenario=scenario, requests=samples, log_dir=log_dir, server_target_qps=1)
    elapsed = time.perf_counter() - t
    assert len(driver.log.preprocess_ns) == samples
    return elapsed / samples * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in SCENARIOS:
            base, mine = [], []
            for r in range(args.rounds):
                base.append(null_sut(scenario, args.samples, Path(tmp)))
                mine.append(ours(scenario, args.samples, Path(tmp)))
            b, m = statistics.median(base), statistics.median(mine)
            worst = max(worst, m / b)
            print(f"{scenario:<13} LoadGen null SUT {b:6.2f} us/sample | deploybench worker "
                  f"{m:6.2f} us/sample | ratio {m / b:4.2f}x  ({args.rounds} rounds of {args.samples})")
    print(f"worst ratio {worst:.2f}x (target <= 1.5x): {'met' if worst <= 1.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
