"""scripts/device_check.py's parts: the plan for the GPU machine and for this host, the
wheel unpacking of the temporary site, the deadline on every step, the summary."""
from __future__ import annotations

import importlib.util
import json
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dc():
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "scripts" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def gpu_host(dc, **changes):
    values = dict(cores=16, gpu="NVIDIA H200", gpu_reason="", bm_reason=None, cn_reason=None)
    values.update(changes)
    return dc.HostView(**values)


def test_the_device_plan_measures_fig5_then_chr_then_cn_then_fig5_at_16(dc):
    steps, skips = dc.plan(dc.DEVICE, gpu_host(dc))
    names = [s.name for s in steps]
    assert names[:6] == [f"fig5-n4-{m}-{a}" for m in ("e2e", "inference-only") for a in ("ic", "nlp", "rs")]
    assert names[6:9] == ["chr-bm-vnl-pin", "chr-cn-vnl-pin", "cn-gpu"]
    assert names[9:] == [f"fig5-n16-{m}-{a}" for m in ("e2e", "inference-only") for a in ("ic", "nlp", "rs")]
    assert skips == []
    first = steps[0]
    assert first.scenarios == ("BM/4/PIN/GPU", "BM/4/PIN/CPU") and (first.workload.app, first.workload.size) == ("ic", "full")
    assert steps[3].inference_only and "--inference-only" in steps[3].argv(dc.DEVICE, Path("x.db"))
    chr_step = steps[6]
    assert chr_step.scenarios == tuple(f"BM/{n}/{m}/CPU" for n in (2, 4, 8, 16) for m in ("VNL", "PIN"))
    assert steps[7].scenarios == ("CN/2/VNL/CPU", "CN/2/PIN/CPU", "CN/16/VNL/CPU", "CN/16/PIN/CPU")
    argv = first.argv(dc.DEVICE, Path("/o/deploybench.db"))
    assert argv[:3] == ["run", "BM/4/PIN/GPU", "BM/4/PIN/CPU"] and "--repeat" in argv and "/o/deploybench.db" in argv
    # the shares of the budget fit in it with the reserve (the rest is skipped, in priority order)
    assert all(s.min_s < s.max_s for s in steps)


def test_the_dry_run_plan_caps_cores_and_skips_gpu_scenarios_with_the_reason(dc):
    host = dc.HostView(cores=2, gpu=None, gpu_reason="dry run: no GPU here", bm_reason=None, cn_reason=None)
    steps, skips = dc.plan(dc.DRY, host)
    assert [s.name for s in steps] == [f"fig5-n2-{m}-{a}" for m in ("e2e", "inference-only") for a in ("ic", "nlp", "rs")] + [
        "chr-bm-vnl-pin", "chr-cn-vnl-pin"]
    assert all("GPU" not in sc for s in steps for sc in s.scenarios)
    assert any("skip every GPU scenario" in line and "dry run: no GPU here" in line for line in skips)
    assert any("capped at this host's 2 cores: N = 2" in line for line in skips)
    assert steps[6].scenarios == ("BM/2/VNL/CPU", "BM/2/PIN/CPU")


def test_unusable_platforms_are_skipped_with_their_reasons(dc):
    steps, skips = dc.plan(dc.DEVICE, gpu_host(dc, bm_reason="cgroup v2 at /sys/fs/cgroup is not writable",
                                             cn_reason="runc is not installed"))
    assert steps == []
    assert "skip every BM step: cgroup v2 at /sys/fs/cgroup is not writable" in skips
    assert "skip CN/N/VNL against CN/N/PIN: runc is not installed" in skips


