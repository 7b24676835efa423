"""Criteo-format click logs (the Kaggle Display Advertising Challenge layout), one request per
file: one user with N candidate ads, one tab-separated line per candidate::

    label \\t I1 .. I13 \\t C1 .. C26

Labels are 0/1 (~25% clicks, like Criteo). I1..I13 are integer counts, heavy-tailed, with
per-column missing rates like Criteo's (empty field = missing; I2 can be negative).
C1..C26 are 32-bit hashes written as 8 lower-case hex characters, drawn with Zipf-like
popularity (P(rank r) ~ 1/r) over each column's Criteo Kaggle cardinality, some columns with
missing values. The user/context columns (I1..I4, C1..C13) are shared by a request's lines;
the ad columns differ per candidate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import write_manifest

NUM_DENSE = 13
NUM_SPARSE = 26
DEFAULT_CANDIDATES = 128

#: distinct values of C1..C26 in the Criteo Kaggle (DAC) training set
KAGGLE_CARDINALITIES: tuple[int, ...] = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
    14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)

DENSE_MISSING = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22)
DENSE_LOG_MEAN = (0.5, 2.0, 2.5, 1.8, 8.0, 4.0, 1.5, 2.5, 4.0, 0.3, 1.0, 0.3, 2.0)
SPARSE_MISSING = (0.0,) * 18 + (0.44, 0.44, 0.0, 0.76, 0.0, 0.0, 0.44, 0.44)
USER_DENSE = 4  # I1..I4 describe the user/context
USER_SPARSE = 13  # C1..C13 describe the user/context


def _mix32(x: np.ndarray) -> np.ndarray:
    """A 64-bit integer mixer (splitmix64's finaliser), truncated to 32 bits: rank -> hash."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def zipf_ranks(rng: np.random.Generator, cardinality: int, size: int) -> np.ndarray:
    """Ranks 0..cardinality-1 with P(rank r) ~ 1/(r+1) (log-uniform: Zipf with exponent 1)."""
    u = rng.random(size)
    return np.minimum(np.floor(np.exp(u * np.log(cardinality + 1.0))) - 1, cardinality - 1).astype(np.int64)


def _dense_column(rng: np.random.Generator, column: int, size: int) -> list[str]:
    values = np.floor(rng.lognormal(DENSE_LOG_MEAN[column], 1.2, size)).astype(np.int64)
    if column == 1:  # I2 has small negative values in Criteo
        values -= (rng.random(size) < 0.05).astype(np.int64) * rng.integers(1, 4, size)
    missing = rng.random(size) < DENSE_MISSING[column]
    return ["" if m else str(int(v)) for v, m in zip(values, missing)]


def _sparse_column(rng: np.random.Generator, column: int, size: int) -> list[str]:
    ranks = zipf_ranks(rng, KAGGLE_CARDINALITIES[column], size)
    hashes = _mix32(ranks.astype(np.uint64) + np.uint64(column + 1) * np.uint64(0x9E3779B97F4A7C15 & 0xFFFFFFFF))
    missing = rng.random(size) < SPARSE_MISSING[column]
    return ["" if m else f"{int(h):08x}" for h, m in zip(hashes, missing)]


def request_lines(rng: np.random.Generator, candidates: int) -> list[str]:
    """One request: ``candidates`` Criteo lines sharing the user/context columns."""
    columns: list[list[str]] = [[str(int(v)) for v in (rng.random(candidates) < 0.25)]]
    for j in range(NUM_DENSE):
        n = 1 if j < USER_DENSE else candidates
        values = _dense_column(rng, j, n)
        columns.append(values * candidates if n == 1 else values)
    for j in range(NUM_SPARSE):
        n = 1 if j < USER_SPARSE else candidates
        values = _sparse_column(rng, j, n)
        columns.append(values * candidates if n == 1 else values)
    return ["\t".join(fields) for fields in zip(*columns)]


def generate_criteo_requests(out_dir: Path, count: int, seed: int,
                             candidates: int = DEFAULT_CANDIDATES) -> None:
    """``count`` request files (``candidates`` lines each) and a manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        name = f"req_{i:05d}.tsv"
        (out_dir / name).write_text("\n".join(request_lines(rng, candidates)) + "\n")
        files.append(name)
    write_manifest(out_dir, "rs", count, seed, files, candidates=candidates,
                   format="criteo-tsv", cardinalities=list(KAGGLE_CARDINALITIES))
