"""The device check's dry run on this host (CPU, tiny models, N capped at the host's cores):
the same script the GPU machine runs, end to end, with real BM and CN platforms."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_dry_run_measures_stores_exports_and_reports_within_its_budget(tmp_path, needs_cgroups):
    out = tmp_path / "device-out"
    proc = subprocess.run(["bash", "scripts/device_check.sh", "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    text = proc.stdout
    assert proc.returncode == 0, text[-3000:] + proc.stderr[-2000:]
    # the host facts the issue asks for, and the skipped GPU scenarios with their reason
    assert "\nkvm: /dev/kvm" in text and "\ncgroups: " in text
    assert "skip every GPU scenario (BM/N/PIN/GPU, CN/N/PIN/GPU): dry run: no GPU here" in text
    assert re.search(r"\n  ok +platform BM", text)  # doctor ran
    # the store, the JSON-lines export with its manifest, the HTML report, the summary
    assert (out / "deploybench.db").is_file()
    runs = [json.loads(line) for line in (out / "reference" / "runs.jsonl").read_text().splitlines()]
    ok = [r for r in runs if r["status"] == "ok"]
    assert ok, runs
    assert {r["scenario"] for r in ok} >= {f"BM/{min(2, os.cpu_count())}/PIN/CPU"}
    assert any(r["inference_only"] for r in ok) and any(not r["inference_only"] for r in ok)
    manifest = json.loads((out / "reference" / "reference.json").read_text())
    assert manifest["schema"] == 1 and manifest["command"] == "bash scripts/device_check.sh --dry-run"
    assert "not reference data" in manifest["notes"]
    assert '<section id="gpu">' in (out / "reference" / "report.html").read_text()
    summary = (out / "summary.txt").read_text()
    assert "VNL/PIN BM/" in summary
    # the reference set it wrote is one `report --reference` reads
    from deploybench.reference import load_reference

    assert load_reference(out / "reference").rows
    # nothing left behind: the temporary site is gone
    assert "done in" in text.splitlines()[-1]


def test_install_gpu_without_a_driver_keeps_the_cpu_build_in_one_line(tmp_path):
    env = dict(os.environ, PATH=":".join(p for p in os.environ["PATH"].split(":")
                                         if not (Path(p) / "nvidia-smi").exists()))
    proc = subprocess.run(["bash", "scripts/install.sh", "--gpu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines() if "--gpu" in l]
    assert lines == ["install: --gpu: nvidia-smi not found: no NVIDIA driver is installed: keeping the CPU build of torch"]
    version = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version.startswith("2.13.0") and "+cu" not in version


def test_install_gpu_with_a_driver_asks_for_the_matching_cuda_wheel(tmp_path):
    """A fake nvidia-smi (driver with CUDA 12.8) and an empty local index: install.sh asks for
    torch==2.13.0+cu128 there, finds nothing, fails, and leaves the CPU build in place."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nif [ -n \"$1\" ]; then echo '0, NVIDIA H200, GPU-1, 570.86.15, 143771, 1'; "
                   "else echo '| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: 12.8 |'; fi\n")
    smi.chmod(0o755)
    index = tmp_path / "index"
    index.mkdir()
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", DEPLOYBENCH_TORCH_INDEX=index.as_uri(),
               PIP_FIND_LINKS="", PIP_EXTRA_INDEX_URL="", PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="0")
    proc = subprocess.run(["bash", "scripts/install.sh", "--gpu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert f"install: torch==2.13.0+cu128 from {index.as_uri()} (the driver supports CUDA 12.8" in proc.stdout
    assert proc.returncode != 0 and "torch==2.13.0+cu128" in proc.stderr
    version = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "2.13.0+cpu"
