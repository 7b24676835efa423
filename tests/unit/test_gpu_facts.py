"""GPU facts without a GPU: nvidia-smi, the driver and torch's build are faked; what is
pinned is what doctor, install.sh --gpu and the worker make of them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploybench.gpu import (CUDA_VARIANTS, TorchBuild, TorchCuda, choose_torch_wheel, gpu_checks,
                             gpu_scenario_problem, parse_torch_version_file, probe_torch_cuda,
                             torch_build)
from deploybench.worker.gpu import (CudaUnavailable, SmiGpu, SmiReport, format_cuda_version,
                                    gpu_environment, init_cuda, parse_proc_driver_version,
                                    parse_smi_csv, parse_smi_cuda_version, query_nvidia_smi)

SMI_CSV = ("0, NVIDIA H200, GPU-1234, 570.86.15, 143771, 1\n"
           "1, NVIDIA H200, GPU-5678, 570.86.15, 143771, [N/A]\n")
SMI_BANNER = ("| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |\n")


def fake_smi(csv=SMI_CSV, banner=SMI_BANNER, rc=0, stderr=""):
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        out = csv if any(a.startswith("--query-gpu") for a in cmd) else banner
        return subprocess.CompletedProcess(cmd, rc, out, stderr)
    return run, calls


def test_nvidia_smi_answers_become_gpus_and_the_drivers_cuda_version():
    run, calls = fake_smi()
    report = query_nvidia_smi(run=run, which=lambda name: "/usr/bin/nvidia-smi")
    assert report.problem is None and report.cuda_version == "12.8"
    assert report.gpus[0] == SmiGpu(0, "NVIDIA H200", "GPU-1234", "570.86.15", 143771, 1)
    assert report.gpus[1].memory_used_mib is None  # "[N/A]" is not a number
    assert report.driver_version == "570.86.15"
    assert "--format=csv,noheader,nounits" in calls[0]


def test_no_nvidia_smi_or_a_failing_one_is_a_reason_not_an_exception():
    assert "not found" in query_nvidia_smi(which=lambda name: None).problem
    run, _ = fake_smi(rc=9, stderr="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver")
    report = query_nvidia_smi(run=run, which=lambda name: "/x/nvidia-smi")
    assert report.gpus == () and "couldn't communicate" in report.problem


def test_version_parsers():
    assert parse_smi_cuda_version(SMI_BANNER) == "12.8" and parse_smi_cuda_version("nothing") is None
    assert parse_smi_csv("garbage\n") == ()
    assert parse_proc_driver_version(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024") == "550.54.15"
    assert parse_proc_driver_version(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build") == "570.86.15"
    assert format_cuda_version(12040) == "12.4" and format_cuda_version(13000) == "13.0"


def test_torch_build_is_read_from_its_version_file_without_importing_it(tmp_path):
    text = "__version__ = '2.13.0+cu128'\ndebug = False\ncuda: Optional[str] = '12.8'\ngit_version = 'x'\n"
    assert parse_torch_version_file(text) == TorchBuild("2.13.0+cu128", "12.8")
    assert parse_torch_version_file("__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\n").cuda is None
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "version.py").write_text(text)
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path / "torch")])
    assert torch_build(find_spec=lambda name: spec).cuda == "12.8"
    assert torch_build(find_spec=lambda name: None) == TorchBuild(None, None)
    # and the real one: this project's CPU build, found without `import torch`
    code = "import sys; from deploybench.gpu import torch_build; b = torch_build(); print(b.version, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith("2.") and out[1] == "False"


@pytest.mark.parametrize("driver_cuda, variant", [("12.6", "cu126"), ("12.7", "cu126"), ("12.8", "cu128"),
                                                  ("12.9", "cu128"), ("13.0", "cu130"), ("13.2", "cu130")])
def test_the_cuda_wheel_is_the_newest_variant_the_driver_supports(driver_cuda, variant):
    choice = choose_torch_wheel(driver_cuda, env={})
    assert choice.variant == variant
    assert choice.requirement == f"torch==2.13.0+{variant}"
    assert choice.index_url == f"https://download.pytorch.org/whl/{variant}"


def test_an_old_driver_or_no_driver_keeps_the_cpu_build_with_a_reason():
    old = choose_torch_wheel("11.8", env={})
    assert old.requirement is None and "update the NVIDIA driver" in old.reason and "CPU build" in old.reason
    none = choose_torch_wheel(None, problem="nvidia-smi not found: no NVIDIA driver is installed",
                              env={"DEPLOYBENCH_TORCH_CUDA": "cu128"})
    assert none.requirement is None and none.reason.startswith("nvidia-smi not found")
    assert choose_torch_wheel(None, env={}).requirement is None


def test_the_variant_and_the_index_can_be_overridden():
    forced = choose_torch_wheel("13.0", env={"DEPLOYBENCH_TORCH_CUDA": "cu126",
                                             "DEPLOYBENCH_TORCH_INDEX": "file:///mirror/cu126"})
    assert forced.requirement == "torch==2.13.0+cu126" and forced.index_url == "file:///mirror/cu126"
    assert choose_torch_wheel("13.0", env={"DEPLOYBENCH_TORCH_CUDA": "cu999"}).requirement is None
    assert [v for v, _ in CUDA_VARIANTS] == sorted(v for v, _ in CUDA_VARIANTS)


def test_torch_wheel_command_on_a_host_without_a_driver_keeps_cpu_in_one_line(tmp_path):
    env = {"PATH": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    out = subprocess.run([sys.executable, "-m", "deploybench.gpu", "torch-wheel"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == ("nvidia-smi not found: no NVIDIA driver is installed: "
                                  "keeping the CPU build of torch")


def test_doctor_lines_without_a_gpu_say_why():
    checks = gpu_checks(SmiReport(problem="nvidia-smi not found: no NVIDIA driver is installed"),
                        TorchBuild("2.13.0+cpu", None), probe=lambda: pytest.fail("must not probe"),
                        proc_names=lambda: [])
    by_name = {c.name: c for c in checks}
    assert list(by_name) == ["gpu", "gpu driver", "torch cuda"]
    assert not any(c.status.value == "ok" for c in checks)
    assert "GPU scenarios are unavailable" in by_name["gpu"].detail
    assert "CPU-only build" in by_name["torch cuda"].detail and "install.sh --gpu" in by_name["torch cuda"].detail


def test_doctor_lines_with_a_gpu_name_it_the_driver_and_what_torch_sees():
    run, _ = fake_smi()
    smi = query_nvidia_smi(run=run, which=lambda name: "/usr/bin/nvidia-smi")
    checks = gpu_checks(smi, TorchBuild("2.13.0+cu128", "12.8"),
                        probe=lambda: TorchCuda(True, "torch 2.13.0+cu128 (CUDA 12.8) sees 2 GPU(s): NVIDIA H200"))
    by_name = {c.name: c for c in checks}
    assert all(c.status.value == "ok" for c in checks)
    assert "NVIDIA H200 (143771 MiB" in by_name["gpu"].detail
    assert by_name["gpu driver"].detail == "driver 570.86.15, CUDA 12.8"
    assert "sees 2 GPU(s)" in by_name["torch cuda"].detail


def test_a_driver_without_nvidia_smi_still_names_its_gpus(tmp_path):
    from deploybench.worker.gpu import proc_gpu_names

    gpu = tmp_path / "0000:18:00.0"
    gpu.mkdir()
    (gpu / "information").write_text("Model: \t\t NVIDIA H200\nIRQ:   \t\t 42\nGPU UUID: \t GPU-1\n")
    assert proc_gpu_names(tmp_path) == ["NVIDIA H200"]
    assert proc_gpu_names(tmp_path / "absent") == []
    checks = gpu_checks(SmiReport(problem="nvidia-smi not found: no NVIDIA driver is installed"),
                        TorchBuild("2.13.0+cu128", "12.8"), proc_names=lambda: ["NVIDIA H200"],
                        probe=lambda: TorchCuda(True, "torch 2.13.0+cu128 (CUDA 12.8) sees 1 GPU(s): NVIDIA H200"))
    by_name = {c.name: c for c in checks}
    assert by_name["gpu"].status.value == "ok"
    assert by_name["gpu"].detail.startswith("NVIDIA H200 (from /proc/driver/nvidia")
    assert by_name["torch cuda"].status.value == "ok"


def test_the_torch_probe_runs_in_a_child_and_reports_failures():
    answer = json.dumps({"version": "2.13.0+cu128", "cuda": "12.8", "ok": False, "count": 0, "name": None})
    ran = probe_torch_cuda(run=lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, answer + "\n", ""))
    assert not ran.sees_gpu and ran.detail == "torch 2.13.0+cu128 (CUDA 12.8) sees no GPU"
    broken = probe_torch_cuda(run=lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ImportError: libcuda.so.1"))
    assert "libcuda.so.1" in broken.detail
    # the real child on this host: a CPU build sees no GPU (and the doctor process never imports torch)
    assert not probe_torch_cuda().sees_gpu


def test_a_gpu_scenario_needs_a_gpu_and_a_cuda_build_of_torch():
    assert "no GPU on this host" in gpu_scenario_problem([], TorchBuild("2.13.0+cpu", None))
    assert "CPU-only build" in gpu_scenario_problem(["NVIDIA H200"], TorchBuild("2.13.0+cpu", None))
    assert gpu_scenario_problem(["NVIDIA H200"], TorchBuild("2.13.0+cu128", "12.8")) is None


# -- the worker's side: CUDA context timed apart, the GPU's facts stored with the run -------
class FakeTorch:
    """torch with a fake CUDA: every call is recorded; a clock advances on context creation."""

    def __init__(self, cuda_build="12.8", available=True):
        self.__version__ = "2.13.0+cu128" if cuda_build else "2.13.0+cpu"
        self.version = SimpleNamespace(cuda=cuda_build)
        self.calls: list[str] = []
        self.now = 100.0
        calls = self.calls
        outer = self

        class Cuda:
            @staticmethod
            def is_available():
                return available

            @staticmethod
            def init():
                calls.append("init")

            @staticmethod
            def synchronize(device=None):
                calls.append(f"synchronize:{device}")

            @staticmethod
            def current_device():
                return 0

            get_device_name = staticmethod(lambda i: "NVIDIA H200")
            get_device_capability = staticmethod(lambda i: (9, 0))
            get_device_properties = staticmethod(lambda i: SimpleNamespace(total_memory=150754820096))
            memory_allocated = staticmethod(lambda i: 3 * 2 ** 20)
            memory_reserved = staticmethod(lambda i: 20 * 2 ** 20)
            max_memory_allocated = staticmethod(lambda i: 5 * 2 ** 20)
            device_count = staticmethod(lambda: 1)

        self.cuda = Cuda
        self.backends = SimpleNamespace(cudnn=SimpleNamespace(is_available=lambda: True, version=lambda: 91002))

        def empty(n, device):
            calls.append(f"empty:{device}")
            outer.now += 1.5  # the first allocation creates the context
        self.empty = empty


def test_init_cuda_creates_the_context_and_times_it():
    torch = FakeTorch()
    seconds = init_cuda(torch, "cuda", clock=lambda: torch.now)
    assert seconds == pytest.approx(1.5)
    assert torch.calls == ["init", "empty:cuda", "synchronize:cuda"]


@pytest.mark.parametrize("build, available, message", [
    (None, False, "is a CPU-only build: install the CUDA build (scripts/install.sh --gpu)"),
    ("12.8", False, "(CUDA 12.8) sees no GPU"),
])
def test_init_cuda_refuses_in_one_line_when_torch_cannot_use_cuda(build, available, message):
    with pytest.raises(CudaUnavailable) as exc:
        init_cuda(FakeTorch(build, available), "cuda")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_gpu_environment_names_the_gpu_driver_cuda_and_memory_in_use(monkeypatch):
    import deploybench.worker.gpu as worker_gpu

    # no /proc/driver/nvidia and no libcuda here: the driver facts come from nvidia-smi
    monkeypatch.setattr(worker_gpu, "proc_driver_version", lambda: None)
    monkeypatch.setattr(worker_gpu, "driver_cuda_version", lambda: None)
    smi = SmiReport((SmiGpu(0, "NVIDIA H200", "GPU-1", "570.86.15", 143771, 812),), "12.8")
    env = gpu_environment(FakeTorch(), "cuda", smi=smi)
    assert env["name"] == "NVIDIA H200" and env["capability"] == "9.0"
    assert env["memory_total_mib"] == 143771 and env["torch_cuda_version"] == "12.8"
    assert env["driver_version"] == "570.86.15" and env["driver_cuda_version"] == "12.8"
    assert (env["memory_allocated_mib"], env["memory_reserved_mib"], env["max_memory_allocated_mib"]) == (3.0, 20.0, 5.0)
    assert env["smi_memory_used_mib"] == 812 and env["cudnn_version"] == 91002


def test_a_gpu_job_on_a_cpu_build_fails_to_load_in_one_line_with_the_fix(tmp_path, ic_data):
    from deploybench.worker.__main__ import load
    from deploybench.worker.gpu import CudaUnavailable
    from deploybench.worker.job import WorkerJob

    job = WorkerJob(app="ic", data_dir=str(ic_data), result_path=str(tmp_path / "r.json"),
                    device="cuda", requests=2)
    with pytest.raises(CudaUnavailable, match="torch 2.13.0.cpu is a CPU-only build"):
        load(job, 0.0)


def test_gpu_scenarios_reach_the_worker_with_their_device_and_batch_size(tmp_path):
    from deploybench.execute import RunSettings, build_job
    from deploybench.scenario import Scenario

    scenario = Scenario.parse("BM/4/PIN/GPU", app="ic", model_size="full", batch_size=8)
    job = build_job(scenario, data_dir=tmp_path, settings=RunSettings())
    assert (job.device, job.batch_size, job.threads) == ("cuda", 8, 4)


def test_doctor_answers_about_torch_and_cuda_without_importing_torch():
    code = ("import sys; from deploybench.doctor import doctor_checks; "
            "names = [c.name for c in doctor_checks()]; "
            "print(all(n in names for n in ('gpu', 'gpu driver', 'torch cuda', 'gpu containers')), "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["True", "False"]
