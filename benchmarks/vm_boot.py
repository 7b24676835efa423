"""Guests: boot times of VM, MVM and VMCN measured on the host clock from console markers,
and what a warm guest saves: ``--rounds`` rounds in one warm MVM guest against the same
number of fresh boots (one round each).

    .venv/bin/python benchmarks/vm_boot.py [--accel auto|kvm|tcg] [--platforms VM,MVM,VMCN] [--rounds 5]

Per platform, one launch of IC ``tiny`` (2 requests): launch -> guest user space (init) ->
stage-2 script (worker start) -> worker ready (app and model loaded) -> first timed query.
Under TCG these are functional figures (emulation): compare guests with each other, never
with native runs.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from deploybench.apps import create_app
from deploybench.datasets.cache import ensure_data
from deploybench.execute import BlockSet, Contender, RunSettings, run_block_set
from deploybench.platforms import create_platform
from deploybench.platforms.base import PlatformOptions
from deploybench.scenario import Scenario


def measure(contender: Contender, launches: int, rounds: int) -> tuple[float, list]:
    records: list = []
    t = time.perf_counter()
    for epoch in range(launches):
        records += run_block_set(BlockSet((contender,), blocks=rounds, epoch=epoch),
                                 lambda record: None).records
    return time.perf_counter() - t, records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accel", default="auto")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--mode", default="PIN")
    parser.add_argument("--platforms", default="VM,MVM,VMCN")
    parser.add_argument("--rounds", type=int, default=5, help="warm rounds against fresh boots (MVM)")
    args = parser.parse_args()
    settings = RunSettings(timeout_s=1800, busy_threshold=0)
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_data(create_app("ic"), 4, 0, out_dir=Path(tmp) / "data")

        def contender(name: str) -> Contender:
            scenario = Scenario.parse(f"{name}/{args.cores}/{args.mode}/CPU", app="ic",
                                      model_size="tiny", requests=2)
            return Contender(scenario, create_platform(scenario.platform, PlatformOptions(accel=args.accel)),
                             data, settings)

        print(f"{'scenario':<16} {'accel':<5} {'user space':>10} {'worker start':>12} "
              f"{'worker ready':>12} {'first query':>11}  (seconds from QEMU launch)")
        for name in args.platforms.split(","):
            c = contender(name)
            _, (record,) = measure(c, 1, 1)
            f = record.platform
            if record.status != "ok":
                print(f"{c.scenario.name:<16} {record.status}: {record.error}")
                continue
            print(f"{c.scenario.name:<16} {f['accel']:<5} {f['boot_userspace_s']:>10.2f} "
                  f"{f['worker_start_s']:>12.2f} {f['start_latency_s']:>12.2f} {f['first_query_s']:>11.2f}")
        if args.rounds:
            c = contender("MVM")
            warm_s, warm = measure(c, 1, args.rounds)
            fresh_s, fresh = measure(c, args.rounds, 1)
            ok = lambda rs: sum(r.status == "ok" for r in rs)  # noqa: E731
            accel = warm[0].platform.get("accel", "?")
            print(f"\n{c.scenario.name} ({accel}), IC tiny, 2 requests a round: {args.rounds} rounds in one "
                  f"warm guest {warm_s:.1f} s ({ok(warm)} ok) against {args.rounds} fresh boots "
                  f"{fresh_s:.1f} s ({ok(fresh)} ok): {fresh_s / warm_s:.1f}x")


if __name__ == "__main__":
    main()
