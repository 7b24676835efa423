"""BERT for extractive question answering (the MLPerf NLP model: BERT-Large on SQuAD v1.1).

Written here (nothing can be downloaded; weights are random with a fixed seed, and compute
cost does not depend on the weight values). The shape is the original BERT's: token +
position + segment embeddings with LayerNorm, N post-LayerNorm encoder layers (multi-head
self-attention, GELU feed-forward of 4x the hidden size), and a QA head -- one linear layer
giving a start and an end logit per token. Like MLPerf's SQuAD model it has no pooler.

``forward(input_ids, token_type_ids, attention_mask) -> (start_logits, end_logits)`` takes
and returns tensors only, so it exports to ONNX unchanged (see ``apps/backends.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab_size: int = 30522  # the uncased English WordPiece vocabulary of the paper's BERT
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12


BERT_SIZES: dict[str, BertConfig] = {
    "large": BertConfig(layers=24, hidden=1024, heads=16, intermediate=4096),  # ~335M
    "base": BertConfig(layers=12, hidden=768, heads=12, intermediate=3072),  # ~109M
    "tiny": BertConfig(layers=2, hidden=128, heads=2, intermediate=512),
}


def parameter_count(config: BertConfig) -> int:
    """Parameters of :class:`BertForQuestionAnswering` from its config, without building it."""
    h, i = config.hidden, config.intermediate
    embeddings = (config.vocab_size + config.max_positions + config.type_vocab_size) * h + 2 * h
    attention = 4 * (h * h + h) + 2 * h  # q, k, v, output projections + LayerNorm
    feed_forward = (h * i + i) + (i * h + h) + 2 * h
    return embeddings + config.layers * (attention + feed_forward) + (2 * h + 2)


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden)
        self.position = nn.Embedding(config.max_positions, config.hidden)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.norm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.hidden // config.heads
        self.query = nn.Linear(config.hidden, config.hidden)
        self.key = nn.Linear(config.hidden, config.hidden)
        self.value = nn.Linear(config.hidden, config.hidden)
        self.output = nn.Linear(config.hidden, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)  # (b, heads, s, d)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        probs = torch.softmax(scores + mask_bias, dim=-1)
        context = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, h)
        return self.norm(x + self.output(context))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertSelfAttention(config)
        self.intermediate = nn.Linear(config.hidden, config.intermediate)
        self.output = nn.Linear(config.intermediate, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.act = nn.GELU()  # exact (erf) GELU, as in BERT

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask_bias)
        return self.norm(x + self.output(self.act(self.intermediate(x))))


class BertForQuestionAnswering(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.layers))
        self.qa_outputs = nn.Linear(config.hidden, 2)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embeddings(input_ids, token_type_ids)
        # (b, 1, 1, s): 0 where attended, a large negative number on padding
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        logits = self.qa_outputs(x)
        return logits[..., 0], logits[..., 1]


def _init_weights(module: nn.Module) -> None:
    # BERT's initialisation: N(0, 0.02) for weights, zero biases, unit LayerNorm.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def build_bert(size: str, seed: int = 0) -> BertForQuestionAnswering:
    """A BERT-for-QA of ``size`` with deterministic random weights, in eval mode."""
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(BERT_SIZES[size])
    model.apply(_init_weights)
    model.eval()
    return model


def count_parameters_meta(config: BertConfig) -> int:
    """Parameter count of the real module, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = BertForQuestionAnswering(config)
    return sum(p.numel() for p in model.parameters())
