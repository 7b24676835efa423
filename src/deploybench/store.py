"""The result store: one SQLite file (default ``deploybench.db``).

``runs`` has one row per run (scenario, status, metadata, summary, warnings, JSON columns);
``samples`` keeps every request's raw phase times, so statistics are computed when read.
Each run is written in one transaction: a crash mid-write loses nothing already stored, and
a reader never sees a run without its samples. WAL mode lets a report read while a sweep
writes.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from .scenario import Scenario
from .stats import summarize_samples

STORE_SCHEMA = 1
DEFAULT_DB = "deploybench.db"

SAMPLE_COLUMNS = ("sample_index", "preprocess_ns", "infer_ns", "postprocess_ns", "batch",
                  "queue_ns", "done_ns")

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    run_key TEXT UNIQUE,
    study TEXT,
    repetition INTEGER,
    scenario_name TEXT NOT NULL,
    app TEXT NOT NULL,
    scenario_key TEXT NOT NULL,
    scenario_json TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    host TEXT,
    summary_json TEXT NOT NULL,
    host_json TEXT NOT NULL,
    platform_json TEXT NOT NULL,
    environment_json TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    loadgen_json TEXT NOT NULL,
    timings_json TEXT NOT NULL,
    warnings_json TEXT NOT NULL,
    console_tail TEXT,
    launch_id TEXT,
    launch_round INTEGER,
    block_id TEXT,
    block_pos INTEGER
);
CREATE INDEX IF NOT EXISTS runs_scenario ON runs (scenario_key);
CREATE TABLE IF NOT EXISTS stops (
    study TEXT NOT NULL,
    scenario_key TEXT NOT NULL,
    scenario_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT,
    runs INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (study, scenario_key)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    sample_id TEXT,
    sample_index INTEGER,
    preprocess_ns INTEGER NOT NULL,
    infer_ns INTEGER NOT NULL,
    postprocess_ns INTEGER NOT NULL,
    batch INTEGER,
    queue_ns INTEGER,
    done_ns INTEGER,
    PRIMARY KEY (run_id, seq)
);
"""


class StoreError(RuntimeError):
    pass


@dataclass
class RunRecord:
    """A worker result plus the host-side facts of one run."""

    scenario: Scenario
    status: str  # ok | warmup (ok, but a discarded warm-up run) | failed | timeout | interrupted
    started_at: float
    finished_at: float
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    run_key: str | None = None  # idempotent identity within a study (resume)
    study: str | None = None
    repetition: int | None = None
    error: str | None = None
    host: dict[str, Any] = field(default_factory=dict)  # host metadata (system.run_metadata)
    platform: dict[str, Any] = field(default_factory=dict)  # platform facts (cgroup, boot...)
    environment: dict[str, Any] = field(default_factory=dict)  # what the worker got
    metadata: dict[str, Any] = field(default_factory=dict)  # the worker's metadata
    loadgen: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)
    samples: dict[str, list[Any]] = field(default_factory=dict)
    console_tail: str = ""
    launch_id: str | None = None  # the platform launch (session) the round was measured in
    launch_round: int | None = None  # 1-based round number within that launch
    block_id: str | None = None  # the comparison block it belongs to
    block_pos: int | None = None  # its position in the block's random order

    @property
    def summary(self) -> dict[str, Any]:
        return summarize_samples(self.samples, self.scenario.loadgen_scenario.value,
                                 self.timings.get("run_s"))

    @property
    def warning_codes(self) -> list[str]:
        return sorted({w["code"] for w in self.warnings})


