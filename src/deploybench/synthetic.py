"""Synthetic RunRecords with controlled distributions, for tests and for trying the report
without hours of measurements. Nothing here runs anything.

DESIGN: runs are organised as the tool measures them (DESIGN.md, "How measuring is
organised"): ``runs`` launches of each scenario, ``rounds`` measured rounds in each launch,
and every round in a *block* shared with the other scenarios of its workload measured in the
same launch epoch (block id ``{group}-e{launch}-b{round}``), so paired comparisons see
them as the racing sweep stores them. Launch means are exact, not merely expected: the
per-launch deviations are standardised draws (sample mean 0, sample standard deviation 1)
scaled by ``run_cv``; round-to-round noise within a launch (``round_cv``) is standardised
the same way around the launch mean, and each round's per-request times around the round's
mean. A test that asks for "10% slower with a 1% launch-to-launch CV" gets a mean exactly
10% slower, so findings can be checked against known answers without flaky tolerances.
"""
from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np

from .scenario import CpuMode, HostLoad, PageCache, PlatformName, Processor, Scenario, Storage
from .store import RunRecord
from .warnings import WarningCode, warning

SYNTHETIC_HOST = "synthetic-host"


def _standardised(rng: np.random.Generator, n: int) -> np.ndarray:
    if n < 2:
        return np.zeros(n)
    z = rng.standard_normal(n)
    z = z - z.mean()
    sd = z.std(ddof=1)
    return z / sd if sd > 0 else z


def block_group(scenario: Scenario, accel: str | None = None, seed: int = 0) -> str:
    """The blocks a scenario's rounds are measured in: one per workload (any deployment and
    host conditions, as ``sweep.group_key``), TCG-emulated guests apart, and per ``seed``."""
    workload = scenario.with_(platform=PlatformName.BM, cores=1, cpu_mode=CpuMode.VNL,
                              processor=Processor.CPU, host_load=HostLoad.IDLE,
                              page_cache=PageCache.WARM, storage=Storage.NATIVE)
    key = f"{workload.key}{'|emulated' if accel == 'tcg' else ''}|s{seed}"
    return f"w{zlib.crc32(key.encode()):08x}"


def synthetic_runs(name: str, mean_ms: float, *, app: str = "ic", runs: int = 3,
                   rounds: int = 1, round_cv: float = 0.0,
                   run_cv: float = 0.01, run_means: Sequence[float] | None = None,
                   phase_shares: tuple[float, float, float] = (0.25, 0.7, 0.05),
                   requests: int = 32, request_cv: float = 0.05, model_size: str = "tiny",
                   backend: str = "torch", inference_only: bool = False,
                   host: str = SYNTHETIC_HOST, host_cores: int = 16, accel: str | None = None,
                   host_load: str | None = None, seed: int = 0,
                   warnings: Sequence[WarningCode] = (), throttled_share: float | None = None,
                   migrations_per_request: float | None = None,
                   start_latency_s: float | None = None, failed: int = 0,
                   failure_reason: str = "the worker failed: synthetic failure",
                   storage: str | None = None, started_at: float = 1.7e9,
                   blocks: str | None = None) -> list[RunRecord]:
    """``runs`` launches of ``rounds`` successful rounds each (plus ``failed`` failed runs)
    of scenario ``name`` (``PLATFORM/CORES/MODE/PROC``) whose mean E2E per request is
    ``mean_ms``, whose launch means vary with coefficient of variation ``run_cv`` (or are
    exactly ``run_means``) and whose rounds vary around their launch's mean with ``round_cv``.
    ``blocks`` names the block group (default: :func:`block_group`); a scenario measured
    apart from the others gets its own."""
    conditions = {key: value for key, value in (("host_load", host_load), ("storage", storage)) if value}
    scenario = Scenario.parse(name, app=app, model_size=model_size, backend=backend,
                              requests=requests, inference_only=inference_only, **conditions)
    identity = repr((name, app, seed, inference_only, host_load, storage, accel, model_size, host))
    rng = np.random.default_rng(zlib.crc32(identity.encode()))
    if run_means is None:
        run_means = list(mean_ms * (1 + run_cv * _standardised(rng, runs)))
    group = blocks if blocks is not None else block_group(scenario, accel, seed)
    tag = f"{zlib.crc32(identity.encode()):08x}"
    shares = np.asarray(phase_shares, dtype=float)
    shares = shares / shares.sum()
    records: list[RunRecord] = []
    t = started_at + seed * 1e4
    rep = 0
    for launch, launch_mean in enumerate(run_means):
        round_means = launch_mean * (1 + round_cv * _standardised(rng, rounds))
        for k, round_mean in enumerate(round_means):
            e2e_ms = round_mean * (1 + request_cv * _standardised(rng, requests))
            cols = {phase: [int(round(v * share * 1e6)) for v in e2e_ms]
                    for phase, share in zip(("preprocess_ns", "infer_ns", "postprocess_ns"), shares)}
            run_s = float(e2e_ms.sum()) / 1e3
            record = _record(scenario, "ok", launch, t, run_s, host, host_cores, accel, host_load,
                             warnings, throttled_share, migrations_per_request,
                             start_latency_s, storage, cols)
            record.launch_id, record.launch_round = f"syn-{tag}-L{launch}", k + 1
            record.block_id, record.block_pos = f"{group}-e{launch}-b{k}", 0
            records.append(record)
            rep += 1
            t += run_s + 1
    for n in range(failed):
        record = _record(scenario, "failed", rep + n, t, 1.0, host, host_cores, accel,
                         host_load, (), None, None, None, storage, {})
        record.launch_id = f"syn-{tag}-F{n}"
        record.error = failure_reason
        record.console_tail = "Traceback (most recent call last): ... synthetic"
        records.append(record)
        t += 2
    return records


