"""Study files: a TOML description of an experiment, validated, expanded into scenarios.

A study names apps, platforms, cores, CPU modes, processors, the workload (LoadGen
scenario, requests per run, model sizes, backend), the stopping rule and the host
conditions; ``expand`` turns it into the scenario matrix (the paper's Fig. 3) and ``plan``
decides, for this host, what runs and what is skipped (with the reason).

DESIGN
- pydantic v2 validates the file; every error is ONE line that names the file and the
  offending key (``study.toml: platforms[2]: unknown platform 'XX': use one of ...``).
- Apps: names this version knows (``deploybench.apps.app_names()``), ``module:Class``, or one
  of the paper's four (ic, sr, nlp, rs) even when this version lacks it: those are skipped
  at plan time with a reason, so one study file serves every build. Anything else is an
  error when the file is loaded.
- ``[overrides.virtualized]`` (VM, MVM, VMCN), ``[overrides.PLATFORM]`` and
  ``[overrides.emulated]`` (VM, MVM and VMCN on a host without usable KVM, i.e. under TCG)
  adjust the matrix and budget per platform: ``apps``, ``cores``, ``modes``, ``requests``,
  ``model_sizes``, ``timeout_s`` and any ``stopping`` field. Layers apply in that order:
  study, virtualized, platform, emulated (later wins). ``[overrides.emulated]`` may also list
  ``platforms``: the guests measured under TCG, the others skipped at plan time with a reason.
- Host conditions are lists: each value is one more dimension of the matrix.
- ``[capacity]`` asks for capacity searches (``capacity.py``) of some deployments, run by the
  sweep after its groups of compared scenarios, for every app and model size of the study
  (``capacity_scenarios``); ``[capacity.emulated]`` loosens them for TCG guests.
"""
from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Iterable

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator,
)

from .datasets import DEFAULT_DATA_COUNT
from .scenario import (
    DEFAULT_TARGET_QPS, CpuMode, HostLoad, LoadgenScenario, PageCache, PlatformName, Processor, Scenario,
    ScenarioError, Storage, _enum_value,
)

STUDY_SCHEMA = 1
#: the paper's applications: accepted in a study even where this version lacks them
PAPER_APPS = ("ic", "sr", "nlp", "rs")
VM_PLATFORMS = (PlatformName.VM, PlatformName.MVM, PlatformName.VMCN)
EMULATED = "emulated"  # override group: VM, MVM, VMCN when KVM is not usable here (TCG)
VIRTUALIZED = "virtualized"  # override group: VM, MVM, VMCN always
GROUPS = (VIRTUALIZED, EMULATED)


class StudyError(ValueError):
    """A study file that cannot be used; one line, naming the file and the key."""


def _enum_item(enum: type, what: str, case_sensitive: bool = False) -> Any:
    """A list item that must name a member of ``enum`` (so errors carry the item's index)."""
    def check(value: Any) -> Any:
        if isinstance(value, str):
            return _enum_value(enum, value, what, case_sensitive=case_sensitive).value
        return value
    return Annotated[str, BeforeValidator(check)]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


PlatformItem = _enum_item(PlatformName, "platform")
ModeItem = _enum_item(CpuMode, "CPU mode")
ProcessorItem = _enum_item(Processor, "processor")
HostLoadItem = _enum_item(HostLoad, "host_load")
PageCacheItem = _enum_item(PageCache, "page_cache")
StorageItem = _enum_item(Storage, "storage")


