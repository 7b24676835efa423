"""ImageNet-like JPEG files: varied sizes around 500x375, natural-image-like spectra
(smooth shapes plus texture), quality ~90, so decode cost and file sizes are realistic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import write_manifest


def _image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    # Low-frequency colour field (upsampled coarse noise) + random ellipses + fine texture.
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC),
                      dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(3, 8))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(20, width / 3), rng.uniform(20, height / 3)
        mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        base[mask] = 0.5 * base[mask] + 0.5 * rng.uniform(0, 255, size=3)
    base += rng.normal(0, 12, size=base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def generate_images(out_dir: Path, count: int, seed: int, quality: int = 90) -> list[str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        width = int(rng.integers(400, 640))
        height = int(width * rng.uniform(0.62, 0.88))
        if rng.random() < 0.2:  # some portrait images, like ImageNet
            width, height = height, width
        name = f"img_{i:05d}.jpg"
        Image.fromarray(_image(rng, width, height)).save(out_dir / name, "JPEG", quality=quality)
        files.append(name)
    return files


def write_labels(out_dir: Path, num_classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    syllables = ["ka", "lo", "mi", "ter", "sun", "da", "vel", "ri", "po", "nes", "gar", "ul"]
    names = []
    for i in range(num_classes):
        word = "".join(rng.choice(syllables, size=int(rng.integers(2, 4))))
        names.append(f"{word} {i}")
    (Path(out_dir) / "labels.txt").write_text("\n".join(names) + "\n")


def generate_imagenet_like(out_dir: Path, count: int, seed: int) -> None:
    files = generate_images(out_dir, count, seed)
    write_labels(out_dir, 1000, seed)
    write_manifest(Path(out_dir), "ic", count, seed, files, labels="labels.txt")
