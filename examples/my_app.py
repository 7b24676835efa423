"""my_app.py: an app of your own -- classify 1-D signals stored as .npy files (numpy only)."""
from pathlib import Path

import numpy as np

from deploybench.apps.base import AppError
from deploybench.datasets import read_manifest, write_manifest


class SignalApp:
    name = "signal"
    sizes = ("small", "tiny")  # the first one is the default
    backends = ("numpy",)

    def generate_data(self, out_dir, count, seed):  # untimed, once per data set
        rng = np.random.default_rng(seed)
        files = [f"signal_{i:04d}.npy" for i in range(count)]
        for name in files:
            np.save(Path(out_dir) / name, rng.normal(size=4096).astype(np.float32))
        write_manifest(Path(out_dir), self.name, count, seed, files)  # marks it complete

    def load(self, data_dir, size, backend, threads):  # untimed
        if backend not in self.backends:
            raise AppError(f"app signal runs on numpy only, not {backend!r}")
        self.data_dir = Path(data_dir)
        self.files = read_manifest(self.data_dir)["files"]
        width = {"small": 1024, "tiny": 64}[size]
        rng = np.random.default_rng(0)
        self.w1 = rng.normal(size=(4096, width)).astype(np.float32) / 64
        self.w2 = rng.normal(size=(width, 10)).astype(np.float32)

    def sample_ids(self):
        return self.files

    def preprocess(self, sample_id):  # timed: read from disk + normalise
        x = np.load(self.data_dir / sample_id)
        return (x - x.mean()) / (x.std() + 1e-6)

    def infer(self, batch):  # timed: the model only
        return np.tanh(np.stack(batch) @ self.w1) @ self.w2

    def postprocess(self, output):  # timed: one result per input
        return [int(i) for i in output.argmax(axis=1)]
