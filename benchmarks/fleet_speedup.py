"""What a second local worker buys on a real study: a 12-block BM study (two groups of
compared scenarios, IC and RS tiny, BM/1/PIN against BM/1/VNL; each group exactly --epochs
launch epochs of --blocks blocks) swept with `--fleet local:1` and with `--fleet local:2`, as a
user runs it (the whole `deploybench sweep` command). It prints both wall times, the sweep
times the command reports (without the fleet's start and stop), and the speed-up of 2
workers over 1.

local:1 gets every core of this host, local:2 one share each: the groups run one after the
other on one worker, side by side on two. The study's scenarios take one core, so both fit.

    .venv/bin/python benchmarks/fleet_speedup.py [--epochs 3] [--blocks 2] [--requests 16]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = """
name = "fleet-speedup"
apps = ["ic", "rs"]
platforms = ["BM"]
cores = [1]
modes = ["PIN", "VNL"]
model_sizes = "tiny"
requests = {requests}
data_count = 16
timeout_s = 300

[stopping]
warmup_rounds = 1
min_launches = {above}
max_launches = {epochs}
blocks = {blocks}
"""


def sweep(study: Path, db: Path, fleet: str, env: dict[str, str]) -> tuple[float, float, int]:
    """(the command's wall time, the sweep time it reports, runs stored)."""
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "deploybench", "sweep", str(study), "--db", str(db),
                          "--fleet", fleet, "--allow-concurrent"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - began
    if out.returncode != 0:
        raise SystemExit(f"--fleet {fleet}: the sweep failed: {(out.stderr or out.stdout).strip()[-600:]}")
    found = re.search(r"(\d+) runs this time, ([\d.]+) (s|min)", out.stdout)
    if not found:
        raise SystemExit(f"--fleet {fleet}: no summary line in:\n{out.stdout[-800:]}")
    runs, value, unit = int(found.group(1)), float(found.group(2)), found.group(3)
    return wall, value * (60 if unit == "min" else 1), runs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--requests", type=int, default=16)
    args = parser.parse_args()
    blocks = 2 * args.epochs * args.blocks
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "speedup.toml"
        study.write_text(STUDY.format(requests=args.requests, above=args.epochs + 1, epochs=args.epochs,
                                      blocks=args.blocks))
        env = {**os.environ, "DEPLOYBENCH_HOME": os.environ.get("DEPLOYBENCH_HOME", str(Path(tmp) / "home")),
               "DEPLOYBENCH_LEDGER": str(Path(tmp) / "ledger")}
        # the data sets, generated once before anything is timed
        for app in ("ic", "rs"):
            subprocess.run([sys.executable, "-m", "deploybench", "data", "--app", app, "--count", "16"],
                           cwd=REPO, env=env, check=True, capture_output=True)
        print(f"fleet speed-up: a {blocks}-block BM study (2 groups x {args.epochs} epochs x {args.blocks} "
              f"blocks of BM/1/PIN and BM/1/VNL, IC and RS tiny, {args.requests} requests) on "
              f"{os.cpu_count()} CPUs")
        rows = {}
        for fleet in ("local:1", "local:2"):
            wall, swept, runs = sweep(study, Path(tmp) / f"{fleet.replace(':', '')}.db", fleet, env)
            rows[fleet] = (wall, swept)
            print(f"  --fleet {fleet}: command {wall:6.1f} s, sweep {swept:6.1f} s, {runs} runs", flush=True)
    (w1, s1), (w2, s2) = rows["local:1"], rows["local:2"]
    print(f"speed-up of 2 workers over 1: {s1 / s2:.2f}x for the sweep, {w1 / w2:.2f}x for the whole command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
