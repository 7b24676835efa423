"""Footprints recorded from the host side on real BM and CN rounds: the worker's peak RSS
and CPU; nothing beside it for BM, runc and crun; conmon and the attach client for Podman;
the containerd shim, the attach client and the shared dockerd and containerd for Docker.
(Guests: tests/integration/test_vm.py.)"""
from __future__ import annotations

import os

import pytest

from deploybench.footprint import RoundFootprint, costs
from deploybench.platforms.base import PlatformOptions
from deploybench.platforms.baremetal import BareMetal
from deploybench.platforms.container import Container, probe
from deploybench.platforms.container.launchers import EngineCli, OciRuntime
from deploybench.scenario import Scenario
from tests.conftest import measure

pytestmark = pytest.mark.usefixtures("needs_cgroups")


def _footprints(name, platform, ic_data, rounds=2):
    scenario = Scenario.parse(name, app="ic", model_size="tiny", requests=16)
    records = measure(scenario, platform, ic_data, rounds=rounds, timeout_s=240)
    assert [r.status for r in records] == ["ok"] * rounds, records[0].error
    return records, [RoundFootprint.from_json(r.platform["footprint"]) for r in records]


def _worker_alone(fps):
    for fp in fps:
        assert fp.worker_rss_seen_from == "host"
        assert 100_000 < fp.worker_peak_rss_kb < 2_000_000  # python + torch + a tiny ResNet
        assert fp.memory_kb == fp.worker_peak_rss_kb and fp.memory_beyond_worker_kb == 0
        assert fp.worker_cpu_s > 0 and fp.outside_cpu_s == 0.0
        assert fp.runtime_rss_kb == {} and fp.shared_rss_kb == {} and fp.guest is None


def test_a_bare_metal_round_costs_its_worker_and_nothing_else(ic_data):
    records, fps = _footprints("BM/1/PIN/CPU", BareMetal(), ic_data)
    _worker_alone(fps)
    assert [p.role for p in fps[0].parts] == ["worker"]
    (cost,) = costs(records)
    assert cost.memory_beyond_worker_mib == 0 and cost.start_latency_s > 0
    print(f"\nBM worker peak RSS {fps[-1].worker_peak_rss_kb / 1024:.0f} MiB, "
          f"worker CPU {fps[-1].worker_cpu_s:.2f} s over {fps[-1].interval_s:.2f} s")


def test_a_runc_container_leaves_no_runtime_process_beside_its_worker(ic_data):
    problem = probe(OciRuntime("runc"))
    if problem:
        pytest.skip(f"runc cannot run a container here: {problem}")
    records, fps = _footprints("CN/1/PIN/CPU", Container(), ic_data)
    _worker_alone(fps)
    assert records[0].platform["runtime_processes"] == []
    assert costs(records)[0].create_start_s > 0


def test_a_podman_container_adds_conmon_and_its_attach_client(ic_data):
    problem = EngineCli("podman").problem()
    if problem:
        pytest.skip(problem)
    _, fps = _footprints("CN/1/PIN/CPU", Container(PlatformOptions(engine="podman")), ic_data)
    fp = fps[-1]
    assert set(fp.runtime_rss_kb) == {"shim (conmon)", "engine client (podman)"}
    assert 0 < fp.runtime_rss_kb["shim (conmon)"] < 50_000
    assert fp.memory_beyond_worker_kb == sum(fp.runtime_rss_kb.values())
    assert set(fp.outside_cpu_s_by_role) == {"shim (conmon)", "engine client (podman)"}
    print(f"\npodman: conmon {fp.runtime_rss_kb['shim (conmon)'] / 1024:.1f} MiB, client "
          f"{fp.runtime_rss_kb['engine client (podman)'] / 1024:.1f} MiB, CPU outside "
          f"{fp.outside_cpu_s:.3f} s")


def test_a_docker_container_adds_its_shim_and_client_and_names_the_shared_daemons(private_dockerd, ic_data):
    _, fps = _footprints("CN/1/PIN/CPU", Container(PlatformOptions(engine="docker")), ic_data)
    fp = fps[-1]
    roles = {p.role for p in fp.parts}
    assert {"worker", "shim", "engine client", "engine"} <= roles
    assert any(label.startswith("shim (containerd-shim") for label in fp.runtime_rss_kb)
    assert "engine (dockerd)" in fp.shared_rss_kb and "engine (containerd)" in fp.shared_rss_kb
    # the daemons serve every container: listed apart, not in this scenario's memory
    assert fp.memory_kb == fp.worker_peak_rss_kb + sum(fp.runtime_rss_kb.values())
    assert fp.outside_cpu_s is not None and "engine (dockerd)" in fp.outside_cpu_s_by_role
    print(f"\ndocker: per container {sum(fp.runtime_rss_kb.values()) / 1024:.1f} MiB "
          f"({fp.runtime_rss_kb}), shared {fp.shared_rss_kb}, CPU outside {fp.outside_cpu_s_by_role}")
