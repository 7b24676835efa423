"""Reaping a dead session's containers: an engine that refuses a delete for a moment (still
cleaning the container up after its owner died) is asked again; a container already gone is
no problem; one that cannot be deleted is named with the engine's own words."""
from __future__ import annotations

import sys

import pytest

from deploybench.platforms import ledger
from deploybench.platforms.ledger import Entry, _delete_container, reap


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
    assert _delete_container(engine(tmp_path, fail_times=2)) is None
    assert tries(tmp_path) == 3


def test_a_container_that_is_already_gone_is_neither_deleted_nor_a_problem(tmp_path):
    assert _delete_container(engine(tmp_path, 99, "Error: no such container deploybench-x")) == "gone"
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
