"""DLRM (the MLPerf recommendation model) with configurable table sizes.

Shape (MLPerf, Criteo): 13 dense features through the bottom MLP 13-512-256-128; 26
categorical features through one embedding bag each (128 wide, one index per bag, sum);
"dot" interaction: the pairwise dot products of the 27 vectors (351) concatenated with the
bottom MLP's output (128) -> 479; top MLP 479-1024-1024-512-256-1 -> one click logit per
candidate (the sigmoid is post-processing).

Table sizes are what make DLRM large (MLPerf's Terabyte tables reach ~100 GB), and they do
not change the compute per candidate (one row read per table), so sizes cap them to fit:

- ``debug``: MLPerf's MLP shapes, Criteo Kaggle cardinalities capped at 250,000 rows:
  ~1.9M rows x 128 x 4 B ~= 1 GB, the size of the paper's "DLRM (Debugging)" (Table I);
- ``tiny``: 16-wide embeddings capped at 1,000 rows, MLPs 13-64-16 and 367-64-1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..datasets.criteo import KAGGLE_CARDINALITIES, NUM_DENSE


@dataclass(frozen=True)
class DLRMConfig:
    embedding_dim: int
    bottom_mlp: tuple[int, ...]  # hidden and output widths after the 13 dense inputs
    top_mlp: tuple[int, ...]  # widths after the interaction; ends in 1
    table_cap: int  # rows per table at most (Criteo Kaggle cardinality otherwise)

    @property
    def table_sizes(self) -> tuple[int, ...]:
        return tuple(min(c, self.table_cap) for c in KAGGLE_CARDINALITIES)

    @property
    def interaction_dim(self) -> int:
        vectors = len(KAGGLE_CARDINALITIES) + 1
        return self.embedding_dim + vectors * (vectors - 1) // 2

    def parameter_count(self) -> int:
        """Parameters without building the model (the tables can be large)."""
        total = sum(self.table_sizes) * self.embedding_dim
        for widths in ((NUM_DENSE, *self.bottom_mlp), (self.interaction_dim, *self.top_mlp)):
            total += sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        return total


DLRM_SIZES: dict[str, DLRMConfig] = {
    "debug": DLRMConfig(embedding_dim=128, bottom_mlp=(512, 256, 128),
                        top_mlp=(1024, 1024, 512, 256, 1), table_cap=250_000),
    "tiny": DLRMConfig(embedding_dim=16, bottom_mlp=(64, 16), top_mlp=(64, 1), table_cap=1_000),
}


def _mlp(widths: tuple[int, ...], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """``forward(dense (B, 13) float, sparse (B, 26) int64 row ids) -> logits (B,)``."""

    def __init__(self, config: DLRMConfig) -> None:
        super().__init__()
        d = config.embedding_dim
        if config.bottom_mlp[-1] != d:
            raise ValueError("the bottom MLP must end in the embedding width")
        self.config = config
        self.bottom = _mlp((NUM_DENSE, *config.bottom_mlp), last_activation=True)
        # Uniform(+-1/sqrt(rows)) like DLRM; built in place (_weight) so a 1 GB model is
        # initialised once, not twice.
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(rows, d, mode="sum",
                            _weight=torch.empty(rows, d).uniform_(-rows ** -0.5, rows ** -0.5))
            for rows in config.table_sizes)
        self.top = _mlp((config.interaction_dim, *config.top_mlp), last_activation=False)
        vectors = len(config.table_sizes) + 1
        rows, cols = torch.tril_indices(vectors, vectors, offset=-1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        if torch.jit.is_tracing():
            # Only while the ONNX exporter traces: one index per bag (Criteo), so the bag's
            # sum is one row, and a row gather exports to a single ONNX Gather where
            # embedding_bag exports to a Loop that runs ~10x slower. (Not
            # torch.onnx.is_in_onnx_export(): touching torch.onnx at inference imports the
            # exporter, which made the worker's Python pre-processing 10x slower.)
            embedded = [nn.functional.embedding(sparse[:, j], table.weight)
                        for j, table in enumerate(self.tables)]
        else:
            embedded = [table(sparse[:, j:j + 1]) for j, table in enumerate(self.tables)]
        vectors = torch.stack([x, *embedded], dim=1)  # (B, 27, d)
        dots = torch.bmm(vectors, vectors.transpose(1, 2))
        pairs = dots[:, self.pair_rows, self.pair_cols]  # (B, 351)
        return self.top(torch.cat([x, pairs], dim=1)).squeeze(1)


def build_dlrm(size: str, seed: int = 0) -> DLRM:
    """A DLRM of ``size`` with deterministic random weights, in eval mode."""
    torch.manual_seed(seed)
    model = DLRM(DLRM_SIZES[size])
    model.eval()
    return model
