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


@pytest.fixture(scope="module")
def private_dockerd(needs_cgroups):
    """A dockerd of our own (private data root, no networking set-up) for a module's tests,
    as DOCKER_HOST; stopped after."""
    from deploybench.platforms.base import PlatformError
    from deploybench.platforms.container.launchers import private_dockerd as start_dockerd

    try:
        daemon = start_dockerd()
        host = daemon.__enter__()
    except PlatformError as exc:
        pytest.skip(str(exc))
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    try:
        yield host
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old
        daemon.__exit__(None, None, None)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_collection_modifyitems(config, items):
    # Everything under tests/integration is an integration test, marked or not.
    for item in items:
        if f"{os.sep}integration{os.sep}" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# -- measuring real platforms (integration tests) -------------------------------------------
def measure(scenario, platform, data_dir, *, rounds: int = 1, launches: int = 1, warmup: int = 0,
            timeout_s: float = 300, store=None):
    """``rounds`` rounds of ``scenario`` on ``platform`` over ``launches`` launches, as the
    CLI measures them (execute.run_block_set); the records (stored in ``store`` if given)."""
    from deploybench.execute import BlockSet, Contender, RunSettings, run_block_set

    contender = Contender(scenario, platform, data_dir, RunSettings(timeout_s=timeout_s, busy_threshold=0))
    sink = store.add if store is not None else (lambda record: None)
    records = []
    for epoch in range(launches):
        out = run_block_set(BlockSet((contender,), blocks=rounds, warmup_rounds=warmup, epoch=epoch), sink)
        records += out.records
    return records


def open_session(scenario, platform, data_dir, *, timeout_s: float = 300, **prototype_changes):
    """A session of ``scenario`` (close it: it is a context manager); ``prototype_changes``
    change the job the worker loads (e.g. debug_hang_s)."""
    from deploybench.datasets.cache import home
    from deploybench.execute import RunSettings, build_job
    from deploybench.platforms.base import SessionSetup
    from deploybench.platforms.ledger import Ledger

    job = build_job(scenario, data_dir=data_dir, settings=RunSettings()).with_(**prototype_changes)
    session = platform.open(scenario, SessionSetup(job, home() / "runs", Ledger(), launch_timeout_s=timeout_s))
    session.ready(timeout_s)
    return session


def round_job(scenario, data_dir, **changes):
    from deploybench.execute import RunSettings, build_job

    return build_job(scenario, data_dir=data_dir, settings=RunSettings()).with_(**changes)
