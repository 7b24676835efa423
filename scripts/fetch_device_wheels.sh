#!/usr/bin/env bash
# Prepare device-carry/, what scripts/device_check.sh needs on the lent GPU machine (Python 3.12,
# CUDA torch (manylinux_2_28 wheels, so glibc >= 2.28 there), numpy, pillow, scipy, matplotlib, jinja2, rich, typer, tokenizers, onnxruntime,
# pyarrow, psutil; no package registry, no runc):
#
#   device-carry/wheels/  cp312 manylinux wheels of what deploybench imports beyond that list,
#                         at the versions this checkout's .venv has (the versions tests ran with)
#   device-carry/runc/    Debian's runc and the libseccomp it links, its RPATH set to $ORIGIN
#                         (runc re-executes itself as /proc/self/exe, so LD_LIBRARY_PATH would
#                         not reach its init; the RPATH does). It needs glibc >= 2.34 there.
#
# Run it here (PyPI and Debian are reachable), then carry the folder:
#   run(command="bash scripts/device_check.sh", carry=["device-carry"])
# The carry limit is 64 MiB; the folder is about 15 MiB. onnx is left out: only the
# onnxruntime backend's export needs it, and the device check uses torch.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-device-carry}
PY=.venv/bin/python
[[ -x $PY ]] || { echo "fetch: run scripts/install.sh first (the versions come from .venv)" >&2; exit 2; }

PACKAGES=(mlcommons-loadgen pydantic pydantic-core annotated-types typing-extensions
          typing-inspection threadpoolctl qemu.qmp docker requests urllib3 idna
          charset-normalizer certifi)
pins=()
for name in "${PACKAGES[@]}"; do
  pins+=("$name==$("$PY" -c "from importlib.metadata import version; print(version('$name'))")")
done
rm -rf "$OUT/wheels"
mkdir -p "$OUT/wheels"
echo "fetch: ${pins[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 \
  --platform any -d "$OUT/wheels" "${pins[@]}"
ls "$OUT/wheels"

RUNC=$(command -v runc || true)
if [[ -z $RUNC ]]; then
  echo "fetch: no runc here (apt-get install runc): CN will be skipped on the device" >&2
else
  command -v patchelf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patchelf >/dev/null; }
  rm -rf "$OUT/runc"
  mkdir -p "$OUT/runc"
  cp "$RUNC" "$OUT/runc/runc"
  seccomp=$(ldd "$RUNC" | awk '/libseccomp/ {print $3}')
  [[ -n $seccomp ]] && cp -L "$seccomp" "$OUT/runc/$(basename "$seccomp")"
  patchelf --set-rpath '$ORIGIN' "$OUT/runc/runc"
  echo "fetch: runc $("$OUT/runc/runc" --version | head -1 | awk '{print $3}') with $(ls "$OUT/runc" | tr '\n' ' ')"
  ldd "$OUT/runc/runc" | sed 's/^/  /'
fi
du -sh "$OUT"
