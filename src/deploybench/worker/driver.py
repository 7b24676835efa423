"""Drive an app with MLPerf LoadGen and time every sample's three phases.

Offline and SingleStream queries are processed inside LoadGen's issue callback: LoadGen
issues the next SingleStream query only after the previous one completed, and the single
Offline query holds every sample, so a hand-off to another thread would only add a thread
wake-up per sample to what we measure (the probe-effect benchmark showed ~2.7x LoadGen's
own per-sample cost with a hand-off, see benchmarks/probe_effect.py). Server queries
arrive on LoadGen's scheduler thread, which must not block, so they are queued to one
processing thread that takes up to ``batch_size`` waiting samples at a time.

A batch's inference and post-processing times are shared equally among its samples, so
per-sample E2E is ``preprocess + infer + postprocess`` and sums to the work done.
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
    """Per-sample records. The hot path appends one tuple per sample; columns are built
    once at the end (one append instead of seven keeps the probe effect low)."""

    COLUMNS = ("sample_index", "preprocess_ns", "infer_ns", "postprocess_ns", "batch",
               "queue_ns", "done_ns")

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, int, int, int]] = []

    def column(self, name: str) -> list[int]:
        i = self.COLUMNS.index(name)
        return [row[i] for row in self.rows]

    def __getattr__(self, name: str) -> list[int]:
        if name in SampleLog.COLUMNS:
            return self.column(name)
        raise AttributeError(name)

    def __len__(self) -> int:
        return len(self.rows)

    def to_json(self) -> dict[str, list[int]]:
        columns = list(zip(*self.rows)) if self.rows else [()] * len(self.COLUMNS)
        return {name: list(col) for name, col in zip(self.COLUMNS, columns)}


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
    def issue_inline(self, query_samples: Sequence[Any]) -> None:
        now = time.perf_counter_ns()
        size = self.batch_size
        if size == 1 and not self.inference_only:
            self._process_singles(query_samples, now)
            return
        for i in range(0, len(query_samples), size):
            self._process([(q.id, q.index, now) for q in query_samples[i:i + size]])

    def issue_queued(self, query_samples: Sequence[Any]) -> None:
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
        while (batch := self._take_batch()) is not None:
            self._process(batch)

    def _process_singles(self, query_samples: Sequence[Any], issued: int) -> None:
        """`_process` specialised for batches of one (the common case), same records."""
        lg = self._lg
        clock = time.perf_counter_ns
        preprocess, infer, postprocess = self.app.preprocess, self.app.infer, self.app.postprocess
        ids, append, t0 = self.ids, self.log.rows.append, self.t0_ns
        complete, response = lg.QuerySamplesComplete, lg.QuerySampleResponse
        number = self._batches
        for q in query_samples:
            index = q.index
            try:
                start = clock()
                x = preprocess(ids[index])
                t_pre = clock()
                output = infer([x])
                t_inf = clock()
                postprocess(output)
                t_post = clock()
            except BaseException as exc:
                self.error = self.error or exc
                complete([response(q.id, 0, 0)])
                continue
            append((index, t_pre - start, t_inf - t_pre, t_post - t_inf, number, start - issued,
                    t_post - t0))
            number += 1
            complete([response(q.id, 0, 0)])
        self._batches = number

    def _process(self, batch: Sequence[tuple[int, int, int]]) -> None:
        """Time one batch's phases, record them, report completion to LoadGen."""
        lg = self._lg
        clock = time.perf_counter_ns
        try:
            t = clock()
            if self.inference_only:
                inputs = [self.cache[index] for _, index, _ in batch]
                pre = [0] * len(batch)
            else:
                preprocess, ids = self.app.preprocess, self.ids
                inputs, pre = [], []
                for _, index, _ in batch:
                    inputs.append(preprocess(ids[index]))
                    now = clock()
                    pre.append(now - t)
                    t = now
            output = self.app.infer(inputs)
            t_inf = clock()
            self.app.postprocess(output)
            t_post = clock()
        except BaseException as exc:  # recorded; LoadGen still needs its completions
            self.error = self.error or exc
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i, _, _ in batch])
            return
        n = len(batch)
        inf_share = (t_inf - t) // n
        post_share = (t_post - t_inf) // n
        done = t_post - self.t0_ns
        number = self._batches
        self._batches = number + 1
        append = self.log.rows.append
        end = t_post
        for (_, index, issued), p in zip(batch, pre):
            # queue: all of the request's latency that is not its own work (waiting to be
            # taken, and for the rest of its batch), so queue + phases = issue to completion
            append((index, p, inf_share, post_share, number, (end - issued) - (p + inf_share + post_share),
                    done))
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i, _, _ in batch])

    def warm_up(self, batches: int) -> None:
        """Untimed end-to-end batches: first-call allocations are not what we measure."""
        for b in range(batches):
            chosen = [self.ids[(b * self.batch_size + k) % len(self.ids)]
                      for k in range(self.batch_size)]
            self.app.postprocess(self.app.infer([self.app.preprocess(s) for s in chosen]))

    def run(self, *, scenario: str, requests: int, log_dir: Path, server_target_qps: float,
            server_target_latency_ms: float | None = None,
            server_latency_percentile: float | None = None) -> dict[str, Any]:
        """One LoadGen test. Under Server, ``server_target_latency_ms`` at
        ``server_latency_percentile`` (e.g. 99) is the bound LoadGen's VALID checks (with its
        early-stopping rule); None keeps LoadGen's defaults."""
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
        if server_target_latency_ms is not None:
            settings.server_target_latency_ns = int(round(server_target_latency_ms * 1e6))
        if server_latency_percentile is not None:
            settings.server_target_latency_percentile = server_latency_percentile / 100.0
        settings.single_stream_expected_latency_ns = 1_000_000
        log_settings = lg.LogSettings()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False

        queued = scenario == "Server"
        sut = lg.ConstructSUT(self.issue_queued if queued else self.issue_inline, self.flush)
        qsl = lg.ConstructQSL(total, min(total, requests), self.load_samples, self.unload_samples)
        thread = None
        if queued:
            thread = threading.Thread(target=self.process_loop, name="deploybench-sut", daemon=True)
            thread.start()
        try:
            self.t0_ns = time.perf_counter_ns()
            lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
        finally:
            if thread is not None:
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
                     "effective_target_qps", "effective_target_latency_ns",
                     "effective_target_latency_percentile", "early_stopping_met",
                     "early_stopping_result"):
            out[key] = value
        elif key.startswith("error"):
            errors.append(f"{key}: {value}")
    if errors:
        out["errors"] = errors
    return out
