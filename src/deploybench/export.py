"""Export a store's runs and raw per-request samples for other tools: CSV, JSON lines, or
Parquet (when pyarrow is installed). Two tables, joined by ``run_id``:

- ``runs``: one row per run, scenario fields flattened (``platform``, ``cores``, ...),
  status, error, timings, the per-run summary (``e2e_mean_ms``, ``p90_ms``, ...), the host
  and accelerator, warning codes;
- ``samples``: one row per request with its raw phase times in ns.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from .store import SAMPLE_COLUMNS, RunRecord, Store

FORMATS = ("csv", "jsonl", "parquet")
SAMPLE_FIELDS = ("run_id", "seq", "sample_id", *SAMPLE_COLUMNS)


class ExportError(RuntimeError):
    pass


def run_row(record: RunRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"run_id": record.run_id, "run_key": record.run_key,
                           "study": record.study, "repetition": record.repetition,
                           "scenario": record.scenario.name}
    row.update(record.scenario.to_json())
    row.update({
        "status": record.status, "error": record.error,
        "started_at": record.started_at, "finished_at": record.finished_at,
        "host": record.host.get("host"), "accel": record.platform.get("accel", "native"),
        "start_latency_s": record.platform.get("start_latency_s"),
        "warnings": " ".join(record.warning_codes),
    })
    row.update({f"summary_{k}" if k in row else k: v for k, v in record.summary.items()})
    return row


def _sample_rows(store: Store) -> Iterator[dict[str, Any]]:
    cursor = store.db.execute(
        "SELECT " + ", ".join(SAMPLE_FIELDS) + " FROM samples ORDER BY run_id, seq")
    for values in cursor:
        yield dict(zip(SAMPLE_FIELDS, values))


def export(store: Store, out_dir: Path, fmt: str = "csv") -> list[Path]:
    """Write ``runs.<ext>`` and ``samples.<ext>`` into ``out_dir``; return their paths.

    All or nothing: the format and its library are checked before anything is written, each
    file is written under a temporary name and renamed when complete, and a failure removes
    what this export wrote (and ``out_dir`` when it created it)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ExportError("parquet export needs pyarrow: pip install pyarrow, or use --format csv") from None
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file, not a folder: pass another -o/--out")
    runs = [run_row(r) for r in store.runs(with_samples=True)]
    columns: list[str] = []
    for row in runs:
        columns += [k for k in row if k not in columns]
    paths = [out_dir / f"runs.{fmt}", out_dir / f"samples.{fmt}"]
    created = not out_dir.exists()
    written: list[Path] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, table in zip(paths, ("runs", "samples")):
            tmp = path.with_name(f".{path.name}.tmp")
            written.append(tmp)
            if fmt == "csv":
                if table == "runs":
                    _write_csv(tmp, columns, runs)
                else:
                    _write_csv(tmp, list(SAMPLE_FIELDS), _sample_rows(store))
            elif fmt == "jsonl":
                _write_jsonl(tmp, runs if table == "runs" else _sample_rows(store))
            else:
                rows = ([{c: r.get(c) for c in columns} for r in runs] if table == "runs"
                        else list(_sample_rows(store)))
                pq.write_table(pa.Table.from_pylist(rows), tmp)
        for tmp, path in zip(written, paths):
            tmp.replace(path)
    except OSError as exc:
        _remove(written, out_dir if created else None)
        raise ExportError(f"cannot write the export to {out_dir}: {exc.strerror or exc}") from None
    except BaseException:
        _remove(written, out_dir if created else None)
        raise
    return paths


def _remove(files: list[Path], folder: Path | None) -> None:
    for path in files:
        path.unlink(missing_ok=True)
    if folder is not None:
        try:
            folder.rmdir()
        except OSError:
            pass


def _write_csv(path: Path, columns: list[str], rows: Any) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _write_jsonl(path: Path, rows: Any) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