@pytest.mark.parametrize("name, fits", [
    ("pydantic-2.14.4-py3-none-any.whl", True),
    ("pydantic_core-2.50.5-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
    ("pydantic_core-2.50.5-cp311-cp311-manylinux2014_x86_64.whl", False),
    ("mlcommons_loadgen-6.0.17-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", True),
    ("cryptography-46.0.0-cp311-abi3-manylinux_2_28_x86_64.whl", True),
    ("thing-1.0-cp312-cp312-macosx_11_0_arm64.whl", False),
    ("not-a-wheel.zip", False),
])
def test_wheels_are_chosen_by_their_tags(dc, name, fits):
    assert dc.wheel_fits(name, (3, 12)) is fits


def test_a_wheel_unpacks_into_the_site_with_its_metadata_and_data_purelib(dc, tmp_path):
    wheel = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("demo_pkg/__init__.py", "VALUE = 42\n")
        z.writestr("demo_pkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
        z.writestr("demo_pkg-1.0.data/purelib/demo_extra.py", "X = 1\n")
        z.writestr("demo_pkg-1.0.data/scripts/demo", "#!/bin/sh\n")
    site = tmp_path / "site"
    dc.install_wheel(wheel, site)
    assert (site / "demo_pkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert (site / "demo_extra.py").exists() and not (site / "demo").exists()
    sys.path.insert(0, str(site))
    try:
        from importlib.metadata import version

        assert version("demo-pkg") == "1.0"
    finally:
        sys.path.remove(str(site))
    bad = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.py", "")
    with pytest.raises(ValueError, match="unsafe path"):
        dc.install_wheel(bad, site)


def test_a_step_over_its_time_is_interrupted_then_killed_with_its_children(dc, tmp_path):
    log = dc.Log(tmp_path / "log.txt")
    # a child that ignores Ctrl-C and has a child of its own
    script = "trap '' INT; sleep 60 & echo started; wait"
    t = time.monotonic()
    status, output = dc.call(["sh", "-c", script], 1.0, log, {"PATH": "/usr/bin:/bin"}, grace_s=1.0)
    assert status is None and time.monotonic() - t < 10
    assert "started" in output
    text = (tmp_path / "log.txt").read_text()
    assert "interrupting" in text and "killing it and 1 descendants" in text
    status, output = dc.call(["sh", "-c", "echo fine"], 10, log, {"PATH": "/usr/bin:/bin"})
    assert (status, output) == (0, "fine")


def test_the_summary_gives_speedups_and_vnl_pin_ratios(dc, tmp_path):
    def run(scenario, e2e, infer, only=False, status="ok", app="ic"):
        return {"scenario": scenario, "app": app, "model_size": "full", "inference_only": only,
                "status": status, "e2e_mean_ms": e2e, "infer_ms": infer}
    runs = [run("BM/4/PIN/GPU", 10.0, 2.0), run("BM/4/PIN/GPU", 12.0, 2.0), run("BM/4/PIN/CPU", 44.0, 36.0),
            run("BM/4/PIN/GPU", 3.0, 3.0, only=True), run("BM/4/PIN/CPU", 30.0, 30.0, only=True),
            run("BM/2/VNL/CPU", 60.0, 50.0), run("BM/2/PIN/CPU", 50.0, 40.0), run("BM/2/PIN/CPU", 1.0, 1.0, status="failed"),
            run("CN/16/VNL/CPU", 20.0, 15.0), run("CN/16/PIN/CPU", 10.0, 8.0)]
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    lines = dc.summarise(path)
    assert "GPU speedup BM/4/PIN/GPU vs CPU, ic full, E2E: 4.00x (CPU 44.00 ms, GPU 11.00 ms per request, 2+1 runs, inference phase 18.00x)" in lines
    assert any(line.startswith("GPU speedup BM/4/PIN/GPU vs CPU, ic full, inference-only: 10.00x") for line in lines)
    assert "VNL/PIN BM/2/CPU, ic full: 1.200 (VNL 60.00 ms, PIN 50.00 ms, 1+1 runs)" in lines
    assert any(line.startswith("VNL/PIN CN/16/CPU, ic full: 2.000") for line in lines)
    assert dc.summarise(tmp_path / "absent.jsonl") == ["no export: nothing to summarise"]
