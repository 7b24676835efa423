"""RNN-Transducer (the MLPerf speech-recognition model) and smaller variants, plus its greedy
decoder.

Shape of MLPerf's RNN-T (LibriSpeech, 45.3M parameters in the paper's Table I):

- **encoder**: input 240 features (80 log-mels x 3 stacked frames, one every 30 ms), 2 LSTM
  layers of 1024 ("pre-rnn"), time reduction by stacking 2 consecutive frames (2048 wide,
  one every 60 ms), 3 more LSTM layers of 1024 ("post-rnn");
- **prediction network**: an embedding of the previous symbol (320) and 2 LSTM layers of 320;
- **joint network**: linear projections of encoder (1024) and prediction (320) outputs to
  512, summed, ReLU, linear to the 29 symbols.

Symbols follow MLPerf: ``" abcdefghijklmnopqrstuvwxyz'"`` are ids 0..27, blank is 28.

DESIGN: the three networks are separate modules with tensor-only ``forward``s, because the
greedy decoder is a data-dependent Python loop that cannot be traced: a second backend
exports :class:`RNNT` itself (the encoder, ~95% of the work) plus ``model.prediction`` and
``model.joint``, and reuses :func:`greedy_decode`, which only calls
``predict(tokens, h, c)`` and ``joint(f, g)`` (any callables with those signatures work).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LABELS = " abcdefghijklmnopqrstuvwxyz'"
BLANK = len(LABELS)  # 28
NUM_SYMBOLS = len(LABELS) + 1  # 29
FEATURES_PER_FRAME = 80  # log-mel bins
FRAMES_STACKED = 3  # feature frames stacked (and subsampled) before the encoder


@dataclass(frozen=True)
class RNNTConfig:
    input_dim: int = FEATURES_PER_FRAME * FRAMES_STACKED
    encoder_hidden: int = 1024
    pre_layers: int = 2
    post_layers: int = 3
    time_reduction: int = 2
    pred_embed: int = 320
    pred_hidden: int = 320
    pred_layers: int = 2
    joint_hidden: int = 512
    num_symbols: int = NUM_SYMBOLS
    #: greedy decoding bounds: symbols emitted at one encoder frame before moving on, and
    #: symbols per utterance per encoder frame (a 60 ms frame; read English is ~15 chars/s,
    #: i.e. ~0.9 per frame, so 1.0 bounds the total without cutting real transcripts).
    max_symbols_per_step: int = 2
    max_symbols_per_frame: float = 1.0


RNNT_SIZES: dict[str, RNNTConfig] = {
    "full": RNNTConfig(),  # MLPerf RNN-T, 45.3M parameters
    "small": RNNTConfig(encoder_hidden=512, pre_layers=1, post_layers=2, pred_embed=256,
                        pred_hidden=256, pred_layers=1, joint_hidden=256),
    "tiny": RNNTConfig(encoder_hidden=128, pre_layers=1, post_layers=1, pred_embed=64,
                       pred_hidden=64, pred_layers=1, joint_hidden=64),
}


def stack_time(x: torch.Tensor, lengths: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, H) -> (B, ceil(T/factor), H*factor): concatenate each group of ``factor``
    consecutive frames (the last group zero-padded)."""
    b, t, h = x.shape
    pad = (-t) % factor
    # No `if pad:` -- an always-present (possibly empty) pad keeps the graph the same for odd
    # and even lengths, so an ONNX export traced at one length serves every length.
    x = torch.cat([x, x.new_zeros(b, pad, h)], dim=1)
    x = x.reshape(b, (t + pad) // factor, h * factor)
    return x, torch.div(lengths + factor - 1, factor, rounding_mode="floor")


class RNNTEncoder(nn.Module):
    def __init__(self, config: RNNTConfig) -> None:
        super().__init__()
        h = config.encoder_hidden
        self.time_reduction = config.time_reduction
        self.pre_rnn = nn.LSTM(config.input_dim, h, num_layers=config.pre_layers, batch_first=True)
        self.post_rnn = nn.LSTM(h * config.time_reduction, h, num_layers=config.post_layers,
                                batch_first=True)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Unidirectional LSTMs: padding at the end of shorter utterances in a batch does not
        # change their outputs at valid frames, so no packing is needed.
        x, _ = self.pre_rnn(features)
        x, lengths = stack_time(x, lengths, self.time_reduction)
        x, _ = self.post_rnn(x)
        return x, lengths


class RNNTPrediction(nn.Module):
    """One step of the prediction network: previous symbols (B, 1) and LSTM state -> output."""

    def __init__(self, config: RNNTConfig) -> None:
        super().__init__()
        # The blank id doubles as "start of sequence" and embeds to zeros (padding_idx).
        self.embed = nn.Embedding(config.num_symbols, config.pred_embed, padding_idx=BLANK)
        self.rnn = nn.LSTM(config.pred_embed, config.pred_hidden, num_layers=config.pred_layers,
                           batch_first=True)

    def forward(self, tokens: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g, (h, c) = self.rnn(self.embed(tokens), (h, c))
        return g[:, -1], h, c


class RNNTJoint(nn.Module):
    def __init__(self, config: RNNTConfig) -> None:
        super().__init__()
        self.enc_proj = nn.Linear(config.encoder_hidden, config.joint_hidden)
        self.pred_proj = nn.Linear(config.pred_hidden, config.joint_hidden)
        self.out = nn.Linear(config.joint_hidden, config.num_symbols)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Encoder frame(s) f (B, He) and prediction output(s) g (B, Hp) -> logits (B, 29)."""
        return self.out(torch.relu(self.enc_proj(f) + self.pred_proj(g)))


class RNNT(nn.Module):
    """``forward`` is the encoder (features (B, T, 240), lengths (B,) -> (B, T', H), (B,));
    decoding with :func:`greedy_decode` uses ``prediction`` and ``joint``."""

    def __init__(self, config: RNNTConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = RNNTEncoder(config)
        self.prediction = RNNTPrediction(config)
        self.joint = RNNTJoint(config)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(features, lengths)

    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        zeros = torch.zeros(c.pred_layers, batch, c.pred_hidden)
        return zeros, zeros.clone()


def greedy_decode(encoded: torch.Tensor, lengths: torch.Tensor, predict, joint,
                  initial_state: tuple[torch.Tensor, torch.Tensor], *,
                  max_symbols_per_step: int, max_symbols_per_frame: float) -> list[list[int]]:
    """Greedy RNN-T decoding of each utterance of a batch: symbol ids, blanks removed.

    At each encoder frame the joint network scores the frame against the prediction
    network's output; a non-blank symbol is emitted and fed back into the prediction network,
    up to ``max_symbols_per_step`` per frame; blank moves to the next frame. The total is
    bounded by ``max_symbols_per_frame`` per encoder frame.

    DESIGN: with random weights, whether the joint network prefers blank is a coin tossed
    once per model (and the LSTM state locks in: a model emits at every frame, or almost
    never; re-biasing blank does not find a middle). The bounds keep the cost between one
    joint evaluation per 60 ms frame (all blank) and one joint evaluation plus one
    prediction step per frame (budget reached), which brackets a trained model on read
    speech (~0.75 symbols per frame), and make it a fixed function of the weights and input.
    """
    results: list[list[int]] = []
    for b in range(encoded.shape[0]):
        n_frames = int(lengths[b])
        budget = int(max_symbols_per_frame * n_frames)
        h, c = initial_state
        token = torch.full((1, 1), BLANK, dtype=torch.long)
        g, h, c = predict(token, h, c)
        out: list[int] = []
        for t in range(n_frames):
            if len(out) >= budget:
                break
            f = encoded[b, t:t + 1]
            for _ in range(max_symbols_per_step):
                symbol = int(joint(f, g).argmax(dim=-1)[0])
                if symbol == BLANK:
                    break
                out.append(symbol)
                if len(out) >= budget:
                    break
                token[0, 0] = symbol
                g, h, c = predict(token, h, c)
        results.append(out)
    return results


def ids_to_text(ids: list[int]) -> str:
    return "".join(LABELS[i] for i in ids if 0 <= i < len(LABELS))


def build_rnnt(size: str, seed: int = 0) -> RNNT:
    """An RNN-T of ``size`` with deterministic random weights, in eval mode."""
    torch.manual_seed(seed)
    model = RNNT(RNNT_SIZES[size])
    model.eval()
    return model
