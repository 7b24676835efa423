"""Inference backends: run an app's ``nn.Module`` on torch, or export it to ONNX and run it
on onnxruntime with the same thread budget.

An app adopts the second backend in two lines of its ``load``::

    from .backends import prepare_model
    self.model = prepare_model(model, backend, threads, self.example_inputs(),
                               cache_key=("ic", size, config, seed), device=device)

and keeps calling ``self.model(*tensors)`` in ``infer``: on ``"torch"`` that is the module
itself; on ``"onnxruntime"`` it is an :class:`OnnxModel` taking and returning torch CPU
tensors (zero-copy numpy views), with the module's output structure (one tensor or a
tuple). The model's ``forward`` must take and return tensors only.

DESIGN:
- Export with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``: works
  offline), opset 17, every input and output axis 0 dynamic (batch) plus the axes the app
  names (e.g. sequence length).
- The ``.onnx`` file is cached under ``$DEPLOYBENCH_HOME/onnx`` (or ``cache_dir``), named by
  the app's key plus a hash of: the key material (config, seed), the model's class and its
  source file, the example inputs' shapes and dtypes, torch's version and the opset -- so a
  changed model never reuses a stale export. Written to a temporary file and renamed (two
  workers exporting at once never see half a file). When the cache cannot be written (a
  read-only platform), the export goes to a temporary folder that is removed afterwards.
- The session gets ``intra_op_num_threads = threads``, ``inter_op_num_threads = 1``,
  sequential execution and all graph optimisations: the same budget as torch's
  ``set_num_threads(threads)`` + one inter-op thread. Spinning of the intra-op pool is
  turned off, like ``OMP_WAIT_POLICY=PASSIVE`` for torch: spinning workers steal the cores
  of a small budget (the worker's thread-pool rationale).
"""
from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

from .base import AppError

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
OPSET = 17


def check_backend(app_name: str, backend: str, supported: Sequence[str]) -> None:
    if backend not in supported:
        raise AppError(f"app {app_name} has no backend {backend!r}: use one of {', '.join(supported)}")


def default_cache_dir() -> Path:
    from ..datasets.cache import home

    return home() / "onnx"


def export_key(model: Any, example_inputs: Sequence[Any], cache_key: Sequence[Any]) -> str:
    """File stem for a model's export: readable prefix + hash of what determines the graph
    and its weights."""
    import torch

    digest = hashlib.sha256()
    digest.update(repr(tuple(cache_key)).encode())
    cls = type(model)
    digest.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    try:
        digest.update(Path(inspect.getfile(cls)).read_bytes())
    except (OSError, TypeError):
        pass
    for t in example_inputs:
        digest.update(f"{tuple(t.shape)}:{t.dtype}".encode())
    digest.update(f"torch={torch.__version__};opset={OPSET}".encode())
    prefix = "-".join(str(part) for part in tuple(cache_key)[:2])
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix)
    return f"{safe}-{digest.hexdigest()[:16]}"


def _names(prefix: str, count: int, given: Sequence[str] | None) -> list[str]:
    if given is not None:
        if len(given) != count:
            raise AppError(f"{len(given)} {prefix} names for {count} {prefix}s")
        return list(given)
    return [f"{prefix}_{i}" for i in range(count)]


def export_onnx(model: Any, example_inputs: Sequence[Any], path: Path, *,
                input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None,
                dynamic_axes: dict[str, dict[int, str]] | None = None) -> Path:
    """Export ``model`` to ``path`` atomically (write a temporary file, then rename)."""
    import torch

    inputs = tuple(example_inputs)
    with torch.inference_mode():
        outputs = model(*inputs)
    n_out = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    in_names = _names("input", len(inputs), input_names)
    out_names = _names("output", n_out, output_names)
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in in_names + out_names}
    for name, extra in (dynamic_axes or {}).items():
        axes.setdefault(name, {}).update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated but is the one that works offline
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, inputs, str(tmp), input_names=in_names,
                              output_names=out_names, dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: no per-session warnings on stderr
    return options


class OnnxModel:
    """An onnxruntime session that is called like the module it came from."""

    def __init__(self, path: Path, threads: int, device: str = "cpu",
                 single_output: bool = False) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device != "cpu":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise AppError("onnxruntime here has no CUDA provider: install onnxruntime-gpu "
                               "or use --backend torch")
            providers.insert(0, "CUDAExecutionProvider")
        self.path = Path(path)
        self.threads = threads
        self.session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                            providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.single_output = single_output

    def run_numpy(self, *arrays: Any) -> list[Any]:
        return self.session.run(self.output_names, dict(zip(self.input_names, arrays)))

    def __call__(self, *tensors: Any) -> Any:
        import torch

        arrays = [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t for t in tensors]
        outputs = [torch.from_numpy(o) for o in self.run_numpy(*arrays)]
        return outputs[0] if self.single_output else tuple(outputs)

    # the torch API apps may call on a model; harmless here
    def eval(self) -> "OnnxModel":
        return self

    def to(self, device: Any) -> "OnnxModel":
        return self


def onnx_model(model: Any, example_inputs: Sequence[Any], *, threads: int,
               cache_key: Sequence[Any], cache_dir: Path | None = None,
               input_names: Sequence[str] | None = None,
               output_names: Sequence[str] | None = None,
               dynamic_axes: dict[str, dict[int, str]] | None = None,
               device: str = "cpu") -> OnnxModel:
    """``model`` exported to ONNX (cached on disk) and loaded into an onnxruntime session."""
    import torch

    with torch.inference_mode():
        sample_out = model(*example_inputs)
    single = not isinstance(sample_out, (tuple, list))
    stem = export_key(model, example_inputs, cache_key)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / f"{stem}.onnx"
    scratch: Path | None = None
    if not path.exists():
        try:
            export_onnx(model, example_inputs, path, input_names=input_names,
                        output_names=output_names, dynamic_axes=dynamic_axes)
        except OSError:  # read-only cache: export into a private temporary folder
            scratch = Path(tempfile.mkdtemp(prefix="deploybench-onnx-"))
            path = export_onnx(model, example_inputs, scratch / f"{stem}.onnx",
                               input_names=input_names, output_names=output_names,
                               dynamic_axes=dynamic_axes)
    try:
        return OnnxModel(path, threads, device=device, single_output=single)
    finally:
        if scratch is not None:  # the session holds the graph in memory
            shutil.rmtree(scratch, ignore_errors=True)


def prepare_model(model: Any, backend: str, threads: int, example_inputs: Sequence[Any], *,
                  cache_key: Sequence[Any], device: str = "cpu", **onnx_options: Any) -> Any:
    """The callable an app's ``infer`` uses: the module (moved to ``device``) on ``torch``,
    an :class:`OnnxModel` on ``onnxruntime``. Pass the module and example inputs on the CPU."""
    if backend == "torch":
        return model.to(device)
    if backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise AppError("backend onnxruntime needs the onnxruntime package: "
                           "pip install onnxruntime") from None
        return onnx_model(model, example_inputs, threads=threads, cache_key=cache_key,
                          device=device, **onnx_options)
    raise AppError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
