"""Drive an app with MLPerf LoadGen and time every sample's three phases.

One processing thread serves all LoadGen scenarios: LoadGen's issue callback only enqueues
(it must return quickly, and in Server mode it is called from LoadGen's own scheduler), the
processing thread takes up to ``batch_size`` queued samples, times preprocess / infer /
postprocess with ``perf_counter_ns`` and reports completion. A batch's inference and
post-processing times are shared equally among its samples, so per-sample E2E is
``preprocess + infer + postprocess`` and sums to the work done.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ..apps.base import App

_STOP = object()


class SampleLog:
    """Column-wise per-sample record (lists of ints; appends only on the hot path)."""

    COLUMNS = ("sample_index", "preprocess_ns", "infer_ns", "postprocess_ns", "batch",
               "queue_ns", "done_ns")

    def __init__(self) -> None:
        for name in self.COLUMNS:
            setattr(self, name, [])

    def to_json(self) -> dict[str, list[int]]:
        return {name: getattr(self, name) for name in self.COLUMNS}


class LoadgenDriver:
    def __init__(self, app: App, *, batch_size: int, inference_only: bool) -> None:
        self.app = app
        self.batch_size = batch_size
        self.inference_only = inference_only
        self.ids: Sequence[str] = list(app.sample_ids())
        self.cache: dict[int, Any] = {}
        self.log = SampleLog()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.t0_ns = 0
        self._lg: Any = None
        self._batches = 0

    # -- QSL callbacks -------------------------------------------------------------------
    def load_samples(self, indices: Sequence[int]) -> None:
        if self.inference_only:  # DLBS-style: inputs prepared once, untimed
            for i in indices:
                if i not in self.cache:
                    self.cache[i] = self.app.preprocess(self.ids[i])

    def unload_samples(self, indices: Sequence[int]) -> None:
        for i in indices:
            self.cache.pop(i, None)

    # -- SUT callbacks -------------------------------------------------------------------
    def issue(self, query_samples: Sequence[Any]) -> None:
        now = time.perf_counter_ns()
        put = self.queue.put
        for qs in query_samples:
            put((qs.id, qs.index, now))

    def flush(self) -> None:
        pass

    # -- processing ----------------------------------------------------------------------
    def _take_batch(self) -> list[tuple[int, int, int]] | None:
        first = self.queue.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self.queue.put(_STOP)
                break
            batch.append(item)
        return batch

    def process_loop(self) -> None:
        lg = self._lg
        clock = time.perf_counter_ns
        log = self.log
        app = self.app
        ids = self.ids
        cache = self.cache
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                start = clock()
                inputs = []
                pre = []
                for _id, index, _issued in batch:
                    t = clock()
                    inputs.append(cache[index] if self.inference_only else app.preprocess(ids[index]))
                    pre.append(clock() - t)
                t = clock()
                output = app.infer(inputs)
                t_inf = clock()
                app.postprocess(output)
                t_post = clock()
            except BaseException as exc:  # recorded; LoadGen still needs its completions
                self.error = exc
                lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i, _, _ in batch])
                continue
            n = len(batch)
            inf_share = (t_inf - t) // n
            post_share = (t_post - t_inf) // n
            done = t_post - self.t0_ns
            number = self._batches
            self._batches += 1
            for (_id, index, issued), p in zip(batch, pre):
                log.sample_index.append(index)
                log.preprocess_ns.append(p)
                log.infer_ns.append(inf_share)
                log.postprocess_ns.append(post_share)
                log.batch.append(number)
                log.queue_ns.append(start - issued)
                log.done_ns.append(done)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i, _, _ in batch])

    def warm_up(self, batches: int) -> None:
        """Untimed end-to-end batches: first-call allocations are not what we measure."""
        for b in range(batches):
            chosen = [self.ids[(b * self.batch_size + k) % len(self.ids)]
                      for k in range(self.batch_size)]
            self.app.postprocess(self.app.infer([self.app.preprocess(s) for s in chosen]))

    def run(self, *, scenario: str, requests: int, log_dir: Path,
            server_target_qps: float) -> dict[str, Any]:
        import mlperf_loadgen as lg

        self._lg = lg
        total = len(self.ids)
        if total == 0:
            raise RuntimeError("the app listed no samples: is the data directory empty?")
        settings = lg.TestSettings()
        settings.scenario = {
            "Offline": lg.TestScenario.Offline,
            "SingleStream": lg.TestScenario.SingleStream,
            "Server": lg.TestScenario.Server,
        }[scenario]
        settings.mode = lg.TestMode.PerformanceOnly
        settings.min_query_count = requests
        settings.max_query_count = requests
        settings.min_duration_ms = 0
        settings.performance_sample_count_override = min(total, requests)
        settings.offline_expected_qps = max(1.0, float(requests))
        settings.server_target_qps = server_target_qps
        settings.single_stream_expected_latency_ns = 1_000_000
        log_settings = lg.LogSettings()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False

        sut = lg.ConstructSUT(self.issue, self.flush)
        qsl = lg.ConstructQSL(total, min(total, requests), self.load_samples, self.unload_samples)
        thread = threading.Thread(target=self.process_loop, name="deploybench-sut", daemon=True)
        thread.start()
        try:
            self.t0_ns = time.perf_counter_ns()
            lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
        finally:
            self.queue.put(_STOP)
            thread.join()
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        if self.error is not None:
            raise self.error
        return parse_loadgen_detail(log_dir / "mlperf_log_detail.txt")


def parse_loadgen_detail(path: Path) -> dict[str, Any]:
    """LoadGen's own results from ``mlperf_log_detail.txt`` (``:::MLLOG {json}`` lines)."""
    out: dict[str, Any] = {}
    errors: list[str] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {"missing": str(path)}
    for line in lines:
        if not line.startswith(":::MLLOG"):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG"):])
        except json.JSONDecodeError:
            continue
        key, value = entry.get("key", ""), entry.get("value")
        if key.startswith("result_"):
            out[key[len("result_"):]] = value
        elif key in ("effective_scenario", "effective_samples_per_query", "loadgen_version",
                     "effective_target_qps"):
            out[key] = value
        elif key.startswith("error"):
            errors.append(f"{key}: {value}")
    if errors:
        out["errors"] = errors
    return out
