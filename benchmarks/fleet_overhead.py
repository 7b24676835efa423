"""What the fleet costs: a study whose platform only sleeps (a launch takes --launch-s, a
round --round-s, exactly), swept over a local fleet of 1, 2, 4 and 8 workers
(``fleet.LocalFleet`` + ``executors.DaskExecutor``, the code `sweep --fleet` runs; workers
not pinned, since nothing computes). It prints, for each fleet size, the measured wall time
of the sweep, the ideal time (the known sleeping time of every block set over the workers),
the efficiency (ideal / measured; the target, issue 13: >= 95% at 8 workers) and the dispatch
overhead per block set (one launch epoch: what a host spends on a block set beyond its
sleeps: the task process, the queue, storing, replanning) and per block.

A session's close sleeps too (--close-s), as a real one takes a moment to stop its worker.

The study: --groups groups of two scenarios (one workload each, so they are independent),
each exactly --epochs launch epochs of --blocks blocks (min_launches above max_launches), no
warm-up. Every group is measured on one host at a time, so the groups spread over the workers.

    .venv/bin/python benchmarks/fleet_overhead.py [--workers 1,2,4,8] [--round-s 0.5]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

BENCH = Path(__file__).resolve().parent
FACTORY = "fleet_overhead:sleep_platform"  # imported by the task processes (PYTHONPATH)


# -- the sleeping platform (runs in the task processes on the workers) -------------------------------
def _timing() -> tuple[float, float, float]:
    """(launch, round, close) seconds."""
    return (float(os.environ["FLEET_BENCH_LAUNCH_S"]), float(os.environ["FLEET_BENCH_ROUND_S"]),
            float(os.environ["FLEET_BENCH_CLOSE_S"]))


class SleepSession:
    """A warm session that is nothing: a round sleeps a known time and returns made-up requests."""

    def __init__(self, platform: "SleepPlatform", setup: Any) -> None:
        from deploybench.platforms.base import LaunchFacts

        now = time.time()
        self.facts = LaunchFacts(setup.launch_id, platform.name, "stdio", now, now,
                                 details={"limits": {"cpus": None, "quota_cores": None}})
        self.rounds = 0
        self.closed = False

    @property
    def alive(self) -> bool:
        return not self.closed

    def measure(self, job: Any, timeout_s: float) -> Any:
        from deploybench.platforms.base import RunOutcome
        from deploybench.worker.job import WorkerResult

        time.sleep(_timing()[1])
        self.rounds += 1
        n, ns = 4, 5_000_000
        samples = {"sample_index": list(range(n)), "preprocess_ns": [ns] * n, "infer_ns": [ns] * n,
                   "postprocess_ns": [0] * n, "batch": list(range(n)), "queue_ns": [0] * n,
                   "done_ns": [2 * ns] * n, "sample_id": [f"s{i}" for i in range(n)]}
        result = WorkerResult(status="ok", job=job.to_json(), samples=samples, timings={"run_s": 0.04})
        return RunOutcome("ok", result, host_facts={**self.facts.to_json(), "launch_round": self.rounds})

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None:
        if not self.closed:
            time.sleep(_timing()[2])  # a real session takes a moment to stop its worker
        self.closed = True

    def __enter__(self) -> "SleepSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sleep_platform(name: Any, options: Any) -> Any:
    from deploybench.platforms.base import PlatformBase

    class SleepPlatform(PlatformBase):
        supports_io_limits: ClassVar[bool] = False

        def unavailable_reason(self, host: Any) -> str | None:
            return None

        def open(self, scenario: Any, setup: Any) -> SleepSession:
            time.sleep(_timing()[0])
            return SleepSession(self, setup)

    platform = SleepPlatform(options)
    platform.name = name.value
    return platform


# -- the benchmark --------------------------------------------------------------------------------------
def plan(groups: int, epochs: int, blocks: int, data_dir: Path) -> list[Any]:
    from deploybench.execute import RunSettings
    from deploybench.scenario import Scenario
    from deploybench.sweep import PlannedScenario, RaceRule

    rule = RaceRule(warmup_rounds=0, min_launches=epochs + 1, max_launches=epochs, blocks=blocks,
                    max_time_s=1e6)
    settings = RunSettings(timeout_s=60, busy_threshold=0)
    return [PlannedScenario(Scenario.parse(name, requests=4 + g), platform=sleep_platform_client(name),
                            data_dir=data_dir, rule=rule, settings=settings)
            for g in range(groups) for name in ("BM/1/PIN/CPU", "BM/1/VNL/CPU")]


def sleep_platform_client(name: str) -> Any:
    """The client's side of a contender: only its name and options travel."""
    from deploybench.platforms import create_platform
    from deploybench.scenario import PlatformName

    return create_platform(PlatformName(name.split("/")[0]))


