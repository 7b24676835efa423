"""Container launch latency per runtime and engine, against bare metal, in one run.

For each launcher (BM; CN through runc, crun, Docker, Podman where they work) it launches
``CN/1/PIN/CPU`` (``BM/1/PIN/CPU``) with IC ``tiny`` a few times, one round each, and prints
the medians of: create, start and delete latency of the container (the runtime's or the
engine's own commands) and launch to a warm worker (``start_latency_s``: includes Python and
torch imports and the model build), with its ratio to bare metal's. A private dockerd is
started for the Docker rows when none answers (and stopped after).

    .venv/bin/python benchmarks/container_start.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys

from deploybench.apps import create_app
from deploybench.datasets.cache import ensure_data
from deploybench.execute import BlockSet, Contender, RunSettings, run_block_set
from deploybench.host import host_facts
from deploybench.platforms.base import PlatformError, PlatformOptions
from deploybench.platforms.baremetal import BareMetal
from deploybench.platforms.container import Container
from deploybench.platforms.container.launchers import EngineCli, private_dockerd
from deploybench.scenario import Scenario

KEYS = ("create_s", "start_s", "start_latency_s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    data = ensure_data(create_app("ic"), 16, 0)
    launchers = [("BM", "BM/1/PIN/CPU", lambda: BareMetal())]
    for runtime in ("runc", "crun"):
        launchers.append((f"CN {runtime}", "CN/1/PIN/CPU",
                          lambda r=runtime: Container(PlatformOptions(runtime=r))))
    for engine in ("docker", "podman"):
        launchers.append((f"CN {engine}", "CN/1/PIN/CPU",
                          lambda e=engine: Container(PlatformOptions(engine=e))))
    with contextlib.ExitStack() as stack:
        if EngineCli("docker").problem():
            try:
                os.environ["DOCKER_HOST"] = stack.enter_context(private_dockerd())
            except PlatformError as exc:
                print(f"docker: {exc}", file=sys.stderr)
        rows: dict[str, dict[str, list[float]]] = {}
        for rep in range(args.repeat):  # interleaved, so host drift hits every launcher alike
            for label, name, make in launchers:
                platform = make()
                problem = platform.unavailable_reason(host_facts())
                if problem:
                    rows.setdefault(label, {})["skipped"] = problem  # type: ignore[assignment]
                    continue
                scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=args.requests)
                contender = Contender(scenario, platform, data, RunSettings(timeout_s=300, busy_threshold=0))
                (record,) = run_block_set(BlockSet((contender,), blocks=1), lambda r: None).records
                if record.status != "ok":
                    print(f"{label}: {record.status}: {record.error}", file=sys.stderr)
                    continue
                for key in KEYS:
                    if key in record.platform:
                        rows.setdefault(label, {}).setdefault(key, []).append(record.platform[key])
    bm = statistics.median(rows["BM"]["start_latency_s"]) if rows.get("BM", {}).get("start_latency_s") else None
    print(f"median of {args.repeat} runs, seconds (IC tiny, 1 pinned core)")
    print(f"{'launcher':<11} {'create':>7} {'start':>7} {'to warm worker':>14} {'launch/BM':>9}")
    for label, values in rows.items():
        if "skipped" in values:
            print(f"{label:<11} skipped: {values['skipped']}")
            continue
        med = {k: statistics.median(v) for k, v in values.items() if v}
        cells = [f"{med[k]:7.3f}" if k in med else f"{'-':>7}" for k in ("create_s", "start_s")]
        first = med.get("start_latency_s")
        ratio = f"{first / bm:9.2f}" if first and bm else f"{'-':>9}"
        print(f"{label:<11} {' '.join(cells)} {f'{first:14.3f}' if first else f'{chr(45):>14}'} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
