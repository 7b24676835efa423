"""Where generated data sets live, and generating them once (atomically) on first use.

A cached data set is used only when it verifies against its manifest (``verify_data``):
a damaged one is refused with the file and the command that regenerates it."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import MANIFEST, DataCheck, DataSetError, regenerate_command, verify_data


def home() -> Path:
    """deploybench's cache folder: $DEPLOYBENCH_HOME, else ~/.cache/deploybench."""
    return Path(os.environ.get("DEPLOYBENCH_HOME") or Path.home() / ".cache" / "deploybench")


def data_dir_for(app_name: str, count: int, seed: int) -> Path:
    safe = app_name.replace(":", "_").replace("/", "_").replace(".", "_")
    return home() / "data" / f"{safe}-n{count}-s{seed}"


def ensure_data(app, count: int, seed: int = 0, out_dir: Path | None = None,
                force: bool = False) -> Path:
    """The data set's folder, generated first if it is not there (never half-written).

    A cached set that does not verify raises DataSetError naming the bad file and the
    command that regenerates it (``force`` regenerates it)."""
    return prepare_data(app, count, seed, out_dir=out_dir, force=force)[0]


def prepare_data(app, count: int, seed: int = 0, out_dir: Path | None = None,
                 force: bool = False) -> tuple[Path, DataCheck | None]:
    """``ensure_data``, also returning the check of a cached set (None: generated now)."""
    name = getattr(app, "name", "app")
    target = Path(out_dir) if out_dir else data_dir_for(name, count, seed)
    if (target / MANIFEST).exists() and not force:
        check = verify_data(target)
        if check.problem:
            raise DataSetError(f"data set {target} is damaged: {check.problem}: regenerate it "
                               f"with `{regenerate_command(name, target)}`")
        return target, check
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
    return target, None
