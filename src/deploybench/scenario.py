"""The Scenario value: one deployment of one application, named as in the paper.

A scenario's *deployment name* is the paper's ``PLATFORM/CORES/MODE/PROC`` (e.g.
``VM/32/PIN/GPU``). The full scenario adds the application and the workload settings that
change what is measured (model size, backend, LoadGen scenario, batch size, inference-only).
Two runs belong to the same scenario, and may be averaged together, exactly when their
``Scenario.key`` is equal. Under LoadGen's Server scenario the arrival rate (``target_qps``)
is part of the identity: runs offered 50 and 80 queries per second never pool.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable


class ScenarioError(ValueError):
    """A scenario that cannot exist or cannot run here. The message is one line for people."""


class PlatformName(str, Enum):
    BM = "BM"
    CN = "CN"
    VM = "VM"
    MVM = "MVM"
    VMCN = "VMCN"


class CpuMode(str, Enum):
    VNL = "VNL"  # vanilla: a CFS quota of N cores, threads float over all host cores
    PIN = "PIN"  # pinned: a cpuset of N specific cores


class Processor(str, Enum):
    CPU = "CPU"
    GPU = "GPU"


class LoadgenScenario(str, Enum):
    OFFLINE = "Offline"
    SINGLE_STREAM = "SingleStream"
    SERVER = "Server"


# Host conditions (the paper's Fig. 9 and Section V-E/F). They change what is measured, so
# they are part of the scenario (and of its key), but only when not at their default: the
# keys of runs made without them stay what they were.
class HostLoad(str, Enum):
    IDLE = "idle"  # nothing of ours next to the run
    BUSY = "busy"  # CPU-bound neighbours on every core not given to the scenario


class PageCache(str, Enum):
    WARM = "warm"  # whatever the page cache holds (after warm-up runs: the data set)
    COLD = "cold"  # caches dropped before each run


class Storage(str, Enum):
    NATIVE = "native"  # the data device as it is
    THROTTLED = "throttled"  # cgroup I/O limits on the data device (a slow HDD)


#: the Server scenario's arrival rate (queries per second) when none is given (run, studies)
DEFAULT_TARGET_QPS = 10.0

HOST_CONDITION_DEFAULTS: dict[str, Enum] = {
    "host_load": HostLoad.IDLE, "page_cache": PageCache.WARM, "storage": Storage.NATIVE,
}
_CONDITION_ENUMS: dict[str, type[Enum]] = {
    "host_load": HostLoad, "page_cache": PageCache, "storage": Storage,
}


_NAME_RE = re.compile(r"^\s*([A-Za-z]+)/(\S+?)/([A-Za-z]+)/([A-Za-z]+)\s*$")


def _enum_value(enum: type[Enum], text: str, what: str, *, case_sensitive: bool = False) -> Any:
    for member in enum:
        if member.value == text or (not case_sensitive and member.value.upper() == text.upper()):
            return member
    choices = " ".join(m.value for m in enum)
    raise ScenarioError(f"unknown {what} {text!r}: use one of {choices}")


@dataclass(frozen=True)
class Scenario:
    """What to run, where and how. Immutable; ``name`` is the paper's naming."""

    platform: PlatformName
    cores: int
    cpu_mode: CpuMode
    processor: Processor = Processor.CPU
    app: str = "ic"
    model_size: str = "tiny"
    backend: str = "torch"
    loadgen_scenario: LoadgenScenario = LoadgenScenario.OFFLINE
    requests: int = 32
    batch_size: int = 1
    inference_only: bool = False
    host_load: HostLoad = HostLoad.IDLE
    page_cache: PageCache = PageCache.WARM
    storage: Storage = Storage.NATIVE
    #: Server only: the arrival rate LoadGen offers (queries per second). None for the other
    #: LoadGen scenarios, and for Server runs stored before the rate was part of the key.
    target_qps: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cores, int) or isinstance(self.cores, bool) or self.cores < 1:
            raise ScenarioError(f"cores must be a whole number >= 1, got {self.cores!r}")
        if self.requests < 1:
            raise ScenarioError(f"requests must be >= 1, got {self.requests}")
        if self.batch_size < 1:
            raise ScenarioError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.app:
            raise ScenarioError("an app is required (e.g. --app ic)")
        if self.target_qps is not None:
            if self.loadgen_scenario is not LoadgenScenario.SERVER:
                raise ScenarioError(f"a target QPS is the arrival rate of LoadGen's Server scenario; "
                                    f"{self.loadgen_scenario.value} has none: drop it, or use "
                                    "--loadgen-scenario Server")
            if isinstance(self.target_qps, bool) or not self.target_qps > 0:
                raise ScenarioError(f"the target QPS must be > 0, got {self.target_qps!r}")
            object.__setattr__(self, "target_qps", float(self.target_qps))

    # -- naming -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The paper's deployment name, e.g. ``BM/2/PIN/CPU``."""
        return f"{self.platform.value}/{self.cores}/{self.cpu_mode.value}/{self.processor.value}"

    @property
    def label(self) -> str:
        """Name plus the app and what differs from the defaults, for tables and logs."""
        extra = [self.model_size, self.backend]
        if self.loadgen_scenario is not LoadgenScenario.OFFLINE:
            extra.append(self.loadgen_scenario.value + (f" @{self.target_qps:g} qps"
                                                        if self.target_qps is not None else ""))
        if self.batch_size != 1:
            extra.append(f"b{self.batch_size}")
        if self.inference_only:
            extra.append("infer-only")
        extra += self.conditions
        return f"{self.name} · {self.app} ({', '.join(extra)})"

    @property
    def conditions(self) -> list[str]:
        """Host conditions that differ from the defaults, e.g. ``["busy", "cold"]``."""
        return [getattr(self, name).value for name, default in HOST_CONDITION_DEFAULTS.items()
                if getattr(self, name) is not default]

    @functools.cached_property
    def key(self) -> str:
        """Identity of what is measured: runs with equal keys are repetitions of one scenario.

        ``requests`` is part of it because a run of 32 requests and one of 1000 do not
        measure the same warm-up share. Worked out once per scenario (it is immutable): the
        sweep looks keys up thousands of times a study.
        """
        return json.dumps(self.to_json(), sort_keys=True)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.label

    # -- parsing ------------------------------------------------------------------------
    @classmethod
    def parse(cls, name: str, **workload: Any) -> "Scenario":
        """Parse ``PLATFORM/CORES/MODE/PROC``; ``workload`` fills the other fields."""
        match = _NAME_RE.match(name or "")
        if not match:
            raise ScenarioError(
                f"cannot read scenario {name!r}: write PLATFORM/CORES/MODE/PROC, e.g. BM/2/PIN/CPU"
            )
        platform_s, cores_s, mode_s, proc_s = match.groups()
        platform = _enum_value(PlatformName, platform_s, "platform")
        try:
            cores = int(cores_s)
        except ValueError:
            raise ScenarioError(
                f"cores in {name!r} must be a whole number, got {cores_s!r}"
            ) from None
        mode = _enum_value(CpuMode, mode_s, "CPU mode")
        proc = _enum_value(Processor, proc_s, "processor")
        if "loadgen_scenario" in workload and not isinstance(
            workload["loadgen_scenario"], LoadgenScenario
        ):
            workload["loadgen_scenario"] = _enum_value(
                LoadgenScenario, str(workload["loadgen_scenario"]), "LoadGen scenario"
            )
        for key, enum in _CONDITION_ENUMS.items():
            if key in workload and not isinstance(workload[key], enum):
                workload[key] = _enum_value(enum, str(workload[key]), key.replace("_", " "))
        return cls(platform=platform, cores=cores, cpu_mode=mode, processor=proc, **workload)

    def with_(self, **changes: Any) -> "Scenario":
        return dataclasses.replace(self, **changes)

    # -- validation against a host --------------------------------------------------------
    def check_fits(self, host_cores: int) -> None:
        """Refuse what this host cannot give: more cores than it has."""
        if self.cores > host_cores:
            raise ScenarioError(
                f"{self.name} asks for {self.cores} cores but this host has {host_cores}: "
                f"use at most {host_cores}"
            )

    # -- serialisation --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if HOST_CONDITION_DEFAULTS.get(field.name) is value:
                continue  # defaults are left out so older runs keep their keys
            if field.name == "target_qps" and value is None:
                continue  # likewise: keys of runs without a rate stay what they were
            out[field.name] = value.value if isinstance(value, Enum) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Scenario":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ScenarioError(f"unknown scenario fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["platform"] = _enum_value(PlatformName, values["platform"], "platform")
        values["cpu_mode"] = _enum_value(CpuMode, values["cpu_mode"], "CPU mode")
        values["processor"] = _enum_value(Processor, values.get("processor", "CPU"), "processor")
        values["loadgen_scenario"] = _enum_value(
            LoadgenScenario, values.get("loadgen_scenario", "Offline"), "LoadGen scenario"
        )
        for name, enum in _CONDITION_ENUMS.items():
            if name in values:
                values[name] = _enum_value(enum, str(values[name]), name.replace("_", " "))
        return cls(**values)


def parse_cpu_list(text: str) -> list[int]:
    """Parse the kernel's CPU list format (``0-3,8,10-11``) into a sorted list."""
    cpus: set[int] = set()
    try:
        for part in (text or "").strip().split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = part.split("-", 1)
                cpus.update(range(int(lo), int(hi) + 1))
            else:
                cpus.add(int(part))
    except ValueError:
        raise ScenarioError(f"cannot read CPU list {text!r}: write e.g. 2,3 or 0-3") from None
    return sorted(cpus)


def format_cpu_list(cpus: Iterable[int]) -> str:
    """The inverse of :func:`parse_cpu_list`, with ranges compressed."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
