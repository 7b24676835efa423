"""RAPL energy on a fake powercap tree: package domains only, counters that wrap, and a host
without RAPL (this one) where nothing is recorded and doctor says why."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploybench.energy import EnergyMeter, RoundEnergy, counter_delta, doctor_check, package_domains
from deploybench.platforms.base import CheckStatus

MAX = 262143328850  # a real package's max_energy_range_uj


def powercap(root: Path, packages: dict[int, int], *, readable: bool = True) -> Path:
    for n, energy in packages.items():
        d = root / f"intel-rapl:{n}"
        d.mkdir(parents=True)
        (d / "name").write_text(f"package-{n}\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{MAX}\n")
        if not readable:
            (d / "energy_uj").chmod(0)
        sub = root / f"intel-rapl:{n}:0"  # a core sub-domain: not a package, never summed
        sub.mkdir()
        (sub / "name").write_text("core\n")
        (sub / "energy_uj").write_text("5\n")
    return root


def set_energy(root: Path, n: int, value: int) -> None:
    (root / f"intel-rapl:{n}" / "energy_uj").write_text(f"{value}\n")


def test_a_rounds_energy_sums_the_packages_and_survives_a_counter_wrap(tmp_path):
    root = powercap(tmp_path / "powercap", {0: 1_000_000, 1: MAX - 500_000})
    meter = EnergyMeter(root)
    assert [d.name for d in meter.domains] == ["package-0", "package-1"]
    before = meter.sample()
    set_energy(root, 0, 4_000_000)  # +3 J
    set_energy(root, 1, 1_500_000)  # wrapped: +0.5 J to the top, then +1.5 J
    energy = meter.round(before, meter.sample(), requests=10)
    assert energy.joules == pytest.approx(5.0)
    assert energy.joules_per_request == pytest.approx(0.5)
    assert energy.wrapped == ("package-1",)
    assert "RAPL package energy" in energy.method and "every process" in energy.method
    assert RoundEnergy.from_json(energy.to_json()) == energy


def test_a_counter_that_goes_back_without_a_known_range_gives_no_energy():
    assert counter_delta(10, 5, 0) is None
    assert counter_delta(10, 5, 100) == 95
    assert counter_delta(5, 10, 100) == 5


def test_without_rapl_nothing_is_recorded_and_doctor_says_why(tmp_path):
    meter = EnergyMeter(tmp_path / "none")
    assert not meter.available and meter.sample() is None
    assert meter.round(None, None, 10) is None
    check = doctor_check(tmp_path / "none")
    assert check.key == "energy" and check.status is CheckStatus.INFO
    assert "no powercap interface" in check.detail and "runs record no energy" in check.detail
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no RAPL package domain" in package_domains(empty)[1]


def test_a_readable_tree_is_ok_in_doctor(tmp_path):
    root = powercap(tmp_path / "powercap", {0: 1})
    check = doctor_check(root)
    assert check.status is CheckStatus.OK and "package-0" in check.detail


def test_this_hosts_energy_check_never_fails():
    check = doctor_check()
    assert check.status in (CheckStatus.OK, CheckStatus.INFO) and "\n" not in check.detail
