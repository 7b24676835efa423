"""Bare metal (BM): the worker as a plain process on the host, in a fresh cgroup.

``BM/N/VNL``: a CFS quota of N cores, cores float over the whole host (the paper's
vanilla). ``BM/N/PIN``: a cpuset of N chosen cores. The cgroup is removed after the run
whatever happens, and its cpu.stat is kept with the run.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from ..scenario import CpuMode, Processor, Scenario
from ..host import HostFacts
from ..worker.job import WorkerJob
from .base import PlatformError, PlatformOptions, RunOutcome, outcome_from, run_process, worker_env
from .cpu import CgroupError, CgroupManager, limits_for


def worker_command(job_path: Path, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "deploybench.worker", "--job", str(job_path)]


def gpu_reason(scenario: Scenario, host: HostFacts) -> str | None:
    if scenario.processor is Processor.GPU:
        from ..gpu import gpu_scenario_problem  # no GPU, or torch without CUDA

        return gpu_scenario_problem(host.gpus)
    return None


class BareMetal:
    name: ClassVar[str] = "BM"
    supports_io_limits: ClassVar[bool] = True  # applies PlatformOptions.io_limits

    def __init__(self, options: PlatformOptions | None = None,
                 cgroups: CgroupManager | None = None) -> None:
        self.options = options or PlatformOptions()
        self.cgroups = cgroups or CgroupManager()

    def unavailable_reason(self, host: HostFacts) -> str | None:
        return host.cgroup_problem

    def scenario_problem(self, scenario: Scenario, host: HostFacts) -> str | None:
        """Why this platform cannot run this particular scenario here (None = it can)."""
        return gpu_reason(scenario, host)

    def run(self, scenario: Scenario, job: WorkerJob, timeout_s: float) -> RunOutcome:
        try:
            limits = limits_for(scenario.cores, scenario.cpu_mode is CpuMode.PIN,
                                list(self.options.pin_cpus or ()))
            cgroup = self.cgroups.create(limits, io_limits=self.options.io_limits)
        except CgroupError as exc:
            raise PlatformError(str(exc)) from None
        run_dir = Path(job.result_path).parent
        job_path = run_dir / "job.json"
        job.write(job_path)
        facts = {"platform": self.name, "cgroup": str(next(iter(cgroup.dirs.values()))),
                 "cgroup_version": cgroup.version, "limits": limits.to_json()}
        if self.options.io_limits is not None:
            facts["io_limits"] = self.options.io_limits.to_json()
        try:
            proc = run_process(worker_command(job_path), env=worker_env(job.threads),
                               timeout_s=timeout_s, stdout=run_dir / "stdout.txt",
                               stderr=run_dir / "stderr.txt", preexec_fn=cgroup.attach,
                               kill=lambda _p: cgroup.kill_all())
            facts["cpu_stat"] = cgroup.stat()
        finally:
            cgroup.remove()
        return outcome_from(proc, job, run_dir / "stderr.txt", facts, timeout_s)
