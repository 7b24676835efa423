"""Application registry: built-in apps by short name, users' apps by ``module:Class`` or
the ``deploybench.apps`` entry-point group."""
from __future__ import annotations

import importlib
from importlib import metadata

from .base import App, AppError

BUILTIN_APPS: dict[str, str] = {
    "ic": "deploybench.apps.ic:ImageClassification",
    "sr": "deploybench.apps.sr:SpeechRecognition",
    "rs": "deploybench.apps.rs:Recommendation",
    "nlp": "deploybench.apps.nlp:QuestionAnswering",
}

#: the built-in apps' model sizes (the first is the default), for help texts that must not
#: import the apps (a unit test keeps this equal to each class's ``sizes``)
BUILTIN_SIZES: dict[str, tuple[str, ...]] = {
    "ic": ("full", "small", "tiny"),
    "sr": ("full", "small", "tiny"),
    "nlp": ("large", "base", "tiny"),
    "rs": ("debug", "tiny"),
}

ENTRY_POINT_GROUP = "deploybench.apps"


def _import_spec(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppError(f"app {spec!r} is not of the form module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppError(f"cannot import app module {module_name!r}: {exc} (is it on PYTHONPATH "
                       "or installed?)") from None
    except Exception as exc:  # a broken user module: one line, not a traceback
        first = (str(exc).splitlines() or [""])[0]
        raise AppError(f"app module {module_name!r} fails on import: "
                       f"{type(exc).__name__}: {first}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AppError(f"module {module_name!r} has no app class {attr!r}") from None


def app_names() -> list[str]:
    names = list(BUILTIN_APPS)
    try:
        names += [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    except Exception:  # pragma: no cover - broken metadata must not break the CLI
        pass
    return names


def resolve_app_class(name: str) -> type:
    """Find an app class by built-in name, entry-point name, or ``module:Class``."""
    if name in BUILTIN_APPS:
        return _import_spec(BUILTIN_APPS[name])
    if ":" in name:
        cls = _import_spec(name)
    else:
        matches = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            raise AppError(
                f"unknown app {name!r}: use one of {', '.join(app_names())} or module:Class"
            )
        cls = matches[0].load()
    missing = [m for m in ("name", "sizes", "generate_data", "load", "sample_ids",
                           "preprocess", "infer", "postprocess") if not hasattr(cls, m)]
    if missing:
        raise AppError(f"app {name!r} does not implement the App protocol: missing {', '.join(missing)}")
    sizes = getattr(cls, "sizes")
    if isinstance(sizes, str) or not sizes or not all(isinstance(s, str) for s in sizes):
        raise AppError(f"app {name!r}: sizes must be a non-empty tuple of names, e.g. (\"full\", \"tiny\")")
    return cls


def create_app(name: str) -> App:
    return resolve_app_class(name)()


__all__ = ["App", "AppError", "BUILTIN_APPS", "BUILTIN_SIZES", "app_names", "create_app", "resolve_app_class"]
