"""The App protocol: the one seam every application plugs into.

An app runs *inside* the platform, driven by the worker. The worker times exactly three
calls per request -- ``preprocess`` (which must read its input from disk), ``infer`` (the
model only) and ``postprocess`` -- so whatever an app does in them is what the study
measures. Everything else (model construction, data generation) is untimed.

Writing your own app::

    class MyApp:
        name = "mine"
        sizes = ("tiny", "full")
        def generate_data(self, out_dir, count, seed): ...   # write `count` input files
        def load(self, data_dir, size, backend, threads): ... # build the model, list files
        def sample_ids(self): ...                              # file names a query can name
        def preprocess(self, sample_id): ...                   # read (read_input) + decode one input
        def infer(self, batch): ...                            # model on a list of inputs
        def postprocess(self, output): ...                     # one result per input

then ``deploybench run BM/1/PIN/CPU --app my_module:MyApp``.
"""
from __future__ import annotations

import struct
import time
import wave
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable


@runtime_checkable
class App(Protocol):
    name: ClassVar[str]
    #: model sizes the app accepts; the first is the default (paper-like) size.
    sizes: ClassVar[tuple[str, ...]]

    def generate_data(self, out_dir: Path, count: int, seed: int) -> None:
        """Write ``count`` deterministic input files (real formats) into ``out_dir``."""

    def load(self, data_dir: Path, size: str, backend: str, threads: int) -> None:
        """Build the model of ``size`` on ``backend`` with ``threads`` threads; find inputs."""

    def sample_ids(self) -> Sequence[str]:
        """The inputs a query can name (typically file names under ``data_dir``)."""

    def preprocess(self, sample_id: str) -> Any:
        """Read one input from disk and turn it into model input. Timed."""

    def infer(self, batch: Sequence[Any]) -> Any:
        """Run the model on a list of preprocessed inputs. Timed."""

    def postprocess(self, output: Any) -> Sequence[Any]:
        """Turn the model output into one result per input of the batch. Timed."""


class AppError(RuntimeError):
    """An app that cannot be loaded or run; the message is one line for people."""


#: what each built-in app's data is, for the error when a data set belongs to another app
DATA_KINDS = {"ic": "images", "sr": "speech", "nlp": "SQuAD questions", "rs": "Criteo requests"}


def read_app_manifest(app: Any, data_dir: Path) -> dict:
    """The manifest of the data set in ``data_dir``, checked to be ``app``'s own data."""
    from ..datasets import read_manifest

    try:
        manifest = read_manifest(Path(data_dir))
    except FileNotFoundError as exc:
        raise AppError(str(exc)) from None
    if manifest.get("app") != app.name:
        kind = DATA_KINDS.get(app.name, f"{app.name} data")
        raise AppError(f"{data_dir} holds {manifest.get('app')!r} data, not {kind}: "
                       f"generate it with `deploybench data --app {app.name}`")
    return manifest


def check_size(app: App, size: str) -> None:
    if size not in app.sizes:
        raise AppError(
            f"app {app.name!r} has no model size {size!r}: use one of {', '.join(app.sizes)}"
        )


#: what reading and decoding a damaged input file raises (a truncated JPEG: OSError; a
#: corrupt WAV: wave.Error or EOFError; corrupt JSON or TSV: ValueError, KeyError...)
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, KeyError, IndexError, StopIteration, wave.Error, struct.error)


def input_error(app_name: str, data_dir: Path, path: Path, exc: BaseException) -> AppError:
    """One line: which input failed to decode, why, and the command that regenerates it."""
    from ..datasets import regenerate_command

    why = (str(exc).strip().splitlines() or [""])[0][:200]
    return AppError(f"input {path} cannot be read ({type(exc).__name__}{': ' + why if why else ''}): "
                    f"the data set is damaged; regenerate it with "
                    f"`{regenerate_command(app_name, data_dir)}`")


class InputReads:
    """How long an app's timed requests spent reading their inputs from the file system
    (``read_input``): the direct evidence that a cold page cache or a throttled disk reached
    them. One per worker process; the worker resets it before a round's timed requests and
    reports it after (``input_read_ms``, ``input_reads``, ``input_read_bytes``)."""

    __slots__ = ("ns", "count", "bytes")

    def __init__(self) -> None:
        self.ns = self.count = self.bytes = 0

    def reset(self) -> None:
        self.ns = self.count = self.bytes = 0

    def read(self, path: Path, offset: int = 0, length: int | None = None) -> bytes:
        t = time.perf_counter_ns()
        with open(path, "rb") as f:
            if offset:
                f.seek(offset)
            data = f.read() if length is None else f.read(length)
        self.ns += time.perf_counter_ns() - t
        self.count += 1
        self.bytes += len(data)
        return data

    def to_json(self) -> dict[str, Any]:
        return {"input_read_ms": round(self.ns / 1e6, 3), "input_reads": self.count,
                "input_read_bytes": self.bytes}


INPUT_READS = InputReads()


def read_input(path: Path, offset: int = 0, length: int | None = None) -> bytes:
    """An input's bytes (or ``length`` bytes at ``offset``), its read timed. Apps read their
    inputs with it inside ``preprocess`` so the worker can tell how long requests waited
    on the disk; an app that reads otherwise still works, without that evidence."""
    return INPUT_READS.read(path, offset, length)


class reading_input:  # noqa: N801 - used as a statement: ``with reading_input(self, path):``
    """Around the reading and decoding of one input in an app's ``preprocess``: a file that
    fails to decode raises AppError naming it and the command that regenerates the set.
    (A class, not a generator: it runs inside the timed pre-processing, so it stays cheap.)"""

    __slots__ = ("app_name", "data_dir", "path")

    def __init__(self, app: Any, data_dir: Path, path: Path) -> None:
        self.app_name, self.data_dir, self.path = app.name, data_dir, path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, INPUT_ERRORS):
            raise input_error(self.app_name, self.data_dir, self.path, exc) from None
        return False
