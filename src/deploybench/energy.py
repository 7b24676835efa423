"""Energy of a round, where the host has it: Intel and AMD RAPL through Linux's powercap
interface (``/sys/class/powercap/intel-rapl:N``; the kernel names AMD's package domains the
same way).

Each *package* domain (``name`` reads ``package-N``) has a cumulative counter
``energy_uj`` (microjoules) that wraps to 0 after ``max_energy_range_uj``. A round's energy
is the counter difference over the round, wrap-around included (a round shorter than one
wrap, which at a package's power takes minutes to hours), summed over the packages. It is
the whole package's energy -- every process on it, not only the worker -- so it is honest
only on an otherwise idle host; the reading method says so with every value.

Where there is no RAPL (a VM, a CPU or kernel without it, as on the machine this was
written on) nothing is recorded: the field is absent, and ``deploybench doctor`` says why in
its ``energy`` line. Reading never raises.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP_ROOT = Path("/sys/class/powercap")
ENERGY_SCHEMA = 1
METHOD = ("RAPL package energy (powercap energy_uj) over the round, summed over packages: "
          "the whole package, every process on it")


@dataclass(frozen=True)
class PackageDomain:
    """One RAPL package domain: its folder, its name and the counter's range."""

    path: Path
    name: str  # e.g. "package-0"
    max_range_uj: int


@dataclass(frozen=True)
class EnergySample:
    """The counters of every package at one moment (monotonic seconds)."""

    at: float
    counters_uj: dict[str, int]


@dataclass(frozen=True)
class RoundEnergy:
    """A round's energy: joules over ``interval_s`` (and per request), with its method."""

    joules: float
    interval_s: float
    requests: int
    domains: tuple[str, ...]
    wrapped: tuple[str, ...] = ()  # domains whose counter wrapped during the round
    method: str = METHOD

    @property
    def joules_per_request(self) -> float | None:
        return self.joules / self.requests if self.requests > 0 else None

    @property
    def watts(self) -> float | None:
        return self.joules / self.interval_s if self.interval_s > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {"schema": ENERGY_SCHEMA, "joules": self.joules,
                "joules_per_request": (None if self.joules_per_request is None
                                       else round(self.joules_per_request, 6)),
                "watts": None if self.watts is None else round(self.watts, 3),
                "interval_s": self.interval_s, "requests": self.requests,
                "domains": list(self.domains), "wrapped": list(self.wrapped), "method": self.method}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RoundEnergy":
        if data.get("schema") != ENERGY_SCHEMA:
            raise ValueError(f"energy schema {data.get('schema')!r} is not {ENERGY_SCHEMA}")
        return cls(float(data["joules"]), float(data["interval_s"]), int(data["requests"]),
                   tuple(data.get("domains") or ()), tuple(data.get("wrapped") or ()),
                   str(data.get("method") or METHOD))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def package_domains(root: Path = POWERCAP_ROOT) -> tuple[list[PackageDomain], str | None]:
    """The package domains whose counters can be read, and, when there are none, why."""
    if not root.is_dir():
        return [], f"no {root} (the kernel has no powercap interface here: a VM, or no RAPL driver)"
    found: list[PackageDomain] = []
    unreadable: list[str] = []
    candidates = sorted(p for p in root.iterdir() if p.name.startswith("intel-rapl:") and p.name.count(":") == 1)
    for folder in candidates:
        try:
            name = (folder / "name").read_text().strip()
        except OSError:
            continue
        if not name.startswith("package"):
            continue
        if _read_int(folder / "energy_uj") is None:
            unreadable.append(f"{folder / 'energy_uj'}")
            continue
        found.append(PackageDomain(folder, name, _read_int(folder / "max_energy_range_uj") or 0))
    if found:
        return found, None
    if unreadable:
        return [], (f"RAPL counters exist but cannot be read ({unreadable[0]}): run as root "
                    "(kernels restrict energy_uj to root)")
    return [], f"{root} has no RAPL package domain (intel-rapl:N): this CPU or kernel has no RAPL"


class EnergyMeter:
    """Reads the package counters before and after a round (``sample`` / ``round``)."""

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.domains, self.problem = package_domains(root)

    @property
    def available(self) -> bool:
        return bool(self.domains)

    def sample(self) -> EnergySample | None:
        if not self.domains:
            return None
        counters = {}
        for d in self.domains:
            value = _read_int(d.path / "energy_uj")
            if value is None:
                return None
            counters[d.name] = value
        return EnergySample(time.monotonic(), counters)

    def round(self, before: EnergySample | None, after: EnergySample | None,
              requests: int) -> RoundEnergy | None:
        """The energy between two samples; None when either is missing."""
        if before is None or after is None or set(before.counters_uj) != set(after.counters_uj):
            return None
        total = 0
        wrapped = []
        ranges = {d.name: d.max_range_uj for d in self.domains}
        for name, start in before.counters_uj.items():
            delta = counter_delta(start, after.counters_uj[name], ranges.get(name, 0))
            if delta is None:
                return None
            if after.counters_uj[name] < start:
                wrapped.append(name)
            total += delta
        return RoundEnergy(total / 1e6, after.at - before.at, requests,
                           tuple(sorted(before.counters_uj)), tuple(wrapped))


def counter_delta(before_uj: int, after_uj: int, max_range_uj: int) -> int | None:
    """Microjoules between two readings of a counter that wraps to 0 after ``max_range_uj``;
    None when it went backwards and its range is unknown."""
    if after_uj >= before_uj:
        return after_uj - before_uj
    if max_range_uj <= 0:
        return None
    return after_uj + max_range_uj - before_uj


def doctor_check(root: Path = POWERCAP_ROOT) -> Any:
    """The ``energy`` line of `deploybench doctor`: ``ok`` with the domains read, else
    ``info`` (optional: energy is then not recorded) with why."""
    from .platforms.base import Check, CheckStatus

    domains, problem = package_domains(root)
    if domains:
        names = ", ".join(d.name for d in domains)
        return Check("energy", "energy", CheckStatus.OK,
                     f"RAPL {names} readable: each run records joules per request ({METHOD})")
    return Check("energy", "energy", CheckStatus.INFO, f"{problem}: runs record no energy")
