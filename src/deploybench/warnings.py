"""Typed warnings: every warning a run can carry is a member of :class:`WarningCode`, and its
hint (what to do about it) is looked up here when it is shown, never stored with the run.

A stored warning is ``{"code": "...", "message": "..."}``: the message says what happened in
this run, the hint (``hint(code)``) says how to fix it, so a better hint reaches old runs too
(hyperfine's ``src/output/warnings.rs`` does the same). This module imports nothing of the
project: the worker, inside a platform, uses it as well.
"""
from __future__ import annotations

from enum import Enum


class WarningCode(str, Enum):
    HIGH_VARIANCE = "high_variance"
    THREADS_OVER_BUDGET = "threads_over_budget"
    EMULATED_VM = "emulated_vm"
    HOST_BUSY = "host_busy"
    CGROUP_THROTTLED = "cgroup_throttled"
    AFFINITY_MISMATCH = "affinity_mismatch"
    FEW_SAMPLES = "few_samples"
    CONDITION_UNMET = "condition_unmet"
    CONCURRENT_RUN = "concurrent_run"
    LOADGEN_INVALID = "loadgen_invalid"
    CONDITION_INEFFECTIVE = "condition_ineffective"


HINTS: dict[WarningCode, str] = {
    WarningCode.HIGH_VARIANCE: "repeat more runs or quiet the host; the CI is wide",
    WarningCode.THREADS_OVER_BUDGET: "size thread pools to the CPU budget (OMP_NUM_THREADS, "
    "torch.set_num_threads), not to os.cpu_count()",
    WarningCode.EMULATED_VM: "TCG emulation: times are not comparable with native runs; use a "
    "host where KVM works",
    WarningCode.HOST_BUSY: "other processes used the CPU during the run; stop them or use "
    "host_load=busy deliberately",
    WarningCode.CGROUP_THROTTLED: "the CFS quota throttled the run; pin cores (PIN) or give "
    "more quota",
    WarningCode.AFFINITY_MISMATCH: "the worker did not get the cores it was given; check the "
    "platform's cpuset",
    WarningCode.FEW_SAMPLES: "too few requests for stable percentiles; use --requests 100 or more",
    WarningCode.CONDITION_UNMET: "a host condition the study asked for (busy, cold cache, "
    "throttled storage) could not be applied; run as root or change the study",
    WarningCode.CONCURRENT_RUN: "another deploybench session measured on this host at the same "
    "time; run studies one after the other (drop --allow-concurrent)",
    WarningCode.LOADGEN_INVALID: "LoadGen judged the run INVALID (its latency bound or arrival "
    "rate was not met): lower --target-qps, or find the rate it sustains with `deploybench capacity`",
    WarningCode.CONDITION_INEFFECTIVE: "the host condition left no trace in the timed requests "
    "(nothing read from the disk, no time spent waiting on it): the round measured a warm, "
    "unthrottled path; this run never feeds a storage or cache verdict",
}


def warning(code: WarningCode, message: str) -> dict[str, str]:
    """A warning as it is stored with a run: its code and what happened."""
    return {"code": WarningCode(code).value, "message": message}


def hint(code: str) -> str:
    """The fix for a warning code ('' for a code this version does not know)."""
    try:
        return HINTS[WarningCode(code)]
    except ValueError:
        return ""
