#!/usr/bin/env bash
# One idempotent set-up for everything (demo, tests, CI): Debian packages, a .venv,
# torch 2.13.0 CPU (from this machine's local wheel; never a CUDA build), then the project.
#
#   bash scripts/install.sh --gpu    (or DEPLOYBENCH_GPU=1): the CUDA build of torch 2.13.0
#   instead, when an NVIDIA driver is present (nvidia-smi works). The wheel variant follows
#   the driver's CUDA version (python -m deploybench.gpu torch-wheel; README, GPUs). Without
#   a driver it says why in one line and keeps the CPU build. CI never passes --gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=${DEPLOYBENCH_GPU:-0}
for arg in "$@"; do
  case $arg in
    --gpu) GPU=1 ;;
    *) echo "install: unknown option $arg (use --gpu or nothing)" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(qemu-system-x86 qemu-utils runc crun busybox-static e2fsprogs cpio xz-utils
              espeak-ng chromium docker.io podman)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install: apt packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "install: creating .venv"
  "$PY" -m venv .venv
fi
VPIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
cuda_torch=""
if [[ $GPU == 1 ]]; then
  # "torch==2.13.0+cuXYZ INDEX_URL why", or a one-line reason on stderr (CPU build kept)
  if choice=$(PYTHONPATH=src .venv/bin/python -m deploybench.gpu torch-wheel 2>.venv/.gpu-reason); then
    read -r cuda_torch cuda_index cuda_why <<<"$choice"
  else
    echo "install: --gpu: $(cat .venv/.gpu-reason)"
  fi
  rm -f .venv/.gpu-reason
fi
if [[ -n $cuda_torch ]]; then
  want=${cuda_torch#torch==}
  if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__ == '$want' else 1)" 2>/dev/null; then
    echo "install: $cuda_torch from $cuda_index ($cuda_why)"
    "${VPIP[@]}" install "$cuda_torch" --index-url "$cuda_index" 2> >(grep -v "^WARNING: Location" >&2)
  fi
elif ! .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  echo "install: torch 2.13.0 (CPU)"
  "${VPIP[@]}" install "torch==2.13.0" 2> >(grep -v "^WARNING: Location" >&2)
fi
stamp=.venv/.deploybench-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "install: deploybench and its dependencies"
  "${VPIP[@]}" install -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
  touch "$stamp"
fi
