"""Shared fixtures. Unit tests may fake platforms; integration tests launch the real thing
and skip, with the reason, only where this host cannot (not root, no cgroups, ...)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def host():
    from deploybench.host import host_facts

    return host_facts()


@pytest.fixture(scope="session")
def ic_data(tmp_path_factory) -> Path:
    """A small IC data set (real JPEGs), generated once per test session."""
    from deploybench.apps import create_app
    from deploybench.datasets.cache import ensure_data

    return ensure_data(create_app("ic"), 8, 0, out_dir=tmp_path_factory.mktemp("ic") / "data")


@pytest.fixture()
def store(tmp_path):
    from deploybench.store import Store

    s = Store(tmp_path / "test.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def needs_cgroups(host):
    if host.cgroup_problem:
        pytest.skip(f"cannot create cgroups here: {host.cgroup_problem}")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_collection_modifyitems(config, items):
    # Everything under tests/integration is an integration test, marked or not.
    for item in items:
        if f"{os.sep}integration{os.sep}" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
