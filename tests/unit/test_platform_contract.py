"""Every platform implements the whole declared seam (platforms/base.py), so nothing outside
platforms/ ever probes one with getattr/hasattr; and nothing outside platforms/ does."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from deploybench.platforms import all_platforms, platform_class
from deploybench.platforms.base import Platform, PlatformOptions, PlatformSession
from deploybench.scenario import PlatformName, Scenario

SRC = Path(__file__).resolve().parents[2] / "src" / "deploybench"
PROTOCOL_METHODS = [name for name, value in vars(Platform).items()
                    if callable(value) and not name.startswith("_")]


def _session_class(platform_cls: type) -> type:
    """The class ``open`` returns, from its annotation."""
    import typing

    return typing.get_type_hints(platform_cls.open)["return"]


@pytest.mark.parametrize("name", list(PlatformName))
def test_every_platform_implements_every_member_of_the_protocol(name):
    cls = platform_class(name)
    assert cls.name == name.value
    assert isinstance(cls.supports_io_limits, bool)
    platform = cls(PlatformOptions())
    assert isinstance(platform.options, PlatformOptions)
    for method in PROTOCOL_METHODS:
        impl = getattr(cls, method, None)
        assert callable(impl), f"{cls.__name__} lacks {method}"
        declared = list(inspect.signature(getattr(Platform, method)).parameters)
        assert list(inspect.signature(impl).parameters) == declared, f"{cls.__name__}.{method}"


@pytest.mark.parametrize("name", list(PlatformName))
def test_every_platform_session_implements_the_session_protocol(name):
    session_cls = _session_class(platform_class(name))
    for method in ("measure", "pause", "resume", "close", "__enter__", "__exit__"):
        assert callable(getattr(session_cls, method, None)), f"{session_cls.__name__} lacks {method}"
    assert isinstance(inspect.getattr_static(session_cls, "alive"), property)
    declared = list(inspect.signature(PlatformSession.measure).parameters)
    assert list(inspect.signature(session_cls.measure).parameters) == declared


@pytest.mark.parametrize("name", list(PlatformName))
def test_every_platform_answers_the_planners_questions_in_one_line(name, host):
    platform = platform_class(name)(PlatformOptions(accel="tcg"))
    reason = platform.unavailable_reason(host)
    assert reason is None or (isinstance(reason, str) and "\n" not in reason)
    gpu = Scenario.parse(f"{name.value}/1/PIN/GPU")
    problem = platform.scenario_problem(gpu, host)
    if not host.gpus:
        assert problem and "\n" not in problem
    assert isinstance(platform.emulated(host), bool)
    checks = platform.doctor_checks(host)
    assert checks[0].key == f"platform.{name.value}"
    assert all("\n" not in c.detail for c in checks)


def test_every_platform_is_registered():
    assert [p.name for p in all_platforms()] == [n.value for n in PlatformName]


def test_nothing_outside_platforms_probes_a_platform():
    pattern = re.compile(r"\b(getattr|hasattr)\((self\.)?(platform|p\.platform|options|contender\.platform)\b")
    offenders = []
    for path in SRC.rglob("*.py"):
        if "platforms" in path.relative_to(SRC).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []
