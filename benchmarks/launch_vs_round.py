"""How much launches differ, against how much rounds differ within one launch: the numbers
that choose how a study spreads its rounds over launches (``run --launches``, the sweep's
blocks per launch).

For IC tiny and small on BM/1/PIN and CN/1/PIN it makes ``--launches`` launches of
``--rounds`` rounds each (one warm-up round per launch, not counted), interleaving the
scenarios launch by launch, and prints per scenario:

- the mean of the round means, and the first measured round against the later ones;
- the standard deviation *within* a launch (rounds around their launch's mean) and
  *between* launches (launch means around the grand mean, beyond what the round noise
  explains), both relative to the mean;
- the ratio between / within, and what it implies: the variance of a mean over L launches
  of R rounds is between^2 / L + within^2 / (L R), so once between^2 > within^2 / R, more
  rounds per launch buy little and more launches are what narrow a CI.

    .venv/bin/python benchmarks/launch_vs_round.py [--launches 5] [--rounds 6]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys

from deploybench.apps import create_app
from deploybench.datasets.cache import ensure_data
from deploybench.execute import BlockSet, Contender, RunSettings, run_block_set
from deploybench.platforms.baremetal import BareMetal
from deploybench.platforms.container import Container
from deploybench.scenario import Scenario


def components(launches: list[list[float]]) -> tuple[float, float, float]:
    """(grand mean, within-launch sd, between-launch sd beyond the round noise)."""
    means = [statistics.fmean(r) for r in launches]
    grand = statistics.fmean(means)
    within_var = statistics.fmean([statistics.variance(r) for r in launches if len(r) > 1])
    rounds = statistics.fmean([len(r) for r in launches])
    between_var = max(0.0, statistics.variance(means) - within_var / rounds) if len(means) > 1 else math.nan
    return grand, math.sqrt(within_var), math.sqrt(between_var)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--sizes", default="tiny,small")
    args = parser.parse_args()
    data = ensure_data(create_app("ic"), 16, 0)
    settings = RunSettings(timeout_s=600, busy_threshold=0)
    rows = []
    for size in args.sizes.split(","):
        contenders = [Contender(Scenario.parse(name, app="ic", model_size=size, requests=args.requests),
                                platform, data, settings)
                      for name, platform in (("BM/1/PIN/CPU", BareMetal()), ("CN/1/PIN/CPU", Container()))]
        rounds: dict[str, dict[str, list[float]]] = {c.key: {} for c in contenders}
        launch_s: dict[str, list[float]] = {c.key: [] for c in contenders}
        for epoch in range(args.launches):
            out = run_block_set(BlockSet(tuple(contenders), blocks=args.rounds, warmup_rounds=1,
                                         epoch=epoch, seed=epoch), lambda record: None)
            for r in out.records:
                if r.status == "ok":
                    rounds[r.scenario.key].setdefault(r.launch_id, []).append(r.summary["e2e_mean_ms"])
                if r.launch_round == 1 and r.platform.get("start_latency_s") is not None:
                    launch_s[r.scenario.key].append(r.platform["start_latency_s"])
        for c in contenders:
            launches = list(rounds[c.key].values())
            grand, within, between = components(launches)
            first = statistics.fmean([r[0] for r in launches])
            later = statistics.fmean([x for r in launches for x in r[1:]])
            rows.append((f"{c.scenario.name} ic {size}", grand, first / later, within / grand,
                         between / grand, statistics.fmean(launch_s[c.key])))
    print(f"{args.launches} launches x {args.rounds} rounds of {args.requests} requests (1 warm-up round "
          "per launch, not counted); sd relative to the mean")
    print(f"{'scenario':<22} {'mean ms':>8} {'1st/later':>9} {'within':>8} {'between':>8} "
          f"{'between/within':>14} {'launch s':>8}")
    for name, grand, first, within, between, launch in rows:
        ratio = between / within if within > 0 else math.inf
        print(f"{name:<22} {grand:8.2f} {first:9.3f} {within:8.1%} {between:8.1%} {ratio:14.2f} {launch:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
