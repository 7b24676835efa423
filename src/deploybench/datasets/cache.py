"""Where generated data sets live, and generating them once (atomically) on first use."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import MANIFEST


def home() -> Path:
    """deploybench's cache folder: $DEPLOYBENCH_HOME, else ~/.cache/deploybench."""
    return Path(os.environ.get("DEPLOYBENCH_HOME") or Path.home() / ".cache" / "deploybench")


def data_dir_for(app_name: str, count: int, seed: int) -> Path:
    safe = app_name.replace(":", "_").replace("/", "_").replace(".", "_")
    return home() / "data" / f"{safe}-n{count}-s{seed}"


def ensure_data(app, count: int, seed: int = 0, out_dir: Path | None = None,
                force: bool = False) -> Path:
    """The data set's folder, generated first if it is not there (never half-written)."""
    target = Path(out_dir) if out_dir else data_dir_for(getattr(app, "name", "app"), count, seed)
    if (target / MANIFEST).exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        app.generate_data(tmp, count, seed)
        if target.exists():
            shutil.rmtree(target)
        tmp.chmod(0o755)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
