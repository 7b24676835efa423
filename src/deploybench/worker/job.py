"""The two documents that cross the platform boundary: the job in, the result out."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOB_SCHEMA = 1
RESULT_SCHEMA = 1


class SchemaError(ValueError):
    pass


@dataclass(frozen=True)
class WorkerJob:
    """Everything the worker needs, as plain values (the worker knows nothing of platforms)."""

    app: str
    data_dir: str
    result_path: str
    model_size: str = "tiny"
    backend: str = "torch"
    device: str = "cpu"
    loadgen_scenario: str = "Offline"
    requests: int = 32
    batch_size: int = 1
    inference_only: bool = False
    threads: int = 1  # the CPU budget the thread pools are sized to
    cores: int = 1  # the scenario's cores (for CHR)
    host_cores: int = 1  # cores of the physical host, as the host sees them
    warmup_batches: int = 1  # untimed end-to-end batches before LoadGen starts
    server_target_qps: float = 10.0
    #: Server only: the latency bound LoadGen's own validity checks (its
    #: ``server_target_latency_ns`` and percentile); None keeps LoadGen's defaults (100 ms, p99)
    server_target_latency_ms: float | None = None
    server_latency_percentile: float | None = None  # e.g. 99.0
    seed: int = 0
    scenario_name: str = ""
    run_id: str = ""
    git_revision: str = ""
    log_dir: str = ""  # LoadGen logs; default: next to the result
    #: test hook: seconds to sleep before loading (a prototype job: a hung launch) or before
    #: the round (a round's job: a hung round)
    debug_hang_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"schema": JOB_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "WorkerJob":
        if data.get("schema") != JOB_SCHEMA:
            raise SchemaError(f"job schema {data.get('schema')!r} is not {JOB_SCHEMA}")
        values = {k: v for k, v in data.items() if k != "schema"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise SchemaError(f"unknown job fields: {', '.join(sorted(unknown))}")
        return cls(**values)

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def read(cls, path: Path) -> "WorkerJob":
        return cls.from_json(json.loads(Path(path).read_text()))

    def with_(self, **changes: Any) -> "WorkerJob":
        return dataclasses.replace(self, **changes)


@dataclass
class WorkerResult:
    """One run's result as the worker writes it (``"schema": 1``).

    ``samples`` holds raw per-sample columns (lists of equal length): ``sample_index``,
    ``preprocess_ns``, ``infer_ns`` (the sample's share of its batch), ``postprocess_ns``,
    ``batch`` (batch number), ``queue_ns`` (the rest of the request's latency: issue to start,
    and waiting for the other requests of its batch) and ``done_ns``
    (completion, relative to the start of the test).
    """

    status: str  # "ok" | "error"
    job: dict[str, Any]
    samples: dict[str, list[Any]] = field(default_factory=dict)
    loadgen: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"schema": RESULT_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "WorkerResult":
        if data.get("schema") != RESULT_SCHEMA:
            raise SchemaError(f"result schema {data.get('schema')!r} is not {RESULT_SCHEMA}")
        values = {k: v for k, v in data.items() if k != "schema"}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def write(self, path: Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)  # atomic: a reader never sees half a result

    @classmethod
    def read(cls, path: Path) -> "WorkerResult":
        return cls.from_json(json.loads(Path(path).read_text()))