def sweep_on(workers: int, planned: list[Any], db: Path) -> tuple[float, int, list[dict]]:
    """(seconds the sweep took, block sets run, the tasks' summaries) on a local fleet of
    ``workers``."""
    import dataclasses

    from deploybench.executors import DaskExecutor
    from deploybench.fleet import LocalFleet
    from deploybench.store import Store

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])}
    with LocalFleet(workers, pin=False, env=env) as fleet, Store(db) as store:
        with DaskExecutor(fleet.client, platform_factory=FACTORY) as executor:
            executor.wait_for_hosts(count=workers)  # every worker a host before the clock starts
            (host_class,) = executor.host_classes()
            assert len(host_class.hosts) == workers, host_class.hosts
            mine = [dataclasses.replace(p, host_class=host_class.fingerprint) for p in planned]
            from deploybench.sweep import run_sweep

            began = time.perf_counter()
            run_sweep(mine, store, study=f"overhead-{uuid.uuid4().hex[:6]}", executor=executor)
            wall = time.perf_counter() - began
            summaries = list(executor.summaries)
        epochs = {(r.scenario.requests, r.repetition) for r in store.runs(with_samples=False)}
    return wall, len(epochs), summaries


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--launch-s", type=float, default=0.5)
    parser.add_argument("--round-s", type=float, default=0.5)
    parser.add_argument("--close-s", type=float, default=0.25)
    args = parser.parse_args()
    os.environ["FLEET_BENCH_LAUNCH_S"] = str(args.launch_s)
    os.environ["FLEET_BENCH_ROUND_S"] = str(args.round_s)
    os.environ["FLEET_BENCH_CLOSE_S"] = str(args.close_s)
    os.environ.setdefault("DEPLOYBENCH_HOME", tempfile.mkdtemp(prefix="fleet-bench-home-"))
    os.environ.setdefault("DEPLOYBENCH_LEDGER", tempfile.mkdtemp(prefix="fleet-bench-ledger-"))
    per_block_set = 2 * (args.launch_s + args.close_s) + 2 * args.blocks * args.round_s
    print(f"fleet overhead: {args.groups} groups x {args.epochs} launch epochs = "
          f"{args.groups * args.epochs} block sets of 2 launches ({args.launch_s:g} s), "
          f"{args.blocks} blocks x 2 rounds ({args.round_s:g} s) and 2 closes ({args.close_s:g} s): "
          f"{per_block_set:g} s of sleep each, on {os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'measured s':>10} {'ideal s':>8} {'efficiency':>10} "
          f"{'overhead / block set':>21} {'/ block':>8} {'on the host':>12} {'dispatch':>9}")
    import scipy.stats  # noqa: F401 - the client's one-time imports, before anything is timed

    results = {}
    timeline: list = []
    with tempfile.TemporaryDirectory() as tmp:
        planned = plan(args.groups, args.epochs, args.blocks, Path(tmp))
        for n in [int(x) for x in args.workers.split(",")]:
            wall, block_sets, summaries = sweep_on(n, planned, Path(tmp) / f"w{n}.db")
            assert block_sets == args.groups * args.epochs, block_sets
            ideal = block_sets * per_block_set / n
            overhead = (wall - ideal) * n / block_sets
            # on the host: the task's time beyond its sleeps (taking the ready task process,
            # its records, its end); dispatch: the rest (the client, Dask, the queue)
            on_host = sum(s["marks"]["returned_s"] for s in summaries) / len(summaries) - per_block_set
            results[n] = ideal / wall
            timeline.append((n, summaries))
            print(f"{n:>7} {wall:>10.1f} {ideal:>8.1f} {ideal / wall:>9.1%} {overhead:>19.3f} s "
                  f"{overhead / args.blocks:>6.3f} s {on_host:>10.3f} s {overhead - on_host:>7.3f} s", flush=True)
    print("where dispatch goes (means per block set): sent -> running on a host; done there -> seen "
          "by the client")
    for n, summaries in timeline:
        sent = [s["began_wall"] - s["submitted_wall"] for s in summaries if "submitted_wall" in s]
        seen = [s["seen_wall"] - s["done_wall"] for s in summaries if "seen_wall" in s]
        if sent and seen:
            marks = {k: sum(s["marks"][k] for s in summaries) / len(summaries)
                     for k in ("ready_s", "done_s", "returned_s")}
            print(f"  {n} workers: {sum(sent) / len(sent):.3f} s; {sum(seen) / len(seen):.3f} s; on the host: "
                  f"a ready task process after {marks['ready_s']:.3f} s, measured by "
                  f"{marks['done_s']:.3f} s, returned at {marks['returned_s']:.3f} s")
    if 8 in results:
        verdict = "meets" if results[8] >= 0.95 else "misses"
        print(f"efficiency at 8 workers: {results[8]:.1%} ({verdict} the >= 95% target)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    sys.exit(main())
