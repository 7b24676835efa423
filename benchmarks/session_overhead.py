"""What warm sessions save: the wall time of `deploybench run X --repeat 10 --launches 1` over
that of `deploybench run X --repeat 1`, for BM, CN (runc) and MVM, as a user runs them (the
whole command, Python start-up included), plus the time one launch and one warm round cost
(from the stored runs), so the default number of launches can be chosen knowingly.

Ten rounds in one launch cost one launch and ten rounds; one round costs one launch and
one round; with a launch worth L seconds and a round R, the ratio is (L + 10 R) / (L + R).
The target (issue 10) is <= 2.5 for BM and CN with IC tiny and 16 requests.

MVM runs under TCG emulation here (no usable KVM), where one IC request takes seconds: it
gets `--mvm-requests` requests and `--mvm-repeat` rounds (2 and 5 by default), flagged.

    .venv/bin/python benchmarks/session_overhead.py [--platforms BM,CN,MVM]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(name: str, repeat: int, requests: int, db: Path, extra: list[str]) -> float:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "deploybench", "run", name, "--app", "ic",
                          "--model-size", "tiny", "--requests", str(requests), "--repeat", str(repeat),
                          "--launches", "1", "--data-count", "16", "--db", str(db), *extra],
                         cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{name}: deploybench run failed: {out.stderr.strip().splitlines()[-1:]}")
    return wall


def costs(db: Path) -> tuple[float, float]:
    """(mean launch latency, mean warm round) of the runs in ``db``."""
    from deploybench.store import Store

    with Store(db, readonly=True) as store:
        records = [r for r in store.runs(with_samples=False) if r.status == "ok"]
    launches = [r.platform["start_latency_s"] for r in records if r.launch_round == 1]
    rounds = [r.finished_at - r.started_at for r in records if (r.launch_round or 0) > 1]
    return statistics.fmean(launches), statistics.fmean(rounds) if rounds else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--platforms", default="BM,CN,MVM")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--mvm-requests", type=int, default=2)
    parser.add_argument("--mvm-repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="deploybench-overhead-") as tmp:
        for platform in args.platforms.split(","):
            name = f"{platform}/1/PIN/CPU"
            guest = platform in ("VM", "MVM", "VMCN")
            requests = args.mvm_requests if guest else args.requests
            repeat = args.mvm_repeat if guest else args.repeat
            extra = ["--accel", "tcg", "--timeout", "1800"] if guest else []
            one = run(name, 1, requests, Path(tmp) / f"{platform}-1.db", extra)
            many = run(name, repeat, requests, Path(tmp) / f"{platform}-n.db", extra)
            launch, round_s = costs(Path(tmp) / f"{platform}-n.db")
            rows.append((name + (" (TCG)" if guest else ""), requests, repeat, one, many, launch, round_s))
    print(f"IC tiny, `run --repeat N --launches 1` against `run --repeat 1` (whole commands)")
    print(f"{'scenario':<20} {'req':>4} {'N':>3} {'repeat 1 s':>10} {'repeat N s':>10} {'ratio':>6} "
          f"{'launch s':>8} {'round s':>8} {'ideal ratio':>11}")
    for name, requests, repeat, one, many, launch, round_s in rows:
        ideal = (launch + repeat * round_s) / (launch + round_s)
        print(f"{name:<20} {requests:>4} {repeat:>3} {one:10.2f} {many:10.2f} {many / one:6.2f} "
              f"{launch:8.2f} {round_s:8.3f} {ideal:11.2f}")
    print("launch: start of the platform to a warm worker (the first round's start_latency_s); "
          "round: a warm round's wall time, as stored. Before sessions the ratio was about 10 "
          "(one fresh launch per run).")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
