"""Users' own apps: the README example is the shipped example, the registry loads it and
checks the protocol, and what is wrong is one line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploybench.apps import App, AppError, resolve_app_class

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The first ```python block under '## Your own application' in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own application", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture()
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for test modules; their imports are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("plugin_"):
            del sys.modules[name]


def test_readme_example_is_the_shipped_examples_my_app():
    assert readme_example() == (ROOT / "examples" / "my_app.py").read_text()
    assert len(readme_example().splitlines()) <= 45


def test_registry_loads_the_readme_example_and_it_runs(module_dir):
    (module_dir / "plugin_readme.py").write_text(readme_example())
    cls = resolve_app_class("plugin_readme:SignalApp")
    app = cls()
    assert isinstance(app, App) and cls.sizes[0] == "small"
    data = module_dir / "data"
    data.mkdir()
    app.generate_data(data, 3, 0)
    assert (data / "manifest.json").exists()
    app.load(data, "tiny", "numpy", 1)
    batch = [app.preprocess(s) for s in app.sample_ids()]
    results = app.postprocess(app.infer(batch))
    assert len(results) == 3 and all(0 <= r < 10 for r in results)
    with pytest.raises(AppError, match="numpy only"):
        app.load(data, "tiny", "torch", 1)


def test_class_missing_methods_is_a_one_line_app_error(module_dir):
    (module_dir / "plugin_partial.py").write_text(
        "class Half:\n    name = 'half'\n    sizes = ('tiny',)\n"
        "    def load(self, *a): pass\n    def sample_ids(self): return []\n"
        "    def generate_data(self, *a): pass\n    def preprocess(self, s): return s\n")
    with pytest.raises(AppError) as exc:
        resolve_app_class("plugin_partial:Half")
    message = str(exc.value)
    assert "\n" not in message
    assert "missing infer, postprocess" in message


def test_bad_sizes_are_refused(module_dir):
    (module_dir / "plugin_sizes.py").write_text(
        "class S:\n    name = 's'\n    sizes = 'tiny'\n"
        + "".join(f"    def {m}(self, *a): pass\n" for m in
                  ("generate_data", "load", "sample_ids", "preprocess", "infer", "postprocess")))
    with pytest.raises(AppError, match="sizes must be a non-empty tuple"):
        resolve_app_class("plugin_sizes:S")


@pytest.mark.parametrize("source, spec, expected", [
    (None, "plugin_absent:App", "cannot import app module 'plugin_absent'.*PYTHONPATH"),
    ("raise RuntimeError('boom\\nsecond line')\n", "plugin_broken:App",
     "fails on import: RuntimeError: boom$"),
    ("x = (\n", "plugin_syntax:App", "fails on import: SyntaxError"),
    ("class Other: pass\n", "plugin_noclass:App", "has no app class 'App'"),
    (None, "no_colon_here", "unknown app 'no_colon_here'"),
])
def test_unloadable_apps_are_one_line_app_errors(module_dir, source, spec, expected):
    if source is not None:
        (module_dir / f"{spec.split(':')[0]}.py").write_text(source)
    with pytest.raises(AppError, match=expected) as exc:
        resolve_app_class(spec)
    assert "\n" not in str(exc.value)


def test_cli_refuses_a_backend_the_app_does_not_have_in_one_line(tmp_path):
    from deploybench.cli import app

    result = CliRunner().invoke(app, ["run", "BM/1/PIN/CPU", "--app", "nlp", "--backend", "tvm",
                                      "--db", str(tmp_path / "db")])
    assert result.exit_code == 2
    assert "no backend 'tvm': use one of torch, onnxruntime" in result.output
    assert "Traceback" not in result.output
