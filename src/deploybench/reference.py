"""Reference results: another machine's runs, shown beside a user's own in the report.

A reference set is one folder (see ``reference/README.md``)::

    reference.json   {"schema": 1, "machine": ..., "date": ..., "command": ..., ...}
    runs.jsonl       `deploybench export --format jsonl` of that machine's store
    samples.jsonl    (the raw per-request times, same export; not needed to show means)
    report.html      that machine's own report

``deploybench report --reference DIR`` loads it with :func:`load_reference` and the report
gets a section listing the reference's scenarios with their mean E2E and inference times,
labelled with the machine, the date and the command that made them, next to the user's own
mean of the same scenario and workload where there is one. The reference's runs never join
the user's cells: they come from another host, and runs from different hosts are never
pooled.

``python -m deploybench.reference manifest DIR --machine ... --command ...`` writes the
``reference.json`` (scripts/device_check.sh does, next to its export).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

REFERENCE_SCHEMA = 1
MANIFEST = "reference.json"
RUNS = "runs.jsonl"


class ReferenceError(RuntimeError):
    """An unusable reference folder; the message is one line for people."""


@dataclass(frozen=True)
class ReferenceInfo:
    """Where a reference set comes from."""

    machine: str  # e.g. "1x NVIDIA H200, 16 cores (AMD EPYC ...), 128 GiB"
    date: str  # ISO date of the run
    command: str  # the command that produced it
    git_revision: str = ""
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"schema": REFERENCE_SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ReferenceInfo":
        if data.get("schema") != REFERENCE_SCHEMA:
            raise ReferenceError(f"reference schema {data.get('schema')!r} is not {REFERENCE_SCHEMA}")
        try:
            return cls(**{k: v for k, v in data.items() if k != "schema"})
        except TypeError as exc:
            raise ReferenceError(f"reference manifest: {exc}") from None

    @property
    def label(self) -> str:
        return f"{self.machine}, {self.date}: `{self.command}`"


#: the run fields that say what was measured (a reference row's identity)
KEY_FIELDS = ("scenario", "app", "model_size", "backend", "batch_size", "inference_only",
              "loadgen_scenario")


@dataclass(frozen=True)
class ReferenceRow:
    """One scenario and workload of the reference: its mean over successful runs."""

    scenario: str  # PLATFORM/CORES/MODE/PROC
    app: str
    model_size: str
    backend: str
    batch_size: int
    inference_only: bool
    loadgen_scenario: str
    runs: int
    e2e_mean_ms: float
    infer_mean_ms: float
    pre_mean_ms: float
    post_mean_ms: float

    @property
    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    @property
    def workload(self) -> str:
        extra = f", batch {self.batch_size}" if self.batch_size != 1 else ""
        only = ", inference only" if self.inference_only else ""
        return f"{self.app} ({self.model_size}, {self.backend}{extra}{only})"


@dataclass(frozen=True)
class ReferenceSet:
    info: ReferenceInfo
    rows: tuple[ReferenceRow, ...]
    path: str


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def rows_from_export(runs: Iterable[dict[str, Any]]) -> tuple[ReferenceRow, ...]:
    """Mean per scenario and workload of the successful runs in an export's ``runs`` rows."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        if run.get("status") != "ok" or run.get("e2e_mean_ms") is None:
            continue
        key = tuple(run.get(f) for f in KEY_FIELDS)
        groups.setdefault(key, []).append(run)
    rows = []
    for key, group in groups.items():
        values = dict(zip(KEY_FIELDS, key))
        rows.append(ReferenceRow(
            scenario=str(values["scenario"]), app=str(values["app"]),
            model_size=str(values["model_size"]), backend=str(values["backend"]),
            batch_size=int(values["batch_size"] or 1), inference_only=bool(values["inference_only"]),
            loadgen_scenario=str(values["loadgen_scenario"]), runs=len(group),
            e2e_mean_ms=_mean([g["e2e_mean_ms"] for g in group]),
            infer_mean_ms=_mean([g.get("infer_ms") for g in group]),
            pre_mean_ms=_mean([g.get("pre_ms") for g in group]),
            post_mean_ms=_mean([g.get("post_ms") for g in group])))
    return tuple(sorted(rows, key=lambda r: (r.app, r.model_size, r.inference_only, r.scenario)))


def load_reference(folder: Path) -> ReferenceSet:
    """The reference set in ``folder`` (its manifest and its runs export)."""
    folder = Path(folder)
    manifest, runs_path = folder / MANIFEST, folder / RUNS
    if not manifest.is_file() or not runs_path.is_file():
        raise ReferenceError(f"{folder} is not a reference set: it needs {MANIFEST} and {RUNS} "
                             "(see reference/README.md)")
    try:
        info = ReferenceInfo.from_json(json.loads(manifest.read_text()))
    except json.JSONDecodeError as exc:
        raise ReferenceError(f"{manifest} is not JSON: {exc}") from None
    runs = []
    for number, line in enumerate(runs_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            raise ReferenceError(f"{runs_path} line {number} is not JSON") from None
    rows = rows_from_export(runs)
    if not rows:
        raise ReferenceError(f"{runs_path} holds no successful run")
    return ReferenceSet(info, rows, str(folder))


@dataclass(frozen=True)
class ReferenceLine:
    """A reference row and the user's own mean of the same scenario and workload."""

    reference: ReferenceRow
    own_e2e_mean_ms: float | None  # None = not measured by the user

    @property
    def own_over_reference(self) -> float | None:
        if self.own_e2e_mean_ms is None or not self.reference.e2e_mean_ms:
            return None
        return self.own_e2e_mean_ms / self.reference.e2e_mean_ms


def beside_own(reference: ReferenceSet, records: Sequence[Any]) -> list[ReferenceLine]:
    """Each reference row next to the mean of the user's own successful runs of it."""
    from .export import run_row

    own = {row.key: row for row in rows_from_export(run_row(r) for r in records)}
    return [ReferenceLine(row, own[row.key].e2e_mean_ms if row.key in own else None)
            for row in reference.rows]


def write_manifest(folder: Path, info: ReferenceInfo) -> Path:
    path = Path(folder) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info.to_json(), indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploybench.reference")
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("manifest", help="write DIR/reference.json")
    m.add_argument("folder", type=Path)
    m.add_argument("--machine", required=True)
    m.add_argument("--command", required=True)
    m.add_argument("--date", default=_dt.date.today().isoformat())
    m.add_argument("--git-revision", default="")
    m.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    info = ReferenceInfo(args.machine, args.date, args.command, args.git_revision, args.notes)
    print(write_manifest(args.folder, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
