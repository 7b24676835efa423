"""The result store: one SQLite file (default ``deploybench.db``).

``runs`` has one row per run (scenario, status, metadata, summary, warnings, JSON columns);
``samples`` keeps every request's raw phase times, so statistics are computed when read.
Each run is written in one transaction: a crash mid-write loses nothing already stored, and
a reader never sees a run without its samples. WAL mode lets a report read while a sweep
writes.

DESIGN
- Schema versions: ``PRAGMA user_version`` holds the store's schema (``meta.schema`` too, so
  that older deploybench versions, which read only ``meta``, refuse a newer store). A store
  from before user_version existed (0, with ``meta.schema = 1``) is version 1. Opening an
  older store for writing migrates it in one transaction (all or nothing); a newer one is
  refused in one line. Version 2 added ``launch_id``, ``launch_round``, ``block_id`` and
  ``block_pos`` to ``runs``.
- Two modes. ``Store(path)`` writes (run, sweep, import): it refuses up front, in one line
  naming the cause, a directory, a non-SQLite file, another program's database, a newer
  schema, a read-only file or folder, a read-only file system; ``check_writable`` adds a
  write test and the free space, for commands about to measure. ``Store(path,
  readonly=True)`` reads (show, report, compare, export): it needs no write access at all,
  so an archived store in a read-only folder or on a read-only disk can be read (a WAL
  store whose ``-shm`` cannot be created there is opened ``immutable``).
- A measurement is never lost: ``add_or_recover`` stores a run or, when the store cannot be
  written (disk full, permissions changed), writes the whole record to a recovery file
  beside the store (else in deploybench's home, else the temp folder) and returns its path;
  ``import_records`` (``deploybench import FILE``) adds it later, idempotently (by run id).
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import quote

from .scenario import Scenario
from .stats import summarize_samples

STORE_SCHEMA = 2
DEFAULT_DB = "deploybench.db"
#: schema of a RunRecord's JSON form (recovery files)
RECORD_SCHEMA = 1
#: schema and kind of a recovery file (runs that could not be stored)
RECOVERY_SCHEMA = 1
RECOVERY_KIND = "deploybench-unsaved-runs"
#: below this much free space on its disk a store is refused before measuring
MIN_FREE_BYTES = 1 << 20

SAMPLE_COLUMNS = ("sample_index", "preprocess_ns", "infer_ns", "postprocess_ns", "batch",
                  "queue_ns", "done_ns")

#: the current schema, one statement each (run in one transaction for a new store)
_TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE runs (
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
)""",
    "CREATE INDEX runs_scenario ON runs (scenario_key)",
    """CREATE TABLE stops (
    study TEXT NOT NULL,
    scenario_key TEXT NOT NULL,
    scenario_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT,
    runs INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (study, scenario_key)
)""",
    """CREATE TABLE samples (
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
)""",
)

#: MIGRATIONS[n]: the statements that turn schema n into n + 1 (all run in one transaction)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE runs ADD COLUMN launch_id TEXT",
        "ALTER TABLE runs ADD COLUMN launch_round INTEGER",
        "ALTER TABLE runs ADD COLUMN block_id TEXT",
        "ALTER TABLE runs ADD COLUMN block_pos INTEGER"),
}

RUN_COLUMNS = ("run_id", "run_key", "study", "repetition", "scenario_name", "app", "scenario_key",
               "scenario_json", "status", "error", "started_at", "finished_at", "host",
               "summary_json", "host_json", "platform_json", "environment_json", "metadata_json",
               "loadgen_json", "timings_json", "warnings_json", "console_tail", "launch_id",
               "launch_round", "block_id", "block_pos")


class StoreError(RuntimeError):
    """A store that cannot be used as asked; the message is one line naming the fix."""


class UnsavedRunError(StoreError):
    """A run was measured but could not be stored; its record is in ``recovery_path``."""

    def __init__(self, message: str, record: "RunRecord", recovery_path: Path) -> None:
        super().__init__(message)
        self.record = record
        self.recovery_path = recovery_path


