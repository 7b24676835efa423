"""Where an app's model runs, and the one place an app's ``infer`` moves data to it and waits.

On a GPU, three things decide whether the inference phase is timed honestly:

1. the host-to-device copy of the batch is part of inference (the paper's DLBS-style
   "inference only" on a GPU still pays it), so it happens inside ``infer``;
2. CUDA kernels are asynchronous: ``model(x)`` returns once they are *queued*, so the
   worker's timer, which stops when ``infer`` returns, must not stop before the device has
   finished: ``infer`` ends with ``torch.cuda.synchronize()``;
3. the device-to-host copy of the outputs (which post-processing reads on the CPU) is part of
   inference too.

:meth:`ModelDevice.run` does exactly that, in that order: copy in, compute, copy out,
synchronize. Every built-in app's ``infer`` calls it (SR's encoder too, although SR runs on
the CPU only, where every step but the compute is a no-op), so the order is written once and
pinned by a unit test with a fake device.

The onnxruntime backend copies inputs to the device itself inside ``session.run`` (which
returns host arrays and only when done), so for it the data stays on the host here:
:func:`model_device` says which.

This module runs inside the platform (apps are imported by the worker): torch is passed in,
never imported at module level.
"""
from __future__ import annotations

from typing import Any


class ModelDevice:
    """A torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``) as an app's ``infer`` uses it.

    ``torch`` is the torch module (or, in tests, an object with the same ``cuda`` API);
    it is only needed for a CUDA device.
    """

    def __init__(self, name: str = "cpu", torch: Any = None) -> None:
        self.name = name
        self.is_cuda = name.startswith("cuda")
        if self.is_cuda and torch is None:
            raise ValueError("a CUDA device needs the torch module")
        self.torch = torch

    def __repr__(self) -> str:
        return f"ModelDevice({self.name!r})"

    def to_device(self, *tensors: Any) -> tuple[Any, ...]:
        """Copy inputs to the device (blocking copies: they end before compute is queued)."""
        if not self.is_cuda:
            return tensors
        return tuple(t.to(self.name) for t in tensors)

    def to_host(self, output: Any) -> Any:
        """Copy outputs (a tensor, or a tuple/list of them) back to host memory."""
        if not self.is_cuda:
            return output
        if isinstance(output, (tuple, list)):
            return type(output)(self.to_host(o) for o in output)
        return output.cpu() if hasattr(output, "cpu") else output

    def synchronize(self) -> None:
        """Wait until every queued kernel and copy on the device has finished."""
        if self.is_cuda:
            self.torch.cuda.synchronize(self.name)

    def run(self, model: Any, *inputs: Any) -> Any:
        """The inference phase of one batch: copy in, compute, copy out, synchronize.

        Call it inside ``infer`` (the worker times ``infer``), so when ``infer`` returns,
        the device is done and the outputs are in host memory."""
        on_device = self.to_device(*inputs)
        output = model(*on_device)
        output = self.to_host(output)
        self.synchronize()
        return output


def model_device(device: str, backend: str, torch: Any = None) -> ModelDevice:
    """The ModelDevice an app's ``infer`` moves its batch to: ``device`` on the torch
    backend; the host on onnxruntime, whose session copies to its provider's device itself
    and returns host arrays when it is done."""
    return ModelDevice(device if backend == "torch" else "cpu", torch)