def _per_app(value: Any) -> Any:
    """A value for every app, a list, or a table of app = value (normalised to a table)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {"*": value}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StoppingModel(_Strict):
    """When a group of compared scenarios stops: every needed decision made, or a budget
    spent (see sweep.py). Rounds are LoadGen tests in warm sessions; launches are epochs."""

    warmup_rounds: int = Field(1, ge=0)
    margin: float = Field(0.05, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    min_launches: int = Field(3, ge=2)
    max_launches: int = Field(10, ge=1)
    blocks: int | None = Field(None, ge=1)
    target_rel_ci: float = Field(0.02, gt=0, lt=1)
    max_time_s: float = Field(600.0, gt=0)
    max_consecutive_failures: int = Field(2, ge=1)


class PartialStopping(_Strict):
    warmup_rounds: int | None = Field(None, ge=0)
    margin: float | None = Field(None, gt=0, lt=1)
    confidence: float | None = Field(None, gt=0.5, lt=1)
    min_launches: int | None = Field(None, ge=2)
    max_launches: int | None = Field(None, ge=1)
    blocks: int | None = Field(None, ge=1)
    target_rel_ci: float | None = Field(None, gt=0, lt=1)
    max_time_s: float | None = Field(None, gt=0)
    max_consecutive_failures: int | None = Field(None, ge=1)


#: keys of earlier study files, and what replaced them
RENAMED_KEYS = {
    "warmup_runs": "warmup_rounds (warm-up rounds per launch)",
    "min_runs": "min_launches (launch epochs before anything is decided; at least 2)",
    "max_runs": "max_launches (launch epochs at most)",
    "busy_probe_s": "nothing: the CPU used outside the session is metered during every round",
}


class ThrottleModel(_Strict):
    """A slow disk: defaults are a 7,200 rpm HDD's sequential rate and random IOPS."""

    read_mb_s: float = Field(100.0, gt=0)
    read_iops: int = Field(150, ge=1)
    device: str = "auto"  # the block device holding the data set, or MAJ:MIN, or /dev/X


class HostModel(_Strict):
    host_load: list[HostLoadItem] = ["idle"]
    page_cache: list[PageCacheItem] = ["warm"]
    storage: list[StorageItem] = ["native"]
    throttle: ThrottleModel = ThrottleModel()
    busy_threshold: float = Field(0.25, ge=0, le=1)

    _lists = field_validator("host_load", "page_cache", "storage", mode="before")(_as_list)


