"""``python -m deploybench.worker --job JOB.json``: run one job, write one JSON result.

Exit status 0 when the run succeeded, 1 when it failed (the result file then says why),
2 when the job file itself is unusable.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from pathlib import Path

from .environment import set_thread_env
from ..warnings import WarningCode, warning
from .job import SchemaError, WorkerJob, WorkerResult


def _budget(affinity: list[int], quota_cores: float | None) -> int:
    budget = len(affinity)
    if quota_cores is not None:
        budget = min(budget, max(1, math.ceil(quota_cores - 1e-9)))
    return budget


def run_job(job: WorkerJob) -> WorkerResult:
    wall_start = time.time()
    set_thread_env(job.threads)
    from . import environment as env  # noqa: F401  (already imported; explicit for readers)
    from ..apps import create_app
    from .driver import LoadgenDriver

    result = WorkerResult(status="error", job=job.to_json())
    result.timings["worker_start_wall"] = wall_start
    try:
        if job.debug_hang_s:
            time.sleep(job.debug_hang_s)
        affinity = sorted(os.sched_getaffinity(0))
        limits = env.cgroup_limits()
        app = create_app(job.app)
        if job.device != "cpu":  # the CUDA context is created now, and timed apart
            from .gpu import start_cuda
            result.timings["cuda_init_s"] = start_cuda(job.device)
        t = time.perf_counter()
        kwargs = {"device": job.device} if job.device != "cpu" else {}
        app.load(Path(job.data_dir), job.model_size, job.backend, job.threads, **kwargs)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(job.threads)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # already started by the app's load: leave it
                pass
        result.timings["load_s"] = time.perf_counter() - t

        driver = LoadgenDriver(app, batch_size=job.batch_size, inference_only=job.inference_only)
        t = time.perf_counter()
        driver.warm_up(job.warmup_batches)
        result.timings["warmup_s"] = time.perf_counter() - t
        log_dir = Path(job.log_dir) if job.log_dir else Path(job.result_path).parent / "loadgen"
        result.timings["first_query_wall"] = time.time()
        t = time.perf_counter()
        result.loadgen = driver.run(scenario=job.loadgen_scenario, requests=job.requests,
                                    log_dir=log_dir, server_target_qps=job.server_target_qps)
        result.timings["run_s"] = time.perf_counter() - t
        result.samples = driver.log.to_json()
        result.samples["sample_id"] = [driver.ids[i] for i in driver.log.sample_index]

        budget = _budget(affinity, limits["cpu_quota_cores"])
        pools = env.thread_pools()
        result.environment = {
            "affinity": affinity,
            "cgroup": limits,
            "cpu_budget": budget,
            "threads_requested": job.threads,
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "torch_interop_threads": torch.get_num_interop_threads() if torch is not None else None,
            "thread_pools": pools,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "os_cpu_count": os.cpu_count(),
            "isolation": env.isolation_facts(),
            **env.scheduler_counters(),
        }
        if job.device != "cpu":  # the GPU used and its memory in use after the run
            from .gpu import cuda_environment
            result.environment["gpu"] = cuda_environment(job.device)
        over = [p for p in pools if (p.get("threads") or 0) > budget]
        if torch is not None and torch.get_num_threads() > budget:
            over.append({"api": "torch", "threads": torch.get_num_threads()})
        if over:
            names = ", ".join(f"{p['api']}={p['threads']}" for p in over)
            result.warnings.append(warning(
                WarningCode.THREADS_OVER_BUDGET,
                f"thread pools larger than the CPU budget of {budget}: {names}"))
        if job.requests < 20:
            result.warnings.append(warning(
                WarningCode.FEW_SAMPLES, f"only {job.requests} requests per run"))
        result.status = "ok"
    except BaseException as exc:  # the result must say why, whatever happened
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        traceback.print_exc(file=sys.stderr)
        if isinstance(exc, KeyboardInterrupt):
            result.error = "interrupted"
    finally:
        result.metadata = env.metadata(job.cores, job.host_cores, job.git_revision)
        result.timings["worker_end_wall"] = time.time()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploybench.worker")
    parser.add_argument("--job", required=True, help="job JSON file")
    parser.add_argument("--result", help="where to write the result (default: the job's)")
    args = parser.parse_args(argv)
    try:
        job = WorkerJob.read(Path(args.job))
    except (OSError, ValueError, SchemaError, TypeError) as exc:
        print(f"deploybench worker: unusable job file {args.job}: {exc}", file=sys.stderr)
        return 2
    if args.result:
        job = job.with_(result_path=args.result)
    result = run_job(job)
    result.write(Path(job.result_path))
    if result.status != "ok":
        print(f"deploybench worker: run failed: {result.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
