"""Adaptive stopping vs a fixed repetition count, on one real bare-metal scenario.

Scenario: IC, tiny model, ``BM/1/PIN/CPU``, 16 requests per run (Offline). The adaptive
sweep (one warm-up, then runs until the 95% CI half-width of the mean E2E per request is
within ±1% of the mean) runs for real, with a time budget so the script stays under ~3
minutes; it prints the wall time it took and the precision it reached.

What a fixed-count design would have cost for *at least the same precision*:
- **oracle fixed count**: the fewest runs a fixed design could have chosen had it known the
  run-to-run spread in advance: the smallest n with t(n-1) s / sqrt(n) <= p x mean, where s
  is the standard deviation observed over the adaptive runs and p the precision the adaptive
  sweep reached (1% when it converged). A fixed design does not know s beforehand, so this
  is the best case for it; adaptive stopping gets there without knowing s.
- **the paper's design**: 1,000 repetitions of each workload (Section III-A), the choice one
  makes without knowing s; its cost is 1,000 x the mean wall time of one run here (it is
  extrapolated, not run).
Both costs use the mean wall time of one run measured during the adaptive sweep, plus the
same one warm-up. The host-busy probe is off (it would add the same 0.5 s per run to both).

Prints both times and the ratios fixed / adaptive.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BUDGET_S = float(os.environ.get("ADAPTIVE_BUDGET_S", "150"))
TARGET = 0.01
PAPER_RUNS = 1000


def main() -> int:
    from deploybench.apps import create_app
    from deploybench.datasets.cache import ensure_data
    from deploybench.planning import plan_study
    from deploybench.stats import coefficient_of_variation, mean_ci, runs_needed
    from deploybench.store import Store
    from deploybench.study import Study
    from deploybench.sweep import run_sweep
    from deploybench.host import host_facts

    study = Study.from_dict({
        "name": "adaptive-stop", "apps": ["ic"], "platforms": ["BM"], "cores": [1],
        "modes": ["PIN"], "model_sizes": "tiny", "requests": 16, "data_count": 16,
        "timeout_s": 120,
        "stopping": {"warmup_runs": 1, "target_rel_ci": TARGET, "min_runs": 3, "max_runs": 10_000,
                     "max_time_s": BUDGET_S},
        "host": {"busy_probe_s": 0},
    }, source="adaptive_stop.py")
    (item,) = plan_study(study, host_facts())
    if item.skip_reason:
        print(f"cannot run {item.scenario.name} here: {item.skip_reason}")
        return 1
    ensure_data(create_app("ic"), study.model.data_count, study.seed)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        began = time.perf_counter()
        decisions = run_sweep([item], store, study=study.name, seed=0)
        adaptive_s = time.perf_counter() - began
        records = store.runs(study=study.name)
    decision = decisions[item.key]
    measured = [r for r in records if r.status == "ok"]
    means = [r.summary["e2e_mean_ms"] for r in measured]
    run_s = sum(r.finished_at - r.started_at for r in records) / len(records)
    ci = mean_ci(means)
    reached = ci.relative
    precision = max(TARGET, reached)
    oracle_n = runs_needed(means, precision)
    oracle_s = (oracle_n + 1) * run_s
    paper_s = (PAPER_RUNS + 1) * run_s
    print(f"scenario: {item.scenario.label}, {len(records)} runs ({len(measured)} measured + warm-up)")
    print(f"adaptive: stopped by {decision.reason} ({decision.detail}); mean {ci.mean:.3f} ms "
          f"± {ci.half_width:.3f} ms ({reached:.2%}); CV over runs "
          f"{coefficient_of_variation(means):.1%}")
    print(f"adaptive wall time: {adaptive_s:.1f} s (mean {run_s:.2f} s per run)")
    print(f"fixed count, oracle (n = {oracle_n} for ±{precision:.2%}): {oracle_s:.1f} s "
          f"-> ratio fixed/adaptive = {oracle_s / adaptive_s:.2f}x")
    print(f"fixed count, the paper's {PAPER_RUNS} repetitions: {paper_s:.0f} s "
          f"-> ratio fixed/adaptive = {paper_s / adaptive_s:.1f}x")
    if decision.reason != "converged":
        print(f"note: ±{TARGET:.0%} was not reached within the {BUDGET_S:g} s budget on this host; "
              f"the comparison is at the precision reached (±{precision:.2%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