def _record(scenario: Scenario, status: str, rep: int, t: float, run_s: float, host: str,
            host_cores: int, accel: str | None, host_load: str | None,
            warnings: Sequence[WarningCode], throttled_share: float | None,
            migrations_per_request: float | None, start_latency_s: float | None,
            storage: str | None, cols: dict[str, list[int]]) -> RunRecord:
    n = len(cols.get("preprocess_ns", []))
    samples: dict[str, list[Any]] = {}
    if cols:
        samples = {"sample_index": list(range(n)), **cols, "batch": list(range(n)),
                   "queue_ns": [0] * n, "done_ns": list(np.cumsum(
                       [a + b + c for a, b, c in zip(*cols.values())]).tolist()),
                   "sample_id": [f"s{i:04d}" for i in range(n)]}
    cpus = list(range(scenario.cores))
    platform: dict[str, Any] = {"platform": scenario.platform.value,
                                "limits": {"cpus": cpus if scenario.cpu_mode is CpuMode.PIN else None,
                                           "quota_cores": scenario.cores if scenario.cpu_mode is CpuMode.VNL else None}}
    if accel:
        platform["accel"] = accel
    if start_latency_s is not None:
        platform["start_latency_s"] = start_latency_s
    if host_load:
        platform["host_load"] = host_load
    periods = max(1, int(run_s * 10))
    if scenario.cpu_mode is CpuMode.VNL:
        share = throttled_share if throttled_share is not None else 0.0
        platform["cpu_stat"] = {"nr_periods": periods, "nr_throttled": int(round(share * periods)),
                                "throttled_ms": share * run_s * 100}
    environment: dict[str, Any] = {"affinity": cpus if scenario.cpu_mode is CpuMode.PIN else list(range(host_cores)),
                                   "cpu_budget": scenario.cores, "thread_pools": [],
                                   "voluntary_ctx_switches": 10 * n, "involuntary_ctx_switches": n}
    if migrations_per_request is not None:
        environment["nr_migrations"] = int(round(migrations_per_request * n))
    host_meta: dict[str, Any] = {"host": host, "kernel": "6.1.0-synthetic", "cpu_model": "Synthetic CPU @ 2.0GHz",
                                 "host_cores": host_cores, "git_revision": "synthetic", "python": "3.11"}
    if storage:
        host_meta["storage"] = storage
    return RunRecord(
        scenario=scenario, status=status, started_at=t, finished_at=t + run_s, repetition=rep,
        error=None, host=host_meta, platform=platform, environment=environment,
        metadata={"hostname": host, "host_cores": host_cores,
                  "chr": round(scenario.cores / host_cores, 4), "torch": "2.13.0"},
        timings={"run_s": run_s}, warnings=[warning(w, "synthetic") for w in warnings],
        samples=samples)


#: per-app E2E at one core (ms) and phase shares (pre, infer, post), paper-like: IC and RS
#: dominated by pre/post processing on a GPU, NLP by inference.
APP_PROFILES: dict[str, tuple[float, tuple[float, float, float]]] = {
    "ic": (140.0, (0.15, 0.8, 0.05)),
    "sr": (1900.0, (0.05, 0.9, 0.05)),
    "nlp": (800.0, (0.02, 0.96, 0.02)),
    "rs": (12.0, (0.3, 0.6, 0.1)),
}

#: relative overhead against BM at CHR = 1 (vanilla); pinning removes most of it.
PLATFORM_OVERHEAD = {"BM": 0.0, "CN": 0.02, "VM": 0.06, "MVM": 0.07, "VMCN": 0.08}


