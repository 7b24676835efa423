#!/usr/bin/env bash
# The device check (README: "The device check"): doctor, then Fig. 5 (GPU against CPU, E2E and
# inference only), the CHR series (VNL against PIN, 2 to 16 cores) and CN VNL/PIN, each step
# under one time budget, results in $OUT (default ./device-out). On the lent GPU machine:
#   bash scripts/fetch_device_wheels.sh          # here, once: device-carry/ (wheels, runc)
#   run(command="bash scripts/device_check.sh", carry=["device-carry"], timeout_s=540)
# Here, on the CPU with tiny models (the integration test does this):
#   bash scripts/device_check.sh --dry-run
# Options: --out DIR, --budget-s S, --only STEP-PREFIX,..., --python PY (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[[ " $* " == *" --dry-run "* && -x .venv/bin/python ]] && PY=.venv/bin/python
exec "$PY" scripts/device_check.py "$@"
