"""The NLP app, the onnxruntime backend and a user's own app, run for real through the CLI
on bare metal (a pinned cgroup, the worker as a subprocess, LoadGen)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "deploybench"]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own application", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One DEPLOYBENCH_HOME for the module: data sets and ONNX exports are made once."""
    return tmp_path_factory.mktemp("home")


def deploybench(home: Path, *args: str, pythonpath: str | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEPLOYBENCH_HOME=str(home))
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=home)


def show(home: Path, db: Path) -> list[dict]:
    out = deploybench(home, "show", "--json", "--db", str(db))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def assert_phases(summary: dict, requests: int) -> None:
    assert summary["samples"] == requests
    for phase in ("pre_ms", "infer_ms", "post_ms"):
        assert summary[phase] > 0, phase
    assert summary["e2e_mean_ms"] >= summary["infer_ms"]


def test_nlp_tiny_runs_on_pinned_bare_metal_and_show_splits_the_phases(needs_cgroups, home, tmp_path):
    db = tmp_path / "db.sqlite"
    out = deploybench(home, "run", "BM/1/PIN/CPU", "--app", "nlp", "--model-size", "tiny",
                      "--requests", "16", "--data-count", "16", "--db", str(db))
    assert out.returncode == 0, out.stderr
    (summary,) = show(home, db)
    assert (summary["app"], summary["model_size"], summary["backend"]) == ("nlp", "tiny", "torch")
    assert_phases(summary, 16)
    assert summary["affinity_cpus"] and len(summary["affinity_cpus"]) == 1


def test_ic_and_nlp_tiny_run_on_onnxruntime_and_record_the_backend(needs_cgroups, home, tmp_path):
    from deploybench.store import Store

    db = tmp_path / "db.sqlite"
    for app in ("ic", "nlp"):
        out = deploybench(home, "run", "BM/1/PIN/CPU", "--app", app, "--model-size", "tiny",
                          "--backend", "onnxruntime", "--requests", "16", "--data-count", "16",
                          "--db", str(db))
        assert out.returncode == 0, out.stderr
    summaries = show(home, db)
    assert sorted((s["app"], s["backend"]) for s in summaries) == [
        ("ic", "onnxruntime"), ("nlp", "onnxruntime")]
    for summary in summaries:
        assert_phases(summary, 16)
    store = Store(db)
    try:
        for record in store.runs():
            assert record.metadata.get("onnxruntime_version")
    finally:
        store.close()
    assert len(list((home / "onnx").glob("*-tiny-*.onnx"))) == 2  # exported once, cached


def test_readme_example_app_runs_in_the_worker_from_pythonpath(needs_cgroups, home, tmp_path):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "my_readme_app.py").write_text(readme_example())
    db = tmp_path / "db.sqlite"
    args = ("run", "BM/1/PIN/CPU", "--app", "my_readme_app:SignalApp", "--requests", "16",
            "--data-count", "16", "--db", str(db))

    missing = deploybench(home, *args)  # not on PYTHONPATH: one line, no traceback
    assert missing.returncode == 2
    assert "cannot import app module 'my_readme_app'" in missing.stderr
    assert "Traceback" not in missing.stderr

    out = deploybench(home, *args, pythonpath=str(plugin_dir))
    assert out.returncode == 0, out.stderr
    (summary,) = show(home, db)
    assert (summary["app"], summary["model_size"], summary["backend"]) == (
        "my_readme_app:SignalApp", "small", "numpy")
    assert_phases(summary, 16)
