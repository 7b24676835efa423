"""Data sets are checked: manifests hold every file's size and sha256, a damaged cached set
is refused naming the file and the command that regenerates it, and an input that fails to
decode in any app's pre-processing says the same."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deploybench.apps import create_app
from deploybench.apps.base import AppError
from deploybench.datasets import (
    DEFAULT_DATA_COUNT, MANIFEST, DataSetError, file_sha256, regenerate_command, verify_data,
)
from deploybench.datasets.cache import data_dir_for, ensure_data, prepare_data


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_manifest_holds_every_files_size_and_sha256(home):
    data = ensure_data(create_app("rs"), 3, 0)
    manifest = json.loads((data / MANIFEST).read_text())
    assert manifest["schema"] == 2
    on_disk = sorted(p.name for p in data.iterdir() if p.name != MANIFEST)
    assert sorted(manifest["sha256"]) == on_disk == sorted(manifest["bytes"])
    name = on_disk[0]
    assert manifest["sha256"][name] == file_sha256(data / name)
    assert manifest["bytes"][name] == (data / name).stat().st_size
    check = verify_data(data)
    assert check.ok and check.verified == 3 and check.note is None


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(p.read_bytes()[:10]), r"is truncated \(10 of \d+ bytes\)"),
    (lambda p: p.write_bytes(b"x" * p.stat().st_size), "is corrupt"),
    (lambda p: p.unlink(), "is missing"),
])
def test_a_damaged_cached_set_is_refused_naming_the_file_and_the_fix(home, damage, says):
    app = create_app("rs")
    data = ensure_data(app, 3, 0)
    damage(data / "req_00001.tsv")
    assert not verify_data(data).ok
    with pytest.raises(DataSetError) as info:
        ensure_data(app, 3, 0)
    message = str(info.value)
    assert "req_00001.tsv" in message and "\n" not in message
    assert f"`deploybench data --app rs --force --count 3`" in message
    import re
    assert re.search(says, message), message
    fixed, check = prepare_data(app, 3, 0, force=True)
    assert check is None and verify_data(fixed).ok


def test_an_old_manifest_without_checksums_keeps_working_and_says_so(home):
    data = ensure_data(create_app("rs"), 2, 0)
    manifest = json.loads((data / MANIFEST).read_text())
    for key in ("sha256", "bytes"):
        del manifest[key]
    manifest["schema"] = 1
    (data / MANIFEST).write_text(json.dumps(manifest))
    path, check = prepare_data(create_app("rs"), 2, 0)
    assert path == data and check.ok and check.verified == 0
    assert "no checksums" in check.note and "--force" in check.note


def test_an_unreadable_manifest_is_a_damaged_set(home):
    data = ensure_data(create_app("rs"), 2, 0)
    (data / MANIFEST).write_text("{ not json")
    with pytest.raises(DataSetError, match="manifest.json is unreadable.*--force"):
        ensure_data(create_app("rs"), 2, 0)


def test_the_regenerate_command_names_what_is_not_the_default(home, tmp_path):
    assert regenerate_command("ic", data_dir_for("ic", DEFAULT_DATA_COUNT, 0)) == \
        "deploybench data --app ic --force"
    other = tmp_path / "mine"
    other.mkdir()
    (other / MANIFEST).write_text(json.dumps({"count": 8, "seed": 3}))
    assert regenerate_command("nlp", other) == \
        f"deploybench data --app nlp --force --count 8 --seed 3 --out {other}"


# -- an input that fails to decode, in each app ---------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(40, path.stat().st_size // 3)])


def _garble_json(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset + 1:offset + 20] = b"\xff" * 19
    path.write_bytes(bytes(data))


def _damaged_input(app_name: str, data: Path) -> tuple[str, Path]:
    """Damage one input of the set; (sample id to pre-process, the file named)."""
    manifest = json.loads((data / MANIFEST).read_text())
    if app_name == "nlp":
        index = json.loads((data / manifest["index"]).read_text())["paragraphs"]
        sample = manifest["files"][0]
        _garble_json(data / manifest["squad"], index[sample][0])
        return sample, data / manifest["squad"]
    sample = manifest["files"][0]
    _truncate(data / sample)
    if app_name == "rs":
        (data / sample).write_bytes(b"\x00\xff\xfe garbage \t\t\n")
    return sample, data / sample


@pytest.mark.parametrize("app_name", ["ic", "sr", "nlp", "rs"])
def test_an_input_that_fails_to_decode_names_the_file_and_the_fix(app_name, tmp_path):
    if app_name == "sr" and shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/install.sh installs it)")
    app = create_app(app_name)
    if app_name == "sr":
        app.duration_s = 2.0
    data = tmp_path / "data"
    app.generate_data(data, 16 if app_name == "nlp" else 2, 0)
    app.load(data, "tiny", "torch", 1)
    sample, path = _damaged_input(app_name, data)
    with pytest.raises(AppError) as info:
        app.preprocess(sample)
    message = str(info.value)
    assert f"input {path} cannot be read" in message and "\n" not in message
    assert f"deploybench data --app {app_name} --force" in message