@dataclass
class RunRecord:
    """A worker result plus the host-side facts of one run."""

    scenario: Scenario
    #: ok | warmup (ok, but a discarded warm-up run) | failed | timeout | interrupted | lost
    #: (measured on a fleet host that died, or whose task process died, mid-round: no result)
    status: str
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
    launch_id: str | None = None  # the platform launch this run was measured in
    launch_round: int | None = None  # 1-based round within that launch (1 = first after it)
    block_id: str | None = None  # the comparison block it belongs to
    block_pos: int | None = None  # its position in the block's random order

    @property
    def summary(self) -> dict[str, Any]:
        return summarize_samples(self.samples, self.scenario.loadgen_scenario.value,
                                 self.timings.get("run_s"))

    @property
    def warning_codes(self) -> list[str]:
        return sorted({w["code"] for w in self.warnings})

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "scenario"}
        return {"schema": RECORD_SCHEMA, "scenario": self.scenario.to_json(),
                **json.loads(_dumps(data))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        if data.get("schema") != RECORD_SCHEMA:
            raise StoreError(f"run record schema {data.get('schema')!r} is not {RECORD_SCHEMA}: "
                             "import it with the deploybench version that wrote it")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "scenario"}
        return cls(scenario=Scenario.from_json(data["scenario"]), **values)


#: statuses that count as a failure of the scenario (warm-up and interrupted runs do not)
FAILED_STATUSES = ("failed", "timeout")
#: a round whose host died under it (a fleet host, or its task process): neither the
#: scenario's failure nor a measurement; its launch epoch is measured again elsewhere
LOST_STATUS = "lost"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# -- what stands in the way of a store ---------------------------------------------------------
def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _no_write(path: Path) -> bool:
    """Not writable: by permissions (also for root, who ignores them: a file or folder with
    no write bit at all is meant to be read-only), an immutable flag or a read-only mount."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return True
    return not os.access(path, os.W_OK) or not mode & 0o222


def path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as a store file at all (for reading or writing)."""
    if path.is_dir():
        return (f"store {path} is a directory, not a file: pass a file, "
                f"e.g. --db {path / DEFAULT_DB}")
    if path.exists() and not path.is_file():
        return f"store {path} is not a regular file: pass a file path with --db"
    return None


def write_problem(path: Path) -> str | None:
    """Why a store at ``path`` cannot be written (None: it can), one line naming the fix."""
    problem = path_problem(path)
    if problem:
        return problem
    folder = path.parent
    if not folder.is_dir():
        return f"cannot open store {path}: folder {folder} does not exist (create it or pass another --db)"
    if _read_only_fs(folder):
        return (f"store {path} is on a read-only file system: pass --db on a writable disk "
                "(show, report, compare and export can read it where it is)")
    if path.exists() and _no_write(path):
        return (f"store {path} is a read-only file: make it writable (chmod u+w {path}) or "
                "pass another --db (show, report, compare and export can read it as it is)")
    if _no_write(folder):
        return (f"store {path} is in a read-only folder {folder} (SQLite writes its journal "
                f"beside the store): make the folder writable (chmod u+w {folder}) or pass "
                "--db in another folder")
    return free_space_problem(path)


def _is_wal_problem(exc: sqlite3.Error) -> bool:
    """A read failing for want of a -shm (read-only folder or disk, full disk), not for the
    file's content."""
    return isinstance(exc, sqlite3.OperationalError)


def _not_sqlite(path: Path, exc: sqlite3.Error) -> StoreError:
    try:
        with open(path, "rb") as f:
            sqlite = f.read(16) == b"SQLite format 3\0"
    except OSError:
        sqlite = False
    if sqlite:
        return StoreError(f"store {path} is a damaged SQLite file ({exc}): restore it from a copy, "
                          "or pass another --db")
    return StoreError(f"{path} is not an SQLite file ({exc}): pass the path of a deploybench "
                      "store with --db, or a new file name")