def synthetic_study(*, apps: Sequence[str] = ("ic", "nlp"), host_cores: int = 16,
                    cores: Sequence[int] = (1, 2, 4, 8, 16),
                    platforms: Sequence[str] = ("BM", "CN", "VM", "VMCN", "MVM"),
                    runs: int = 3, run_cv: float = 0.02, knee: int = 4,
                    gpu: bool = False, busy: bool = False, inference_only: bool = False,
                    emulated_vm: bool = False, failed: bool = True, seed: int = 0) -> list[RunRecord]:
    """A whole paper-like study: every platform, cores and mode for each app, E2E that
    scales until ``knee`` cores, vanilla containers slow at low CHR, optional GPU runs,
    busy-host runs, inference-only runs and an emulated VM."""
    out: list[RunRecord] = []
    for app in apps:
        base, shares = APP_PROFILES[app]
        for platform in platforms:
            for n in cores:
                for mode in ("VNL", "PIN"):
                    chr_ = n / host_cores
                    scale = 1 / min(n, knee) ** 0.8 * (1 + 0.01 * max(0, n - knee))
                    overhead = PLATFORM_OVERHEAD[platform]
                    if mode == "VNL" and platform in ("CN", "VMCN"):
                        overhead += 0.25 * (1 - chr_)  # the paper's vanilla CN outlier at low CHR
                    if mode == "PIN":
                        overhead *= 0.4
                    mean = base * scale * (1 + overhead)
                    accel = None
                    if platform in ("VM", "MVM", "VMCN"):
                        accel = "tcg" if emulated_vm and platform == "VM" else "kvm"
                    if accel == "tcg":
                        mean *= 200
                    warnings = [WarningCode.EMULATED_VM] if accel == "tcg" else []
                    latency = {"BM": 0.05, "CN": 0.15, "VM": 4.0, "MVM": 1.2, "VMCN": 4.5}[platform]
                    kwargs = dict(app=app, runs=runs, run_cv=run_cv, phase_shares=shares,
                                  host_cores=host_cores, accel=accel, seed=seed, warnings=warnings,
                                  start_latency_s=latency,
                                  throttled_share=0.3 * (1 - chr_) if mode == "VNL" else None,
                                  migrations_per_request=(5.0 * (1 - chr_) if mode == "VNL" else 0.1))
                    name = f"{platform}/{n}/{mode}/CPU"
                    out += synthetic_runs(name, mean, **kwargs)
                    if inference_only:
                        infer_mean = base * shares[1] / min(n, knee) ** 0.95 * (1 + overhead)
                        out += synthetic_runs(name, infer_mean, inference_only=True,
                                              **{**kwargs, "phase_shares": (0.001, 0.99, 0.009)})
                    if busy and n == host_cores:
                        busy_factor = 1.05 if platform == "BM" else 1.3 if mode == "VNL" else 1.15
                        out += synthetic_runs(name, mean * busy_factor, host_load="busy", **kwargs)
                    if gpu and platform in ("BM", "VM") and mode == "PIN":
                        pre, infer, post = (base * s * scale for s in shares)
                        gpu_mean = pre + infer / 8 + post
                        out += synthetic_runs(f"{platform}/{n}/{mode}/GPU", gpu_mean * (1 + overhead),
                                              **{**kwargs, "phase_shares": (pre, infer / 8, post),
                                                 "throttled_share": None})
                        if inference_only:
                            out += synthetic_runs(f"{platform}/{n}/{mode}/GPU", infer / 8 * (1 + overhead),
                                                  inference_only=True,
                                                  **{**kwargs, "phase_shares": (0.001, 0.99, 0.009),
                                                     "throttled_share": None})
        if failed:
            out += synthetic_runs("VM/16/PIN/CPU", base, app=app, runs=0, failed=1, host_cores=host_cores,
                                  accel="kvm", failure_reason="timeout after 900 s: the guest did not boot")
    return out


# -- footprints and capacity searches --------------------------------------------------------------
#: a plausible footprint per platform (kB, CPU s outside the worker per request) for the report
FOOTPRINTS = {"BM": (0, 0.0), "CN": (0, 0.0), "VM": (650_000, 0.004), "MVM": (560_000, 0.003),
              "VMCN": (720_000, 0.005)}


