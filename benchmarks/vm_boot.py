"""Boot times of VM, MVM and VMCN guests, measured on the host clock from console markers.

    .venv/bin/python benchmarks/vm_boot.py [--accel auto|kvm|tcg] [--cores 1] [--mode PIN]

One IC ``tiny`` run of 2 requests per platform. Prints, per platform: launch -> guest user
space (init), -> stage-2 script (worker start), stage-2 -> worker's first line (Python
start; + runc for VMCN), and launch -> first timed query. Under TCG these are functional
figures (emulation): compare platforms with each other, never with native runs.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from deploybench.apps import create_app
from deploybench.datasets.cache import ensure_data
from deploybench.platforms import create_platform
from deploybench.platforms.base import PlatformOptions
from deploybench.scenario import Scenario
from deploybench.sweep import RunSettings, run_one


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accel", default="auto")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--mode", default="PIN")
    parser.add_argument("--platforms", default="VM,MVM,VMCN")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_data(create_app("ic"), 4, 0, out_dir=Path(tmp) / "data")
        print(f"{'scenario':<16} {'accel':<5} {'user space':>10} {'worker start':>12} "
              f"{'worker launch':>13} {'first query':>11}  (seconds from QEMU launch)")
        for name in args.platforms.split(","):
            scenario = Scenario.parse(f"{name}/{args.cores}/{args.mode}/CPU", app="ic",
                                      model_size="tiny", requests=2)
            platform = create_platform(scenario.platform, PlatformOptions(accel=args.accel))
            record = run_one(scenario, platform, data_dir=data, settings=RunSettings(timeout_s=600))
            f = record.platform
            if record.status != "ok":
                print(f"{scenario.name:<16} {record.status}: {record.error}")
                continue
            print(f"{scenario.name:<16} {f['accel']:<5} {f['boot_userspace_s']:>10.2f} "
                  f"{f['worker_start_s']:>12.2f} {f.get('worker_launch_s', float('nan')):>13.2f} "
                  f"{f['first_query_s']:>11.2f}")


if __name__ == "__main__":
    main()
