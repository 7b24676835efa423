#!/usr/bin/env bash
# One idempotent set-up for everything (demo, tests, CI): Debian packages, a .venv,
# torch 2.13.0 CPU (from this machine's local wheel; never a CUDA build), then the project.
set -euo pipefail
cd "$(dirname "$0")/.."

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
if ! .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  echo "install: torch 2.13.0 (CPU)"
  "${VPIP[@]}" install "torch==2.13.0" 2> >(grep -v "^WARNING: Location" >&2)
fi
stamp=.venv/.deploybench-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "install: deploybench and its dependencies"
  "${VPIP[@]}" install -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
  touch "$stamp"
fi
