"""Reaping a dead session's containers: an engine that refuses a delete for a moment (still
cleaning the container up after its owner died) is asked again; a container already gone is
no problem; one that cannot be deleted is named with the engine's own words, and `doctor
--clean` counts only what is really gone."""
from __future__ import annotations

import sys

import pytest

from deploybench.platforms import ledger
from deploybench.platforms.ledger import Entry, delete_container, reap


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(ledger, "DELETE_RETRY_S", (0.0, 0.0, 0.0, 0.0))


def engine(tmp_path, fail_times: int, message: str = "Error: container state improper") -> list[str]:
    """A delete command that fails ``fail_times`` times, then succeeds."""
    counter = tmp_path / "tries"
    script = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
              f"n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
              f"sys.stderr.write({message!r} + '\\n') if n < {fail_times} else None; "
              f"sys.exit(1 if n < {fail_times} else 0)")
    return [sys.executable, "-c", script]


def tries(tmp_path) -> int:
    return int((tmp_path / "tries").read_text())


def test_a_delete_refused_for_a_moment_is_tried_again_until_it_works(tmp_path):
    assert delete_container(engine(tmp_path, fail_times=2)) is None
    assert tries(tmp_path) == 3


def test_a_container_that_is_already_gone_is_neither_deleted_nor_a_problem(tmp_path):
    assert delete_container(engine(tmp_path, 99, "Error: no such container deploybench-x")) == "gone"
    assert tries(tmp_path) == 1


def test_a_container_that_cannot_be_deleted_is_named_with_the_engines_last_line(tmp_path):
    command = engine(tmp_path, fail_times=99)
    entry = Entry(session_id="deploybench-test", owner_pid=1, owner_start=None, boot_id="", platform="CN",
                  scenario="CN/1/PIN/CPU", created_at=0.0, containers=[{"id": "deploybench-c", "delete": command}])
    reaped = reap(entry)
    assert tries(tmp_path) == 1 + len(ledger.DELETE_RETRY_S)
    assert reaped.containers == 0
    assert reaped.problems == ["delete container deploybench-c: Error: container state improper"]
    assert "could not: delete container deploybench-c" in reaped.describe()


def test_podman_logging_that_its_runtime_has_no_such_container_is_not_taken_for_gone(tmp_path):
    """Podman 4.3 logs runc's "container does not exist" above its own error when it fails to
    resume a container it keeps as paused: the container is still there."""
    message = ('time="x" level=error msg="container does not exist"\n'
               "Error: `/usr/bin/runc resume abc` failed: exit status 1")
    assert delete_container(engine(tmp_path, 99, message)) == "Error: `/usr/bin/runc resume abc` failed: exit status 1"


def test_doctor_clean_counts_only_what_is_gone_and_exits_1_for_what_is_left(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from deploybench import doctor
    from deploybench.cli import app

    left = ledger.Strays(containers=[("deploybench-stuck", engine(tmp_path, 99, "Error: runc resume failed"))],
                         folders=[tmp_path / "gone-folder"])
    (tmp_path / "gone-folder").mkdir()
    calls = []

    def fake_strays(ledger_=None):
        calls.append(1)
        if len(calls) == 1:
            return left
        return ledger.Strays(containers=left.containers)  # the folder went, the container stayed

    monkeypatch.setattr(ledger, "strays", fake_strays)
    monkeypatch.setattr(doctor, "doctor_checks", lambda: [])
    out = CliRunner().invoke(app, ["doctor", "--clean"])
    assert out.exit_code == 1, out.output
    assert "removed 1 of 2 stray(s); could not remove: container deploybench-stuck: Error: runc resume failed" \
        in out.output
    assert not (tmp_path / "gone-folder").exists()