class OverrideModel(_Strict):
    apps: list[str] | None = None
    #: [overrides.emulated] only: the guest platforms measured under TCG (the others skip)
    platforms: list[PlatformItem] | None = None
    cores: list[int] | None = None
    modes: list[ModeItem] | None = None
    requests: dict[str, int] | None = None
    model_sizes: dict[str, list[str]] | None = None
    timeout_s: float | None = Field(None, gt=0)
    stopping: PartialStopping = PartialStopping()

    _modes = field_validator("modes", "platforms", mode="before")(_as_list)

    @field_validator("requests", "model_sizes", mode="before")
    @classmethod
    def _tables(cls, value: Any) -> Any:
        return None if value is None else _per_app(value)

    @field_validator("model_sizes", mode="before")
    @classmethod
    def _size_lists(cls, value: Any) -> Any:
        return _size_lists(value)

    @field_validator("cores")
    @classmethod
    def _cores(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(c < 1 for c in value):
            raise ValueError("cores must be whole numbers >= 1")
        return value


def _size_lists(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: [v] if isinstance(v, str) else v for k, v in value.items()}


def _deployment(value: Any) -> Any:
    """A deployment name (``PLATFORM/CORES/MODE/PROC``), as ``Scenario.parse`` reads it."""
    if isinstance(value, str):
        try:
            return Scenario.parse(value).name
        except ScenarioError as exc:
            raise ValueError(str(exc)) from None
    return value


DeploymentItem = Annotated[str, BeforeValidator(_deployment)]


class PartialCapacity(_Strict):
    """What changes for TCG-emulated guests (a function check: few requests, a loose SLO)."""

    slo_ms: float | None = Field(None, gt=0)
    percentile: float | None = Field(None, gt=0, lt=100)
    requests: int | None = Field(None, ge=1)
    budget_s: float | None = Field(None, gt=0)


class CapacityModel(_Strict):
    """``[capacity]``: capacity searches the sweep runs after its groups (``capacity.py``)."""

    scenarios: list[DeploymentItem] = Field(min_length=1)  # PLATFORM/CORES/MODE/PROC, e.g. "BM/1/PIN/CPU"
    apps: list[str] | None = None  # default: every app of the study
    slo_ms: float = Field(100.0, gt=0)
    percentile: float = Field(99.0, gt=0, lt=100)
    requests: int | None = Field(None, ge=1)  # per probe; default: what LoadGen needs
    budget_s: float = Field(300.0, gt=0)  # per search
    precision: float = Field(0.05, gt=0, lt=1)
    max_launches: int = Field(3, ge=1)
    emulated: PartialCapacity = PartialCapacity()

    @model_validator(mode="after")
    def _loadgen_can_say_valid(self) -> "CapacityModel":
        from .capacity import loadgen_min_requests

        for where, requests, percentile in (
                ("requests", self.requests, self.percentile),
                ("emulated.requests", self.emulated.requests, self.emulated.percentile or self.percentile)):
            if requests is not None and requests < loadgen_min_requests(percentile):
                raise ValueError(f"{where} = {requests} can never make LoadGen's Server run VALID at "
                                 f"p{percentile:g}: its early stopping needs at least "
                                 f"{loadgen_min_requests(percentile)} requests (or lower the percentile)")
        return self



class StudyModel(_Strict):
    schema_: int = Field(STUDY_SCHEMA, alias="schema")
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    apps: list[str] = Field(min_length=1)
    platforms: list[PlatformItem] = Field(min_length=1)
    cores: list[int] = Field(min_length=1)
    modes: list[ModeItem] = ["VNL", "PIN"]
    processors: list[ProcessorItem] = ["CPU"]
    loadgen_scenario: str = "Offline"
    #: Server only: the arrival rate (queries per second), part of each scenario
    target_qps: float | None = Field(None, gt=0)
    requests: dict[str, int] = {"*": 32}
    model_sizes: dict[str, list[str]] = {}
    backend: str = "torch"
    batch_size: int = Field(1, ge=1)
    inference_only: bool = False
    data_count: int = Field(DEFAULT_DATA_COUNT, ge=1)
    seed: int = 0
    timeout_s: float = Field(900.0, gt=0)
    stopping: StoppingModel = StoppingModel()
    host: HostModel = HostModel()
    overrides: dict[str, OverrideModel] = {}
    capacity: CapacityModel | None = None

    _lists = field_validator("platforms", "modes", "processors", mode="before")(_as_list)

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: int) -> int:
        if value != STUDY_SCHEMA:
            raise ValueError(f"study schema {value} is not {STUDY_SCHEMA}: this deploybench reads "
                             f"schema {STUDY_SCHEMA}")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("use letters, digits, '.', '_' and '-' only")
        return value

    @field_validator("loadgen_scenario", mode="before")
    @classmethod
    def _loadgen(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _enum_value(LoadgenScenario, value, "LoadGen scenario").value
        return value

    @field_validator("requests", mode="before")
    @classmethod
    def _requests(cls, value: Any) -> Any:
        return _per_app(value)

    @model_validator(mode="after")
    def _rate_is_for_server(self) -> "StudyModel":
        if self.target_qps is not None and self.loadgen_scenario != LoadgenScenario.SERVER.value:
            raise ValueError(f"target_qps is the arrival rate of the Server scenario; "
                             f"loadgen_scenario {self.loadgen_scenario} has none: drop it or set "
                             'loadgen_scenario = "Server"')
        return self

    @property
    def server_rate(self) -> float | None:
        """Each scenario's ``target_qps``: the study's, Server's default, None otherwise."""
        if self.loadgen_scenario != LoadgenScenario.SERVER.value:
            return None
        return DEFAULT_TARGET_QPS if self.target_qps is None else float(self.target_qps)

    @field_validator("model_sizes", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        return _size_lists(_per_app(value))

    @field_validator("cores")
    @classmethod
    def _cores(cls, value: list[int]) -> list[int]:
        for i, c in enumerate(value):
            if c < 1:
                raise ValueError(f"cores[{i}] = {c}: cores must be whole numbers >= 1")
        return value

    @field_validator("overrides", mode="before")
    @classmethod
    def _override_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            fixed = {}
            for key, item in value.items():
                if key.lower() in GROUPS:
                    fixed[key.lower()] = item
                    continue
                try:
                    fixed[_enum_value(PlatformName, key, "platform").value] = item
                except ScenarioError as exc:
                    raise ValueError(f"overrides.{key}: {exc} {' '.join(GROUPS)}") from None
            for key, item in fixed.items():
                if isinstance(item, dict) and "platforms" in item and key != EMULATED:
                    raise ValueError(f"overrides.{key}.platforms: only [overrides.emulated] narrows "
                                     "the platforms (the study's platforms list is the place)")
            return fixed
        return value



# -- errors for people ---------------------------------------------------------------------------
def _loc(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        key = str((error.get("loc") or ("",))[-1])
        if key in RENAMED_KEYS:
            return f"this key was replaced by {RENAMED_KEYS[key]}"
        return "unknown key: check its spelling (studies/paper-quick.toml shows every key)"
    if kind == "missing":
        return "required key is missing"
    msg = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if "input" in error and kind not in ("value_error",) and not isinstance(error["input"], (dict, list)):
        msg += f", got {error['input']!r}"
    return msg


def _one_line(source: str, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = _loc(first.get("loc", ()))
    text = f"{source}: {loc + ': ' if loc else ''}{_message(first)}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return " ".join(text.split())


# -- the study -------------------------------------------------------------------------------
class Study:
    """A validated study. ``expand`` gives its scenarios; ``rule_for``/``timeout_for`` their
    stopping rule and timeout (after overrides)."""

    def __init__(self, model: StudyModel, source: str = "study") -> None:
        self.model = model
        self.source = source
        self._check_apps()

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, text: str, source: str = "study.toml") -> "Study":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise StudyError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "study") -> "Study":
        try:
            model = StudyModel.model_validate(data)
        except ValidationError as exc:
            raise StudyError(_one_line(source, exc)) from None
        return cls(model, source)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def seed(self) -> int:
        return self.model.seed

    def _error(self, loc: str, message: str) -> StudyError:
        return StudyError(f"{self.source}: {loc}: {message}")

    def _check_apps(self) -> None:
        m = self.model
        apps_lists = [("apps", m.apps)] + [(f"overrides.{k}.apps", o.apps)
                                         for k, o in m.overrides.items() if o.apps]
        for where, apps in apps_lists:
            for i, app in enumerate(apps):
                problem = app_problem(app)
                if problem is not None and app not in PAPER_APPS:
                    raise self._error(f"{where}[{i}]", problem)
        tables = [("model_sizes", m.model_sizes), ("requests", m.requests)]
        tables += [(f"overrides.{k}.model_sizes", o.model_sizes or {}) for k, o in m.overrides.items()]
        tables += [(f"overrides.{k}.requests", o.requests or {}) for k, o in m.overrides.items()]
        mentioned = set(m.apps) | {a for _, o in m.overrides.items() for a in (o.apps or [])}
        for i, app in enumerate((m.capacity.apps or []) if m.capacity else []):
            if app not in mentioned:
                raise self._error(f"capacity.apps[{i}]", f"app {app!r} is not in the study's apps "
                                  f"({', '.join(m.apps)})")
        for where, table in tables:
            for app in table:
                if app != "*" and app not in mentioned:
                    raise self._error(f"{where}.{app}", f"app {app!r} is not in the study's apps "
                                      f"({', '.join(m.apps)})")
            for app, value in table.items():
                if where.endswith("requests") and value < 1:
                    raise self._error(f"{where}.{app}", f"requests must be >= 1, got {value}")
        for where, table in tables:
            if not where.endswith("model_sizes"):
                continue
            for app, sizes in table.items():
                for app_name in (sorted(mentioned) if app == "*" else [app]):
                    known = app_sizes(app_name)
                    if known is None:
                        continue
                    for i, size in enumerate(sizes):
                        if size not in known:
                            raise self._error(f"{where}.{app}[{i}]",
                                              f"app {app_name!r} has no model size {size!r}: use one "
                                              f"of {' '.join(known)}")

    # -- layers ------------------------------------------------------------------------------
    def _layers(self, platform: PlatformName, emulated: bool) -> list[OverrideModel]:
        layers = []
        if platform in VM_PLATFORMS and VIRTUALIZED in self.model.overrides:
            layers.append(self.model.overrides[VIRTUALIZED])
        if platform.value in self.model.overrides:
            layers.append(self.model.overrides[platform.value])
        if emulated and platform in VM_PLATFORMS and EMULATED in self.model.overrides:
            layers.append(self.model.overrides[EMULATED])
        return layers

    def _pick(self, platform: PlatformName, emulated: bool, attr: str, default: Any) -> Any:
        value = default
        for layer in self._layers(platform, emulated):
            if getattr(layer, attr) is not None:
                value = getattr(layer, attr)
        return value

    def emulated_skip(self, platform: PlatformName) -> str | None:
        """Why a guest platform is not measured under TCG (``[overrides.emulated] platforms``)."""
        layer = self.model.overrides.get(EMULATED)
        if layer is None or layer.platforms is None or platform.value in layer.platforms:
            return None
        return (f"no KVM, and [overrides.emulated] measures only {', '.join(layer.platforms)} "
                "under emulation (a function check)")

    @staticmethod
    def _for_app(table: dict[str, Any], app: str) -> Any:
        return table.get(app, table.get("*"))

    def rule_for(self, platform: PlatformName, emulated: bool = False):
        from .sweep import RaceRule

        values = self.model.stopping.model_dump()
        for layer in self._layers(platform, emulated):
            values.update({k: v for k, v in layer.stopping.model_dump().items() if v is not None})
        # max_launches below min_launches is allowed: such a group never decides anything (a
        # functional check, e.g. of emulated guests); it stops after max_launches epochs
        return RaceRule(**values)

    def timeout_for(self, platform: PlatformName, emulated: bool = False) -> float:
        return float(self._pick(platform, emulated, "timeout_s", self.model.timeout_s))

    # -- the matrix --------------------------------------------------------------------------
    def expand(self, *, kvm: bool) -> list[Scenario]:
        """The scenario matrix (Fig. 3): platform x app x size x cores x mode x processor x
        host conditions, after per-platform overrides. ``kvm``: whether VMs run natively
        here (the VM platform decides: ``planning.vms_native``), which decides if
        ``[overrides.emulated]`` applies."""
        m = self.model
        out: list[Scenario] = []
        for platform_s in m.platforms:
            platform = PlatformName(platform_s)
            emulated = platform in VM_PLATFORMS and not kvm
            apps = self._pick(platform, emulated, "apps", m.apps)
            cores = self._pick(platform, emulated, "cores", m.cores)
            modes = self._pick(platform, emulated, "modes", m.modes)
            requests = dict(m.requests)
            sizes = dict(m.model_sizes)
            for layer in self._layers(platform, emulated):
                # a layer's "*" (one value for every app) replaces the per-app values before it
                for table, update in ((requests, layer.requests or {}), (sizes, layer.model_sizes or {})):
                    if "*" in update:
                        table.clear()
                    table.update(update)
            for app in dict.fromkeys(apps):
                app_requests = self._for_app(requests, app) or 32
                app_sizes_ = self._for_app(sizes, app) or [default_size(app)]
                for size in dict.fromkeys(app_sizes_):
                    for n in dict.fromkeys(cores):
                        for mode in dict.fromkeys(modes):
                            for proc in dict.fromkeys(m.processors):
                                for load in dict.fromkeys(m.host.host_load):
                                    for cache in dict.fromkeys(m.host.page_cache):
                                        for storage in dict.fromkeys(m.host.storage):
                                            out.append(Scenario(
                                                platform=platform, cores=n, cpu_mode=CpuMode(mode),
                                                processor=Processor(proc), app=app,
                                                model_size=size, backend=m.backend,
                                                loadgen_scenario=LoadgenScenario(m.loadgen_scenario),
                                                requests=app_requests, batch_size=m.batch_size,
                                                inference_only=m.inference_only,
                                                host_load=HostLoad(load), page_cache=PageCache(cache),
                                                storage=Storage(storage), target_qps=m.server_rate))
        return list(dict.fromkeys(out))


    # -- capacity searches ----------------------------------------------------------------
    def capacity_scenarios(self, *, kvm: bool) -> list[Scenario]:
        """The ``[capacity]`` searches' scenarios: each listed deployment for each app and
        model size, under Server without a rate, with the probe size as ``requests``."""
        from .capacity import default_requests

        c = self.model.capacity
        if c is None:
            return []
        m = self.model
        out = []
        for name in c.scenarios:
            platform = PlatformName(Scenario.parse(name).platform)
            emulated = platform in VM_PLATFORMS and not kvm
            percentile = c.emulated.percentile if emulated and c.emulated.percentile else c.percentile
            requests = (c.emulated.requests if emulated and c.emulated.requests else c.requests) \
                or default_requests(percentile)
            for app in dict.fromkeys(c.apps or m.apps):
                sizes = self._for_app(m.model_sizes, app) or [default_size(app)]
                for size in dict.fromkeys(sizes):
                    out.append(Scenario.parse(name, app=app, model_size=size, backend=m.backend,
                                              loadgen_scenario=LoadgenScenario.SERVER, requests=requests,
                                              batch_size=m.batch_size, inference_only=m.inference_only))
        return list(dict.fromkeys(out))

    def capacity_search(self, scenario: Scenario, emulated: bool) -> Any:
        """The search settings of a ``[capacity]`` scenario (``capacity.SearchSettings``)."""
        from .capacity import Criteria, SearchSettings

        c = self.model.capacity
        assert c is not None
        e = c.emulated if emulated else PartialCapacity()
        criteria = Criteria(e.slo_ms or c.slo_ms, e.percentile or c.percentile)
        return SearchSettings(criteria, scenario.requests, budget_s=e.budget_s or c.budget_s,
                              precision=c.precision, max_launches=c.max_launches)


def load_study(path: str | Path) -> Study:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StudyError(f"study file {path} not found") from None
    except OSError as exc:
        raise StudyError(f"cannot read study file {path}: {exc.strerror}") from None
    return Study.from_toml(text, source=path.name)


# -- apps, as known at runtime ---------------------------------------------------------------------
def app_problem(app: str) -> str | None:
    """None when this version can run ``app``, else why not (one line)."""
    from .apps import app_names, resolve_app_class
    from .apps.base import AppError

    if app not in app_names() and ":" not in app:
        return (f"unknown app {app!r}: use one of {' '.join(dict.fromkeys(app_names() + list(PAPER_APPS)))}"
                " or module:Class")
    try:
        resolve_app_class(app)
    except AppError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=None)
def app_sizes(app: str) -> tuple[str, ...] | None:
    if app_problem(app) is not None:
        return None
    from .apps import resolve_app_class

    return tuple(resolve_app_class(app).sizes)


def default_size(app: str) -> str:
    sizes = app_sizes(app)
    return sizes[0] if sizes else "tiny"