class Store:
    """A store opened for writing (default) or for reading only (``readonly=True``)."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self.db, self.schema = self._open_readonly()
        else:
            self.db, self.schema = self._open_writable()

    # -- opening -----------------------------------------------------------------------------
    def _uri(self, query: str) -> str:
        return f"file:{quote(str(self.path.resolve()))}?{query}"

    def _version(self, db: sqlite3.Connection) -> int | None:
        """The schema of the open file: None when it is empty (a new store)."""
        try:
            user_version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            if self.readonly and _is_wal_problem(exc):
                raise
            db.close()
            raise _not_sqlite(self.path, exc) from None
        if not tables and not user_version:
            return None
        if not {"meta", "runs"} <= tables:
            db.close()
            listed = ", ".join(sorted(tables)) or "none"
            raise StoreError(f"{self.path} is an SQLite database but not a deploybench store "
                             f"(its tables: {listed}): pass another --db")
        version = user_version
        if not version:  # written before user_version was used: meta.schema says (1)
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            version = int(row[0]) if row and str(row[0]).isdigit() else 1
        if version > STORE_SCHEMA:
            db.close()
            raise StoreError(f"store {self.path} has schema {version}, newer than this deploybench "
                             f"reads ({STORE_SCHEMA}): upgrade deploybench, or pass another --db")
        return version

    def _open_readonly(self) -> tuple[sqlite3.Connection, int]:
        problem = path_problem(self.path)
        if problem:
            raise StoreError(problem)
        if not self.path.exists():
            raise StoreError(f"no store at {self.path}: run `deploybench run ...` first or pass --db")
        db = sqlite3.connect(self._uri("mode=ro"), uri=True, timeout=30, isolation_level=None)
        try:
            version = self._version(db)
        except sqlite3.DatabaseError:
            # a WAL store where its -shm cannot be created (read-only folder or disk, full
            # disk): read the file as it is, unless a -wal holds changes it would miss
            db.close()
            wal = Path(f"{self.path}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreError(
                    f"store {self.path} has changes in {wal.name} that cannot be read from a "
                    f"read-only folder or a full disk: copy {self.path.name} and {wal.name} "
                    "to a writable folder and pass that --db") from None
            db = sqlite3.connect(self._uri("mode=ro&immutable=1"), uri=True, timeout=30,
                                 isolation_level=None)
            try:
                version = self._version(db)
            except sqlite3.DatabaseError as exc:
                db.close()
                raise _not_sqlite(self.path, exc) from None
        if version is None:
            db.close()
            raise StoreError(f"{self.path} is empty, not a deploybench store: pass another --db")
        return db, version

    def _open_writable(self) -> tuple[sqlite3.Connection, int]:
        problem = write_problem(self.path)
        if problem:
            raise StoreError(problem)
        try:
            db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        version = self._version(db)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            if version is None:
                version = self._create(db)
            elif version < STORE_SCHEMA:
                version = self._migrate(db, version)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"cannot write store {self.path}: {exc}") from None
        return db, version

    def _create(self, db: sqlite3.Connection) -> int:
        db.execute("BEGIN IMMEDIATE")
        try:
            if self._version(db) is None:  # nobody else created it meanwhile
                for statement in _TABLES:
                    db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(STORE_SCHEMA),))
                db.execute(f"PRAGMA user_version = {STORE_SCHEMA}")
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return STORE_SCHEMA

    def _migrate(self, db: sqlite3.Connection, version: int) -> int:
        """From ``version`` to STORE_SCHEMA in one transaction: all of it or nothing."""
        first = version
        db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version(db) or STORE_SCHEMA  # another writer may have migrated it
            while version < STORE_SCHEMA:
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(STORE_SCHEMA),))
            db.execute(f"PRAGMA user_version = {STORE_SCHEMA}")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(db)
            raise sqlite3.DatabaseError(
                f"migrating it from schema {first} to {STORE_SCHEMA} failed, nothing was "
                f"changed: {exc}") from None
        except BaseException:
            _rollback(db)
            raise
        return STORE_SCHEMA

    def check_writable(self) -> None:
        """Before measuring: refuse, in one line naming the cause, a store that could not
        take a run now (the checks of opening, again: permissions, read-only disk, free
        space; then a real write test: the write lock, a file created beside the store)."""
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only")
        problem = write_problem(self.path)
        if problem:
            raise StoreError(problem)
        try:
            self.db.execute("BEGIN IMMEDIATE")  # takes the write lock: the -wal and -shm work
            _rollback(self.db)
            fd, probe = tempfile.mkstemp(prefix=f".{self.path.name}-", suffix=".write-test",
                                         dir=self.path.parent)
            os.close(fd)
            os.unlink(probe)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot write store {self.path}: {exc}: make it writable or pass "
                             "another --db") from None

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
        values = (record.run_id, record.run_key, record.study, record.repetition,
                  record.scenario.name, record.scenario.app, record.scenario.key,
                  _dumps(record.scenario.to_json()), record.status, record.error,
                  record.started_at, record.finished_at, record.host.get("host"),
                  _dumps(summary), _dumps(record.host), _dumps(record.platform),
                  _dumps(record.environment), _dumps(record.metadata), _dumps(record.loadgen),
                  _dumps(record.timings), _dumps(record.warnings), record.console_tail,
                  record.launch_id, record.launch_round, record.block_id, record.block_pos)
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "
                            f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})", values)
            self.db.executemany(
                "INSERT INTO samples (run_id, seq, sample_id, sample_index, preprocess_ns, "
                "infer_ns, postprocess_ns, batch, queue_ns, done_ns) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self.db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            _rollback(self.db)
            if "UNIQUE" in str(exc):
                raise StoreError(f"run {record.run_key or record.run_id} is already stored") from None
            raise
        except BaseException:
            _rollback(self.db)
            raise

    def add_or_recover(self, record: RunRecord) -> Path | None:
        """Store ``record``; when the store cannot take it (disk full, permissions changed,
        the file gone bad), write the whole record to a recovery file instead and return
        that file's path (None: stored). A run already stored raises StoreError as ``add``."""
        try:
            self.add(record)
            return None
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            return write_recovery([record], self.path, reason=_one_line(exc))

    def keep(self, record: RunRecord) -> None:
        """Store ``record`` or, when the store cannot take it, save it whole to a recovery file
        and raise UnsavedRunError saying where (one line): the command stops there, since
        every later run would meet the same store. What measuring code hands each record to."""
        saved = self.add_or_recover(record)
        if saved is not None:
            raise UnsavedRunError(unsaved_message(record, self, saved), record, saved)

    def import_records(self, records: Sequence[RunRecord]) -> tuple[int, int]:
        """Add recovered runs; (added, already stored). Idempotent: a run whose id is stored
        is skipped. A sweep's run whose slot was filled again meanwhile keeps its data but
        not its slot key (so the slot is not counted twice)."""
        added = skipped = 0
        try:
            for record in records:
                if self.db.execute("SELECT 1 FROM runs WHERE run_id=?", (record.run_id,)).fetchone():
                    skipped += 1
                    continue
                if record.run_key is not None and self.has_key(record.run_key):
                    record = _replace(record, run_key=None)
                self.add(record)
                added += 1
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot add runs to store {self.path} ({_one_line(exc)}): {added} "
                             "added so far; fix it and import again (nothing is added twice)") from None
        return added, skipped

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
            # schema 2 (a schema-1 store read without migrating has none of them)
            launch_id=row.get("launch_id"),
            launch_round=row.get("launch_round"),
            block_id=row.get("block_id"),
            block_pos=row.get("block_pos"),
        )

    def study_runs(self, study: str) -> list[dict[str, Any]]:
        """A study's runs without samples, as light rows (for resuming and racing): run_key,
        scenario_key, repetition (the launch epoch), status, error, started_at, finished_at,
        launch_id, launch_round, block_id, block_pos, host, start_latency_s, launch_wall and
        ready_wall (when its launch began and its worker was warm), launched_with (the
        sessions that started together with it), summary, and
        host_class (the run's stored host fingerprint; None for runs stored before there
        was one)."""
        cur = self.db.execute(
            "SELECT run_key, scenario_key, repetition, status, error, started_at, finished_at, "
            "launch_id, launch_round, block_id, block_pos, host, "
            "json_extract(platform_json, '$.start_latency_s') AS start_latency_s, "
            "json_extract(platform_json, '$.launch_wall') AS launch_wall, "
            "json_extract(platform_json, '$.ready_wall') AS ready_wall, "
            "json_extract(platform_json, '$.launched_with') AS launched_with, "
            "json_extract(host_json, '$.fingerprint') AS host_class, "
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
        try:
            self.db.execute("INSERT OR REPLACE INTO stops VALUES (?,?,?,?,?,?,?)",
                            (study, scenario.key, scenario.name, reason, detail, runs, time.time()))
        except sqlite3.Error as exc:  # the runs are stored; a resumed sweep decides it again
            raise StoreError(f"cannot write store {self.path} ({_one_line(exc)}): every run so far "
                             "is stored; make it writable and run the sweep again (it resumes)") from None

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


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:  # the transaction is gone already (SQLite rolled it back)
            pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _replace(record: RunRecord, **changes: Any) -> RunRecord:
    import dataclasses

    return dataclasses.replace(record, **changes)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def free_space_problem(path: Path, minimum: int = MIN_FREE_BYTES) -> str | None:
    """Why a store's disk cannot take runs: (nearly) full, so a run would be measured and
    not stored."""
    try:
        free = free_bytes(Path(path).parent)
    except OSError:
        return None
    if free < minimum:
        return (f"the disk holding store {path} is full ({free // 1024} KiB free): free some "
                "space or pass --db on another disk")
    return None


# -- recovery files: runs that could not be stored ----------------------------------------------
def recovery_folders(store_path: Path) -> list[Path]:
    """Where a recovery file may go, best first: beside the store, deploybench's home, /tmp."""
    from .datasets.cache import home

    return [Path(store_path).resolve().parent, home() / "unsaved", Path(tempfile.gettempdir())]


def unsaved_message(record: RunRecord, store: "Store", saved: Path) -> str:
    """One line: which run could not be stored, where it is, and how to add it later."""
    import shlex

    return (f"run {record.scenario.label} ({record.status}) could not be stored in {store.path}; "
            f"its full record is saved in {saved}: once the store can be written, add it with "
            f"`deploybench import {shlex.quote(str(saved))}`")


def write_recovery(records: Sequence[RunRecord], store_path: Path, reason: str) -> Path:
    """Write ``records`` to a recovery file (atomically: complete or absent) in the first
    folder that takes it; return its path. Raises StoreError only when no folder could."""
    store_path = Path(store_path)
    document = {"schema": RECOVERY_SCHEMA, "kind": RECOVERY_KIND,
                "store": str(store_path.resolve()), "reason": reason, "saved_at": time.time(),
                "runs": [r.to_json() for r in records]}
    data = json.dumps(document, indent=1).encode()
    name = f"{store_path.name}.unsaved-{records[0].run_id[:12]}.json"
    problems = []
    for folder in recovery_folders(store_path):
        target = folder / name
        tmp = folder / f".{name}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            return target
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
            try:
                tmp.unlink()
            except OSError:
                pass
    raise StoreError(f"run {records[0].run_id} could not be stored ({reason}) nor saved "
                     f"anywhere ({'; '.join(problems)})")


def read_recovery(path: Path) -> tuple[list[RunRecord], str | None]:
    """The runs of a recovery file and the store they were meant for."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"no file {path}: pass a recovery file that deploybench named") from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is not a recovery file ({_one_line(exc)})") from None
    if not isinstance(document, dict) or document.get("kind") != RECOVERY_KIND:
        raise StoreError(f"{path} is not a deploybench recovery file (no kind {RECOVERY_KIND!r})")
    if document.get("schema") != RECOVERY_SCHEMA:
        raise StoreError(f"{path} has recovery schema {document.get('schema')!r}, this deploybench "
                         f"reads {RECOVERY_SCHEMA}: import it with a matching version")
    try:
        records = [RunRecord.from_json(r) for r in document["runs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: a run in it is incomplete ({_one_line(exc)})") from None
    return records, document.get("store")


def host_class_of(record: RunRecord) -> str:
    """The class of the host a run was measured on (``host.host_fingerprint``): stored with
    the run, or computed from its host metadata for runs stored before it was."""
    from .host import host_fingerprint

    return str(record.host.get("fingerprint") or host_fingerprint(record.host))


def group_by_scenario(records: Sequence[RunRecord]) -> dict[tuple[str, str, str], list[RunRecord]]:
    """Runs that may be averaged together: same scenario, same host class (identical hosts:
    ``host_class_of``), same accelerator.

    Runs whose key metadata differ (another kind of host; an emulated VM next to a native
    one) are never silently pooled.
    """
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        accel = str(record.platform.get("accel", "native"))
        groups.setdefault((record.scenario.key, host_class_of(record), accel), []).append(record)
    return groups
