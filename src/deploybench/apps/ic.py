"""Image classification (IC), after MLPerf's ResNet50-v1.5 on ImageNet.

preprocess: read the JPEG from disk, decode, resize the shorter side to 256 (bilinear),
centre-crop 224, scale to [0,1], normalise with ImageNet mean/std -> CHW float tensor.
infer: the ResNet on the stacked batch. postprocess: softmax, top-5 with label names.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .backends import check_backend, prepare_model
from .base import check_size, read_app_manifest, read_input, reading_input
from .device import ModelDevice, model_device

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ImageClassification:
    name: ClassVar[str] = "ic"
    sizes: ClassVar[tuple[str, ...]] = ("full", "small", "tiny")
    backends: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime")

    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self.files: list[str] = []
        self.labels: list[str] = []
        self.model: Any = None
        self.device = "cpu"
        self.model_device = ModelDevice()

    def generate_data(self, out_dir: Path, count: int, seed: int) -> None:
        from ..datasets.images import generate_imagenet_like

        generate_imagenet_like(Path(out_dir), count, seed)

    def example_inputs(self) -> tuple[Any, ...]:
        """Example model inputs of one batch (for the ONNX export)."""
        import torch

        return (torch.zeros((1, 3, 224, 224), dtype=torch.float32),)

    def load(self, data_dir: Path, size: str, backend: str, threads: int,
             device: str = "cpu") -> None:
        import torch

        from ..models.resnet import RESNET_SIZES, build_resnet

        check_size(self, size)
        check_backend(self.name, backend, self.backends)
        self.data_dir = Path(data_dir)
        manifest = read_app_manifest(self, self.data_dir)
        self.files = list(manifest["files"])
        labels = self.data_dir / manifest.get("labels", "labels.txt")
        with reading_input(self, self.data_dir, labels):
            self.labels = labels.read_text().splitlines()
        self.device = device
        self.model = prepare_model(build_resnet(size, seed=0), backend, threads,
                                   self.example_inputs(),
                                   cache_key=(self.name, size, RESNET_SIZES[size], 0),
                                   input_names=["image"], output_names=["logits"], device=device)
        self.model_device = model_device(device, backend, torch)
        self._torch = torch

    def sample_ids(self) -> Sequence[str]:
        return self.files

    def preprocess(self, sample_id: str) -> Any:
        from PIL import Image

        assert self.data_dir is not None
        path = self.data_dir / sample_id
        with reading_input(self, self.data_dir, path), Image.open(io.BytesIO(read_input(path))) as img:
            img = img.convert("RGB")  # decodes: a truncated or corrupt JPEG fails here
            w, h = img.size
            scale = 256 / min(w, h)
            img = img.resize((max(256, round(w * scale)), max(256, round(h * scale))),
                             Image.BILINEAR)
            w, h = img.size
            left, top = (w - 224) // 2, (h - 224) // 2
            img = img.crop((left, top, left + 224, top + 224))
            arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - MEAN) / STD
        return self._torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def infer(self, batch: Sequence[Any]) -> Any:
        torch = self._torch
        with torch.inference_mode():  # copies to and from a GPU are part of inference
            return self.model_device.run(self.model, torch.stack(list(batch)))

    def postprocess(self, output: Any) -> Sequence[Any]:
        torch = self._torch
        probs = torch.softmax(output, dim=1)
        top = torch.topk(probs, k=5, dim=1)
        results = []
        for values, indices in zip(top.values.tolist(), top.indices.tolist()):
            results.append([{"label": self.labels[i], "index": i, "p": round(p, 6)}
                            for i, p in zip(indices, values)])
        return results
