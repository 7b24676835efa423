"""Test doubles shared by unit tests."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from deploybench.scenario import Scenario
from deploybench.store import RunRecord


class SleepApp:
    """An app whose phases take known times (busy-waits, so the timers see real work)."""

    name = "sleep"
    sizes = ("tiny",)
    pre_s, infer_s, post_s = 0.002, 0.003, 0.001

    def generate_data(self, out_dir: Path, count: int, seed: int) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (out_dir / f"s{i}.txt").write_text(str(i))

    def load(self, data_dir, size, backend, threads):
        self.data_dir = Path(data_dir)
        self.ids = sorted(p.name for p in self.data_dir.glob("s*.txt"))

    def sample_ids(self):
        return self.ids

    @staticmethod
    def _spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    pre_calls = 0

    def preprocess(self, sample_id):
        self.pre_calls += 1
        self._spin(self.pre_s)
        return int((self.data_dir / sample_id).read_text())

    def infer(self, batch):
        self._spin(self.infer_s)
        return [x * 2 for x in batch]

    def postprocess(self, output):
        self._spin(self.post_s)
        return output



class ChattyApp(SleepApp):
    """SleepApp that prints while loading, the last words without a newline (buffered)."""

    name = "chatty"

    def load(self, data_dir, size, backend, threads):
        super().load(data_dir, size, backend, threads)
        print("chatty: loaded", flush=True)
        sys.stdout.write("chatty: still in the buffer")


def record(name="BM/1/PIN/CPU", app="ic", e2e_ms=(10.0,) * 5, status="ok", **fields) -> RunRecord:
    """A stored-run double whose per-request E2E times are ``e2e_ms`` (split 20/70/10)."""
    ns = [int(v * 1e6) for v in e2e_ms]
    pre = [int(v * 0.2) for v in ns]
    post = [int(v * 0.1) for v in ns]
    inf = [v - p - q for v, p, q in zip(ns, pre, post)]
    samples = {"sample_index": list(range(len(ns))), "preprocess_ns": pre, "infer_ns": inf,
               "postprocess_ns": post, "batch": list(range(len(ns))), "queue_ns": [0] * len(ns),
               "done_ns": list(range(len(ns))), "sample_id": [f"s{i}" for i in range(len(ns))]}
    values = dict(scenario=Scenario.parse(name, app=app), status=status, started_at=time.time(),
                  finished_at=time.time(), samples=samples if status == "ok" else {},
                  host={"host": "testhost"}, timings={"run_s": sum(e2e_ms) / 1e3},
                  environment={"affinity": [0]})
    values.update(fields)
    return RunRecord(**values)


class CrashApp(SleepApp):
    """Dies abruptly (SIGKILL of its own process) at the first inference."""

    name = "crash"

    def infer(self, batch):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
