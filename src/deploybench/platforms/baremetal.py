"""Bare metal (BM): the worker as a plain process on the host, in a fresh cgroup.

``BM/N/VNL``: a CFS quota of N cores, cores float over the whole host (the paper's
vanilla). ``BM/N/PIN``: a cpuset of N chosen cores. A session is one cgroup (cpu, cpuset,
cpuacct, freezer, and blkio for throttled storage) and one warm worker in it, talking over
stdin/stdout; ``pause`` freezes the cgroup. The worker dies with its owner
(``PR_SET_PDEATHSIG``, set before exec) and at end-of-file of its stdin. The cgroup is
removed when the session closes, whatever happened; each round keeps its cpu.stat delta.
Its footprint is the worker alone: nothing else runs for it.
"""
from __future__ import annotations

import os
import subprocess
import time
from typing import Any, ClassVar

from ..footprint import WORKER, FootprintPart
from ..scenario import CpuMode, Scenario
from ..worker.channel import StreamChannel
from .base import (LaunchFacts, PlatformBase, PlatformError, SessionSetup, lifeline, worker_command,
                   worker_env)
from .cpu import CgroupError, CgroupManager, RunCgroup, limits_for, stat_delta
from .session import WorkerSession, session_folder


class BareMetal(PlatformBase):
    name: ClassVar[str] = "BM"
    supports_io_limits: ClassVar[bool] = True

    def __init__(self, options=None, cgroups: CgroupManager | None = None) -> None:
        super().__init__(options)
        self.cgroups = cgroups or CgroupManager()

    def unavailable_reason(self, host) -> str | None:
        return host.cgroup_problem

    def open(self, scenario: Scenario, setup: SessionSetup) -> "BareMetalSession":
        return BareMetalSession.launch(self, scenario, setup)


class BareMetalSession(WorkerSession):
    proc: subprocess.Popen | None = None
    cgroup: RunCgroup | None = None

    @classmethod
    def launch(cls, platform: BareMetal, scenario: Scenario, setup: SessionSetup) -> "BareMetalSession":
        platform.check_io_limits()
        try:
            limits = limits_for(scenario.cores, scenario.cpu_mode is CpuMode.PIN,
                                list(platform.options.pin_cpus or ()))
        except CgroupError as exc:
            raise PlatformError(str(exc)) from None
        ledger = setup.ledger.open(platform.name, scenario.label)
        facts = LaunchFacts(setup.launch_id, platform.name, "stdio", time.time(),
                            pinned_cpus=limits.cpus if scenario.cpu_mode is CpuMode.PIN else None,
                            details={"limits": limits.to_json()})
        try:
            folder = session_folder(setup.runs_root, setup.launch_id)
        except BaseException:
            ledger.close()
            raise
        ledger.add(folders=[str(folder)])
        session = cls(facts, folder, ledger)
        try:
            session._start(platform, limits, setup)
        except BaseException:
            session.close()
            raise
        return session

    def _after_ready(self) -> None:
        """Storage limits take effect once the worker is ready: ``storage = throttled`` is
        about the data the rounds read. A worker that started behind them read its Python
        modules through them too, and after a cold-cache round (``drop_caches`` evicts the
        modules no live process maps) that launch took 27 s instead of 1.5 s at 150 IOPS,
        which spent the practices study's budget on launches, not rounds."""
        if self.cgroup is None:
            return
        try:
            self.cgroup.throttle_io()  # nothing to set without io_limits
        except CgroupError as exc:
            self._fail_launch(str(exc))

    def _start(self, platform: BareMetal, limits: Any, setup: SessionSetup) -> None:
        # The ledger learns the cgroup's name before it exists, so a kill in between leaks nothing.
        name = f"{self.ledger.entry.session_id}"
        self.ledger.add(cgroups=platform.cgroups.planned_dirs(name, platform.options.io_limits))
        try:
            self.cgroup = platform.cgroups.create(limits, name=name, io_limits=platform.options.io_limits)
        except CgroupError as exc:
            raise PlatformError(str(exc)) from None
        self.facts.details.update({"cgroup": str(next(iter(self.cgroup.dirs.values()))),
                                   "cgroup_version": self.cgroup.version})
        if platform.options.io_limits is not None:
            self.facts.details["io_limits"] = platform.options.io_limits.to_json()
        job_path = self.folder / "job.json"
        setup.prototype.write(job_path)
        self.facts.launch_wall = time.time()
        with open(self.folder / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(
                worker_command(job_path), env=worker_env(setup.prototype.threads),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                preexec_fn=lifeline(self.cgroup.attach), start_new_session=True)
        self.ledger.process(self.proc.pid, "worker")
        # The channel owns duplicates; the Popen's own pipe objects are closed right away so
        # that our copy of the worker's stdin is the only writer left (its end-of-file).
        read_fd, write_fd = os.dup(self.proc.stdout.fileno()), os.dup(self.proc.stdin.fileno())
        self.proc.stdout.close()
        self.proc.stdin.close()
        self.channel = StreamChannel(read_fd, write_fd)

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _exit_detail(self) -> str:
        if self.proc is None:
            return ""
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        return f" (exit status {code})"

    def _kill(self) -> None:
        if self.cgroup is not None and not self.cgroup.removed:
            self.cgroup.kill_all()
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
            self.proc.wait()

    def _release(self) -> None:
        if self.cgroup is not None:
            self.facts.details["cpu_stat_total"] = self.cgroup.stat()
            self.cgroup.remove()

    def _round_snapshot(self) -> Any:
        return self.cgroup.stat() if self.cgroup is not None and not self.cgroup.removed else None

    def _round_facts(self, before: Any, after: Any) -> dict[str, Any]:
        if before is None or after is None:
            return {}
        return {"cpu_stat": stat_delta(before, after)}

    def _footprint_parts(self) -> list[FootprintPart]:
        return [] if self.proc is None else [FootprintPart(WORKER, self.proc.pid, "worker")]

    def pause(self) -> None:
        if self.cgroup is not None and self.alive and not self.paused:
            self.cgroup.freeze()
            self.paused = True

    def resume(self) -> None:
        if self.cgroup is not None and self.paused:
            self.cgroup.thaw()
            self.paused = False
