"""torch vs onnxruntime, per app and size, on pinned bare-metal scenarios: mean pre / infer /
post ms per request and the onnxruntime/torch inference ratio, measured in one session.

    .venv/bin/python benchmarks/backends_matrix.py [--apps nlp:base,nlp:tiny,ic:full,ic:tiny]
        [--scenarios BM/1/PIN/CPU,BM/2/PIN/CPU] [--requests 8] [--db PATH]

Runs the real CLI (cgroups, worker, LoadGen); torch and onnxruntime of one configuration
run back to back so that host drift affects both alike.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CLI = [sys.executable, "-m", "deploybench"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", default="nlp:base,nlp:tiny,ic:full,ic:tiny")
    parser.add_argument("--scenarios", default="BM/1/PIN/CPU,BM/2/PIN/CPU")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--data-count", type=int, default=64)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="backends-")) / "bench.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    scenarios = args.scenarios.split(",")
    for spec in args.apps.split(","):
        app, size = spec.split(":")
        for backend in ("torch", "onnxruntime"):
            cmd = CLI + ["run", *scenarios, "--app", app, "--model-size", size, "--backend",
                         backend, "--requests", str(args.requests), "--data-count",
                         str(args.data_count), "--db", str(db), "--json"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{spec} {backend}: failed: {out.stderr.strip().splitlines()[-1:]}")
    shown = subprocess.run(CLI + ["show", "--json", "--db", str(db)], capture_output=True,
                           text=True, check=True)
    rows = {(s["app"], s["model_size"], s["scenario"], s["backend"]): s
            for s in json.loads(shown.stdout)}
    print(f"mean ms per request ({args.requests} requests per run; db {db})")
    print(f"{'app':<4} {'size':<5} {'scenario':<13} {'backend':<12} {'pre':>8} {'infer':>9} "
          f"{'post':>7} {'E2E':>9}  ort/torch infer")
    for spec in args.apps.split(","):
        app, size = spec.split(":")
        for scenario in scenarios:
            torch_row = rows.get((app, size, scenario, "torch"))
            for backend in ("torch", "onnxruntime"):
                s = rows.get((app, size, scenario, backend))
                if s is None:
                    continue
                ratio = ""
                if backend == "onnxruntime" and torch_row:
                    ratio = f"{s['infer_ms'] / torch_row['infer_ms']:.2f}"
                print(f"{app:<4} {size:<5} {scenario:<13} {backend:<12} {s['pre_ms']:8.2f} "
                      f"{s['infer_ms']:9.2f} {s['post_ms']:7.2f} {s['e2e_mean_ms']:9.2f}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