def with_footprints(records: Sequence[RunRecord], worker_kb: int = 256_000) -> list[RunRecord]:
    """``records`` with a synthetic host-side footprint each (``footprint.RoundFootprint``):
    the worker alone on BM and CN, QEMU with a guest kernel, page cache and VMM overhead on
    the guests."""
    from .footprint import VMM, WORKER, FootprintPart, GuestMemory, RoundFootprint

    for r in records:
        platform = r.scenario.platform.value
        beyond, outside_per_request = FOOTPRINTS.get(platform, (0, 0.0))
        n = len(r.samples.get("preprocess_ns") or []) or r.scenario.requests
        guest = None
        if beyond:
            ram = 2048 * 1024
            guest = GuestMemory(ram_kb=ram, total_kb=ram - 82_000, free_kb=ram - worker_kb - 220_000,
                                kernel_kb=108_000, page_cache_kb=210_000, page_cache_unmapped_kb=112_000,
                                anon_kb=150_000)
        fp = RoundFootprint(
            worker_peak_rss_kb=worker_kb, worker_rss_seen_from="guest" if beyond else "host",
            memory_kb=worker_kb + beyond, worker_cpu_s=float(r.timings.get("run_s") or 1.0),
            outside_cpu_s=outside_per_request * n,
            outside_cpu_s_by_role={"vmm (non-vCPU threads)": outside_per_request * n} if beyond else {},
            vmm_rss_kb=worker_kb + beyond if beyond else None, guest=guest,
            parts=(FootprintPart(VMM if beyond else WORKER, 1),))
        r.platform["footprint"] = fp.to_json()
    return list(records)


def simulate_queue(rate: float, n: int, service_s: float, seed: int = 1) -> list[float]:
    """Each request's wait (s) in a FIFO single server fed by Poisson arrivals at ``rate``
    (LoadGen's Server draws its schedule from a fixed seed too)."""
    import random

    rng = random.Random(seed)
    t = free = 0.0
    delays = []
    for _ in range(n):
        t += rng.expovariate(rate)
        start = max(t, free)
        delays.append(start - t)
        free = start + service_s
    return delays


def synthetic_capacity(name: str, service_ms: float, *, app: str = "ic", slo_ms: float = 100.0,
                       percentile: float = 99.0, requests: int | None = None, launches: int = 2,
                       launch_slowdown: float = 0.03, accel: str | None = None, host: str = SYNTHETIC_HOST,
                       started_at: float = 1.7e9) -> list[RunRecord]:
    """The stored probes of a capacity search of ``name`` whose requests take ``service_ms``
    each (one server): the real search's choice of rates (``capacity.next_rate``) on a
    simulated queue, each launch ``launch_slowdown`` slower than the one before."""
    import uuid

    from . import capacity as cap

    criteria = cap.Criteria(slo_ms, percentile)
    n = requests or cap.default_requests(percentile)
    base = Scenario.parse(name, app=app, loadgen_scenario="Server", requests=n)
    search_id = uuid.uuid4().hex
    probes: list[cap.Probe] = []
    records: list[RunRecord] = []
    start = 1e3 / service_ms / 2
    t = started_at
    for launch in range(launches):
        service = service_ms / 1e3 * (1 + launch_slowdown * launch)
        launch_id = uuid.uuid4().hex
        while (nxt := cap.next_rate(cap.answer(probes, base=base, criteria=criteria), launch, start,
                                    0.05)) is not None:
            rate, step = nxt
            delays = simulate_queue(rate, n, service)
            bound, p = slo_ms / 1e3, percentile / 100
            slow = sum(1 for d in delays if d + service > bound)
            valid = cap._binomial_cdf(slow, n, 1 - p) <= 0.01
            ns = int(service * 1e9)
            samples = {"sample_index": list(range(n)), "preprocess_ns": [ns // 4] * n,
                       "infer_ns": [ns - ns // 4] * n, "postprocess_ns": [0] * n, "batch": list(range(n)),
                       "queue_ns": [int(d * 1e9) for d in delays], "done_ns": [ns] * n,
                       "sample_id": [f"s{i:04d}" for i in range(n)]}
            run_s = n / rate + max(delays)
            record = RunRecord(scenario=base.with_(target_qps=rate), status="ok", started_at=t,
                               finished_at=t + run_s, repetition=launch, launch_id=launch_id,
                               host={"host": host}, platform={"platform": base.platform.value,
                                                              **({"accel": accel} if accel else {})},
                               loadgen={"validity": "VALID" if valid else "INVALID"},
                               timings={"run_s": run_s}, samples=samples)
            verdict = cap.judge(record, criteria)
            record.host["capacity_probe"] = cap.probe_facts(search_id, criteria, launch, step, verdict, base)
            probes.append(cap.Probe(rate, launch, verdict.passed, verdict.latency_ms, verdict.loadgen_valid,
                                    verdict.reason, step, record.run_id))
            records.append(record)
            t += run_s + 1
        if cap.answer(probes, base=base, criteria=criteria).confirmed:
            break
    return records
