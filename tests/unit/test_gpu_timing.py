"""The CUDA timing path, pinned with a fake device: every host-to-device copy, the compute,
the copy back and the synchronize happen inside the timed inference phase, in that order,
and the timer stops only after the synchronize."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from deploybench.apps.device import ModelDevice, model_device
from deploybench.worker.driver import LoadgenDriver

COPY_S, COMPUTE_S, SYNC_S = 0.003, 0.004, 0.006


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class FakeCuda:
    """``torch.cuda`` whose kernels run asynchronously: queued work is done (and its time
    spent) only when someone synchronizes."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.queued_s = 0.0

    def synchronize(self, device=None) -> None:
        self.events.append(f"synchronize:{device}")
        _spin(self.queued_s + SYNC_S)
        self.queued_s = 0.0


class FakeTensor:
    def __init__(self, events: list[str], where: str = "cpu", value: float = 1.0) -> None:
        self.events, self.where, self.value = events, where, value

    def to(self, device: str) -> "FakeTensor":
        self.events.append(f"copy-in:{device}")
        _spin(COPY_S)  # a blocking host-to-device copy of known duration
        return FakeTensor(self.events, device, self.value)

    def cpu(self) -> "FakeTensor":
        self.events.append("copy-out")
        return FakeTensor(self.events, "cpu", self.value)


class FakeModel:
    """Queues its kernels and returns at once, as a CUDA model does."""

    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda

    def __call__(self, *inputs: FakeTensor) -> FakeTensor:
        assert all(t.where == "cuda" for t in inputs), "compute must see device tensors"
        inputs[0].events.append("compute")
        self.cuda.queued_s += COMPUTE_S
        return FakeTensor(inputs[0].events, "cuda", sum(t.value for t in inputs))


class FakeGpuApp:
    """An app whose infer is what every built-in app's infer is: ModelDevice.run."""

    name = "fakegpu"
    sizes = ("tiny",)

    def __init__(self) -> None:
        self.events: list[str] = []
        self.cuda = FakeCuda(self.events)
        self.model_device = ModelDevice("cuda", SimpleNamespace(cuda=self.cuda))
        self.model = FakeModel(self.cuda)

    def sample_ids(self):
        return [f"s{i}" for i in range(8)]

    def preprocess(self, sample_id):
        self.events.append("preprocess")
        return FakeTensor(self.events)

    def infer(self, batch):
        return self.model_device.run(self.model, *batch)

    def postprocess(self, output):
        self.events.append("postprocess")
        assert output.where == "cpu", "post-processing must get host memory"
        return [output.value]


def test_model_device_copies_in_computes_copies_out_then_synchronizes():
    events: list[str] = []
    cuda = FakeCuda(events)
    device = ModelDevice("cuda", SimpleNamespace(cuda=cuda))
    out = device.run(FakeModel(cuda), FakeTensor(events, value=2.0), FakeTensor(events, value=3.0))
    assert events == ["copy-in:cuda", "copy-in:cuda", "compute", "copy-out", "synchronize:cuda"]
    assert out.where == "cpu" and out.value == 5.0


def test_model_device_on_the_cpu_moves_nothing_and_never_synchronizes():
    device = ModelDevice("cpu")
    x = np.ones(3)
    assert device.to_device(x)[0] is x and device.to_host(x) is x
    assert device.run(lambda a: a * 2, x).tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="needs the torch module"):
        ModelDevice("cuda")


def test_onnxruntime_keeps_the_batch_on_the_host_because_its_session_copies_itself():
    torch = SimpleNamespace(cuda=None)
    assert model_device("cuda", "torch", torch).is_cuda
    assert not model_device("cuda", "onnxruntime", torch).is_cuda


@pytest.mark.parametrize("batch_size", [1, 4])
def test_the_inference_timer_stops_after_the_synchronize(tmp_path, batch_size):
    """Through the real driver and LoadGen: the queued compute is only done at the
    synchronize, so an inference phase that stopped its timer earlier would be far shorter
    than copies + compute + synchronize."""
    app = FakeGpuApp()
    driver = LoadgenDriver(app, batch_size=batch_size, inference_only=False)
    driver.run(scenario="Offline", requests=8, log_dir=tmp_path / "lg", server_target_qps=1)
    per_batch_ns = (batch_size * COPY_S + COMPUTE_S + SYNC_S) * 1e9
    infer_batch_ns = [share * batch_size for share in driver.log.infer_ns]
    assert min(infer_batch_ns) >= per_batch_ns * 0.99  # integer shares may round down
    # post-processing does not carry the device's time
    assert max(driver.log.postprocess_ns) < SYNC_S * 1e9
    # and per batch: all pre-processing, then copy in, compute, copy out, synchronize, post
    batch_events = ["preprocess"] * batch_size + ["copy-in:cuda"] * batch_size + [
        "compute", "copy-out", "synchronize:cuda", "postprocess"]
    assert app.events == batch_events * (8 // batch_size)


def test_inference_only_runs_still_pay_the_host_to_device_copy(tmp_path):
    app = FakeGpuApp()
    driver = LoadgenDriver(app, batch_size=1, inference_only=True)
    driver.run(scenario="Offline", requests=4, log_dir=tmp_path / "lg", server_target_qps=1)
    assert driver.log.preprocess_ns == [0] * 4
    assert min(driver.log.infer_ns) >= (COPY_S + COMPUTE_S + SYNC_S) * 1e9


# -- every built-in app's infer goes through ModelDevice.run --------------------------------
class RecordingDevice(ModelDevice):
    def __init__(self) -> None:
        super().__init__("cpu")
        self.calls = 0

    def run(self, model, *inputs):
        self.calls += 1
        return super().run(model, *inputs)


def _ic_app():
    import torch

    from deploybench.apps.ic import ImageClassification

    app = ImageClassification()
    app._torch, app.model = torch, lambda x: x.flatten(1)[:, :10]
    app.labels = [f"label{i}" for i in range(10)]
    return app, [torch.zeros(3, 4, 4), torch.ones(3, 4, 4)]


def _rs_app():
    import torch

    from deploybench.apps.rs import Recommendation

    app = Recommendation()
    app._torch, app.model = torch, lambda dense, sparse: dense.sum(1) + sparse.sum(1)
    return app, [(torch.ones(4, 13), torch.zeros(4, 26, dtype=torch.long))] * 2


def _nlp_app():
    import torch

    from deploybench.apps.nlp import QaFeatures, QuestionAnswering

    app = QuestionAnswering()
    app._torch = torch
    app.model = lambda ids, types, mask: (ids.float(), mask.float())
    ids = np.ones((2, 8), dtype=np.int64)
    feats = QaFeatures("q1", "ctx", ids, np.zeros_like(ids), np.ones_like(ids), [[None] * 8] * 2,
                       [[False] * 8] * 2)
    return app, [feats]


def _sr_app():
    import torch

    from deploybench.apps.sr import SpeechRecognition
    from deploybench.models.rnnt import build_rnnt

    app = SpeechRecognition()
    app._torch, app.model = torch, build_rnnt("tiny")
    app._prepare_backend("torch", 1, "tiny")
    return app, [torch.zeros(6, 240), torch.zeros(4, 240)]


@pytest.mark.parametrize("make_app", [_ic_app, _rs_app, _nlp_app, _sr_app], ids=["ic", "rs", "nlp", "sr"])
def test_every_builtin_app_infers_through_model_device_run(make_app):
    app, batch = make_app()
    app.model_device = RecordingDevice()
    output = app.infer(batch)
    assert app.model_device.calls == 1
    assert len(app.postprocess(output)) == len(batch)
