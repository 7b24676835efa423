"""Deterministic generators of the apps' input files, in real formats, written to disk."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def write_manifest(out_dir: Path, app: str, count: int, seed: int, files: list[str],
                   **extra: Any) -> None:
    data = {"schema": 1, "app": app, "count": count, "seed": seed, "files": files, **extra}
    (out_dir / MANIFEST).write_text(json.dumps(data, indent=1))


def read_manifest(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"no data set in {data_dir}: generate it with `deploybench data --app ...`"
        )
    return json.loads(path.read_text())
