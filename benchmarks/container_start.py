"""Container start and stop latency per runtime and engine, against bare metal, in one run.

For each launcher (BM; CN through runc, crun, Docker, Podman where they work) it runs
``CN/1/PIN/CPU`` (``BM/1/PIN/CPU``) with IC ``tiny`` a few times and prints the medians of:
create, start and delete latency of the container (the runtime's own commands), cold start
to the first timed query (launch -> LoadGen's first query: includes Python and torch
imports and the model build), and stop (worker's last instruction -> container gone), with
the ratio of the start latency to bare metal's. A private dockerd is started for the Docker
rows when none answers (and stopped after).

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
from deploybench.platforms.base import PlatformError, PlatformOptions
from deploybench.platforms.baremetal import BareMetal
from deploybench.platforms.container import Container
from deploybench.platforms.engines import DockerEngine, private_dockerd
from deploybench.scenario import Scenario
from deploybench.sweep import RunSettings, run_one

KEYS = ("create_s", "start_s", "delete_s", "start_latency_s", "stop_latency_s")


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
        if DockerEngine().problem():
            try:
                os.environ["DOCKER_HOST"] = stack.enter_context(private_dockerd())
            except PlatformError as exc:
                print(f"docker: {exc}", file=sys.stderr)
        rows: dict[str, dict[str, list[float]]] = {}
        for rep in range(args.repeat):  # interleaved, so host drift hits every launcher alike
            for label, name, make in launchers:
                platform = make()
                reason = getattr(platform, "backend", lambda: None)()
                problem = reason.problem() if reason is not None else None
                if problem:
                    rows.setdefault(label, {})["skipped"] = problem  # type: ignore[assignment]
                    continue
                scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=args.requests)
                record = run_one(scenario, platform, data_dir=data, settings=RunSettings(timeout_s=300))
                if record.status != "ok":
                    print(f"{label}: {record.status}: {record.error}", file=sys.stderr)
                    continue
                for key in KEYS:
                    if key in record.platform:
                        rows.setdefault(label, {}).setdefault(key, []).append(record.platform[key])
    bm = statistics.median(rows["BM"]["start_latency_s"]) if rows.get("BM", {}).get("start_latency_s") else None
    print(f"median of {args.repeat} runs, seconds (IC tiny, 1 pinned core)")
    print(f"{'launcher':<11} {'create':>7} {'start':>7} {'delete':>7} {'to 1st query':>13} {'stop':>7} {'start/BM':>9}")
    for label, values in rows.items():
        if "skipped" in values:
            print(f"{label:<11} skipped: {values['skipped']}")
            continue
        med = {k: statistics.median(v) for k, v in values.items() if v}
        cells = [f"{med[k]:7.3f}" if k in med else f"{'-':>7}" for k in ("create_s", "start_s", "delete_s")]
        first = med.get("start_latency_s")
        ratio = f"{first / bm:9.2f}" if first and bm else f"{'-':>9}"
        print(f"{label:<11} {' '.join(cells)} {first if first is None else f'{first:13.3f}'} "
              f"{med.get('stop_latency_s', float('nan')):7.3f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
