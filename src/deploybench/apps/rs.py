"""Recommendation (RS), after MLPerf's DLRM on Criteo.

A request is one user with N candidate ads (128 by default), stored as one Criteo-format TSV
file (see datasets/criteo.py). preprocess: read and parse the TSV from disk; dense
features: missing -> 0, negatives -> 0, log(x + 1); categorical features: the 8-hex-digit
hash as an integer (missing -> 0) modulo the table's size. infer: DLRM on all candidates of
the batch's requests at once. postprocess: click-through rates (sigmoid) and the top-k
candidates per request.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..datasets.criteo import NUM_DENSE, NUM_SPARSE
from .backends import check_backend, prepare_model
from .base import check_size, read_app_manifest, read_input, reading_input
from .device import ModelDevice, model_device

TOP_K = 10


def parse_criteo(text: str, table_sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Criteo TSV lines -> (labels (N,) int64, dense (N, 13) float32 log(x+1), sparse (N, 26)
    int64 row ids in [0, table size))."""
    fields_per_line = 1 + NUM_DENSE + NUM_SPARSE
    labels, dense, sparse = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != fields_per_line:
            raise ValueError(f"line {number}: {len(fields)} fields, a Criteo line has {fields_per_line}")
        labels.append(int(fields[0]) if fields[0] else 0)
        dense.append([int(v) if v else 0 for v in fields[1:1 + NUM_DENSE]])
        sparse.append([int(v, 16) if v else 0 for v in fields[1 + NUM_DENSE:]])
    dense_arr = np.log1p(np.maximum(np.asarray(dense, dtype=np.float32).reshape(-1, NUM_DENSE), 0))
    sparse_arr = np.asarray(sparse, dtype=np.int64).reshape(-1, NUM_SPARSE) % np.asarray(table_sizes, dtype=np.int64)
    return np.asarray(labels, dtype=np.int64), dense_arr.astype(np.float32), sparse_arr


class Recommendation:
    name: ClassVar[str] = "rs"
    sizes: ClassVar[tuple[str, ...]] = ("debug", "tiny")
    backends: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime")
    #: candidates per request the data generator writes
    candidates: int = 128

    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self.files: list[str] = []
        self.model: Any = None
        self.table_sizes: tuple[int, ...] = ()
        self.device = "cpu"
        self.model_device = ModelDevice()

    def generate_data(self, out_dir: Path, count: int, seed: int) -> None:
        from ..datasets.criteo import generate_criteo_requests

        generate_criteo_requests(Path(out_dir), count, seed, candidates=self.candidates)

    def load(self, data_dir: Path, size: str, backend: str, threads: int,
             device: str = "cpu") -> None:
        import torch

        from ..models.dlrm import build_dlrm

        check_size(self, size)
        check_backend(self.name, backend, self.backends)
        self.data_dir = Path(data_dir)
        manifest = read_app_manifest(self, self.data_dir)
        self.files = list(manifest["files"])
        self.candidates = int(manifest.get("candidates", self.candidates))
        self.device = device
        dlrm = build_dlrm(size)
        self.table_sizes = dlrm.config.table_sizes
        self.model = prepare_model(dlrm, backend, threads, self.example_inputs(),
                                   cache_key=(self.name, size, dlrm.config, 0),
                                   input_names=["dense", "sparse"], output_names=["logits"],
                                   device=device)
        self.model_device = model_device(device, backend, torch)
        self._torch = torch

    def sample_ids(self) -> Sequence[str]:
        return self.files

    def preprocess(self, sample_id: str) -> Any:
        assert self.data_dir is not None
        path = self.data_dir / sample_id
        with reading_input(self, self.data_dir, path):
            _labels, dense, sparse = parse_criteo(read_input(path).decode(), self.table_sizes)
        return self._torch.from_numpy(dense), self._torch.from_numpy(sparse)

    def example_inputs(self, batch_size: int = 1) -> tuple[Any, Any]:
        """(dense (B*N, 13), sparse (B*N, 26)) for ``self.model``: ``batch_size`` requests of
        N candidates, stacked as ``infer`` does."""
        import torch

        rows = batch_size * self.candidates
        generator = torch.Generator().manual_seed(0)
        dense = torch.rand(rows, NUM_DENSE, generator=generator) * 5
        sizes = self.table_sizes or tuple(1000 for _ in range(NUM_SPARSE))
        sparse = torch.stack([torch.randint(0, n, (rows,), generator=generator) for n in sizes], dim=1)
        return dense, sparse

    def infer(self, batch: Sequence[Any]) -> Any:
        torch = self._torch
        with torch.inference_mode():  # copies to and from a GPU are part of inference
            dense = torch.cat([d for d, _ in batch])
            sparse = torch.cat([s for _, s in batch])
            logits = self.model_device.run(self.model, dense, sparse)
        return logits, [d.shape[0] for d, _ in batch]

    def postprocess(self, output: Any) -> Sequence[Any]:
        torch = self._torch
        logits, counts = output
        results = []
        for chunk in torch.split(logits, counts):
            ctr = torch.sigmoid(chunk)
            top = torch.topk(ctr, k=min(TOP_K, ctr.shape[0]))
            results.append({"top": [{"candidate": i, "ctr": round(p, 6)}
                                    for i, p in zip(top.indices.tolist(), top.values.tolist())],
                            "mean_ctr": round(float(ctr.mean()), 6)})
        return results