#: statuses that count as a failure of the scenario (warm-up and interrupted runs do not)
FAILED_STATUSES = ("failed", "timeout")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Store:
    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"cannot open store {self.path}: folder {self.path.parent} does not exist")
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_DDL)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a deploybench store: {exc}") from None
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(STORE_SCHEMA),))
        elif int(row[0]) != STORE_SCHEMA:
            raise StoreError(f"{self.path} has store schema {row[0]}, this deploybench reads {STORE_SCHEMA}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def add(self, record: RunRecord) -> None:
        """Store one run and its samples atomically."""
        s = record.samples
        n = len(s.get("preprocess_ns", []))
        ids = s.get("sample_id") or [None] * n
        rows = [
            (record.run_id, i, ids[i], *(s.get(c, [None] * n)[i] for c in SAMPLE_COLUMNS))
            for i in range(n)
        ]
        summary = record.summary
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.run_id, record.run_key, record.study, record.repetition,
                 record.scenario.name, record.scenario.app, record.scenario.key,
                 _dumps(record.scenario.to_json()), record.status, record.error,
                 record.started_at, record.finished_at, record.host.get("host"),
                 _dumps(summary), _dumps(record.host), _dumps(record.platform),
                 _dumps(record.environment), _dumps(record.metadata), _dumps(record.loadgen),
                 _dumps(record.timings), _dumps(record.warnings), record.console_tail,
                 record.launch_id, record.launch_round, record.block_id, record.block_pos),
            )
            self.db.executemany(
                "INSERT INTO samples (run_id, seq, sample_id, sample_index, preprocess_ns, "
                "infer_ns, postprocess_ns, batch, queue_ns, done_ns) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self.db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self.db.execute("ROLLBACK")
            if "UNIQUE" in str(exc):
                raise StoreError(f"run {record.run_key or record.run_id} is already stored") from None
            raise
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def delete_run(self, run_id: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM samples WHERE run_id=?", (run_id,))
        self.db.execute("DELETE FROM runs WHERE run_id=?", (run_id,))
        self.db.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------
    def has_key(self, run_key: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE run_key=?", (run_key,)).fetchone() is not None

    def keys(self, study: str | None = None) -> set[str]:
        sql = "SELECT run_key FROM runs WHERE run_key IS NOT NULL"
        args: tuple = ()
        if study is not None:
            sql += " AND study=?"
            args = (study,)
        return {r[0] for r in self.db.execute(sql, args)}

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM runs WHERE status=?", (status,)).fetchone()[0]

    def runs(self, *, status: str | None = None, study: str | None = None,
             with_samples: bool = True, scenario_key: str | None = None) -> list[RunRecord]:
        sql = "SELECT * FROM runs WHERE 1=1"
        args: list[Any] = []
        for column, value in (("status", status), ("study", study), ("scenario_key", scenario_key)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value)
        sql += " ORDER BY started_at, run_id"
        cur = self.db.execute(sql, args)
        names = [d[0] for d in cur.description]
        records = [self._record(dict(zip(names, row))) for row in cur.fetchall()]
        if with_samples:
            for record in records:
                record.samples = self.samples(record.run_id)
        return records

    def samples(self, run_id: str) -> dict[str, list[Any]]:
        cur = self.db.execute(
            "SELECT sample_id, " + ", ".join(SAMPLE_COLUMNS) + " FROM samples WHERE run_id=? ORDER BY seq",
            (run_id,),
        )
        rows = cur.fetchall()
        out: dict[str, list[Any]] = {"sample_id": [r[0] for r in rows]}
        for i, column in enumerate(SAMPLE_COLUMNS, start=1):
            out[column] = [r[i] for r in rows]
        return out

    @staticmethod
    def _record(row: dict[str, Any]) -> RunRecord:
        return RunRecord(
            scenario=Scenario.from_json(json.loads(row["scenario_json"])),
            status=row["status"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            run_id=row["run_id"],
            run_key=row["run_key"],
            study=row["study"],
            repetition=row["repetition"],
            error=row["error"],
            host=json.loads(row["host_json"]),
            platform=json.loads(row["platform_json"]),
            environment=json.loads(row["environment_json"]),
            metadata=json.loads(row["metadata_json"]),
            loadgen=json.loads(row["loadgen_json"]),
            timings=json.loads(row["timings_json"]),
            warnings=json.loads(row["warnings_json"]),
            console_tail=row["console_tail"] or "",
            launch_id=row.get("launch_id"),
            launch_round=row.get("launch_round"),
            block_id=row.get("block_id"),
            block_pos=row.get("block_pos"),
        )

    def study_runs(self, study: str) -> list[dict[str, Any]]:
        """A study's runs without samples, as light rows (for resuming and stopping rules):
        run_key, scenario_key, repetition, status, error, started_at, finished_at, launch_id,
        launch_round, block_id, block_pos, host, summary."""
        cur = self.db.execute(
            "SELECT run_key, scenario_key, repetition, status, error, started_at, finished_at, "
            "launch_id, launch_round, block_id, block_pos, host, "
            "summary_json FROM runs WHERE study=? ORDER BY started_at, run_id", (study,))
        names = [d[0] for d in cur.description]
        rows = []
        for values in cur.fetchall():
            row = dict(zip(names, values))
            row["summary"] = json.loads(row.pop("summary_json") or "{}")
            rows.append(row)
        return rows

    def record_stop(self, study: str, scenario: Scenario, reason: str, detail: str,
                    runs: int) -> None:
        """Why a study stopped repeating a scenario (the latest word wins)."""
        self.db.execute("INSERT OR REPLACE INTO stops VALUES (?,?,?,?,?,?,?)",
                        (study, scenario.key, scenario.name, reason, detail, runs, time.time()))

    def stops(self, study: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT study, scenario_key, scenario_name, reason, detail, runs, at FROM stops"
        args: tuple = ()
        if study is not None:
            sql += " WHERE study=?"
            args = (study,)
        cur = self.db.execute(sql + " ORDER BY at", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def iter_sample_rows(self) -> Iterator[tuple]:
        yield from self.db.execute("SELECT * FROM samples ORDER BY run_id, seq")


def now() -> float:
    return time.time()


def group_by_scenario(records: Sequence[RunRecord]) -> dict[tuple[str, str, str], list[RunRecord]]:
    """Runs that may be averaged together: same scenario, same host, same accelerator.

    Runs whose key metadata differ (another host; an emulated VM next to a native one) are
    never silently pooled.
    """
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        accel = str(record.platform.get("accel", "native"))
        groups.setdefault((record.scenario.key, record.host.get("host", "?"), accel), []).append(record)
    return groups
