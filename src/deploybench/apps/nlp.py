"""Question answering (NLP), after MLPerf's BERT-Large on SQuAD v1.1.

One request = one question of a SQuAD v1.1 file (sample id = the question's id).

preprocess: read the question's paragraph from the SQuAD JSON on disk (seek + read + JSON
parse, see ``datasets/squad.py``), WordPiece-tokenise the question (at most 64 tokens) and
the context keeping each token's character offsets, and cut the context into windows of
``[CLS] question [SEP] context-piece [SEP]`` padded to 384 tokens, the next window starting
128 context tokens further (MLPerf's / Google's ``doc_stride``), so a long context gives
several windows.
infer: BERT-for-QA on all windows of the batch at once -> start and end logits per token.
postprocess: per question, over all its windows, the top-20 start x top-20 end tokens, kept
when both are context tokens, the end is not before the start, the span is at most 30
tokens and the start is in the window where it has the most context; the best spans
(n-best, 20) are mapped back through the offsets to the context text and scored with a
softmax -> the answer string (always a substring of the context) and the n-best list.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .backends import check_backend, prepare_model
from .base import AppError, check_size, read_app_manifest, reading_input
from .device import ModelDevice, model_device

MAX_SEQ_LENGTH = 384
DOC_STRIDE = 128
MAX_QUERY_LENGTH = 64
N_BEST = 20
MAX_ANSWER_LENGTH = 30
SEED = 0


@dataclass
class QaFeatures:
    """One question, tokenised into ``windows`` rows of ``MAX_SEQ_LENGTH`` tokens."""

    qa_id: str
    context: str
    input_ids: np.ndarray  # (windows, seq) int64
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    #: per window, per position: (char start, char end) in the context of the token's whole
    #: word, or None off-context
    token_offsets: list[list[tuple[int, int] | None]]
    #: per window, per position: this window is the one where the token has the most context
    max_context: list[list[bool]]

    @property
    def windows(self) -> int:
        return int(self.input_ids.shape[0])


def window_starts(context_tokens: int, window_tokens: int, stride: int) -> list[int]:
    """Start positions of the context windows (Google's BERT ``run_squad`` algorithm)."""
    starts, start = [], 0
    while True:
        starts.append(start)
        if start + window_tokens >= context_tokens:
            return starts
        start += min(stride, context_tokens - start)


def _max_context(starts: list[int], lengths: list[int], window: int, position: int) -> bool:
    """Whether ``position`` (a context token) has the most context in ``window``: the
    window whose min(left, right) context around the token is largest (ties: shorter)."""
    best_score, best = None, None
    for i, (start, length) in enumerate(zip(starts, lengths)):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best = score, i
    return best == window


def tokenize_question(tokenizer: Any, question: str, context: str, qa_id: str = "",
                      max_seq_length: int = MAX_SEQ_LENGTH, doc_stride: int = DOC_STRIDE,
                      max_query_length: int = MAX_QUERY_LENGTH) -> QaFeatures:
    """The model input of one question: windows of ``[CLS] q [SEP] context-piece [SEP]``."""
    vocab = tokenizer.get_vocab()
    cls_id, sep_id, pad_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"]
    q_ids = tokenizer.encode(question, add_special_tokens=False).ids[:max_query_length]
    ctx = tokenizer.encode(context, add_special_tokens=False)
    ctx_ids = ctx.ids
    # each token's offsets widened to its whole word (pre-tokenizer word), so answers start
    # and end at word boundaries, like the original SQuAD post-processing's token->word map
    word_span: dict[int, list[int]] = {}
    for word, (c_start, c_end) in zip(ctx.word_ids, ctx.offsets):
        span = word_span.setdefault(word, [c_start, c_end])
        span[0], span[1] = min(span[0], c_start), max(span[1], c_end)
    ctx_offsets = [tuple(word_span[word]) for word in ctx.word_ids]
    window_tokens = max_seq_length - len(q_ids) - 3
    starts = window_starts(len(ctx_ids), window_tokens, doc_stride)
    lengths = [min(window_tokens, len(ctx_ids) - s) for s in starts]
    n = len(starts)
    input_ids = np.full((n, max_seq_length), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((n, max_seq_length), dtype=np.int64)
    attention_mask = np.zeros((n, max_seq_length), dtype=np.int64)
    offsets: list[list[tuple[int, int] | None]] = []
    max_context: list[list[bool]] = []
    head = [cls_id, *q_ids, sep_id]
    for w, (start, length) in enumerate(zip(starts, lengths)):
        row = head + ctx_ids[start:start + length] + [sep_id]
        input_ids[w, :len(row)] = row
        token_type_ids[w, len(head):len(row)] = 1
        attention_mask[w, :len(row)] = 1
        offs: list[tuple[int, int] | None] = [None] * max_seq_length
        best = [False] * max_seq_length
        for k in range(length):
            offs[len(head) + k] = ctx_offsets[start + k]
            best[len(head) + k] = n == 1 or _max_context(starts, lengths, w, start + k)
        offsets.append(offs)
        max_context.append(best)
    return QaFeatures(qa_id, context, input_ids, token_type_ids, attention_mask, offsets,
                      max_context)


def best_spans(features: QaFeatures, start_logits: np.ndarray, end_logits: np.ndarray,
               n_best: int = N_BEST, max_answer_length: int = MAX_ANSWER_LENGTH) -> list[dict[str, Any]]:
    """The n-best answer spans over all windows, as text of the context, best first, with
    softmax probabilities over the n-best scores."""
    candidates: list[tuple[float, int, int]] = []  # (score, char start, char end)
    for w in range(features.windows):
        s_log, e_log = start_logits[w], end_logits[w]
        offs, best = features.token_offsets[w], features.max_context[w]
        top_starts = np.argsort(s_log)[::-1][:n_best]
        top_ends = np.argsort(e_log)[::-1][:n_best]
        for s in top_starts.tolist():
            if offs[s] is None or not best[s]:
                continue
            for e in top_ends.tolist():
                if offs[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                candidates.append((float(s_log[s] + e_log[e]), offs[s][0], offs[e][1]))
    candidates.sort(key=lambda c: c[0], reverse=True)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for score, c_start, c_end in candidates:
        text = features.context[c_start:c_end]
        if text in seen:
            continue
        seen.add(text)
        out.append({"text": text, "start": c_start, "score": score})
        if len(out) == n_best:
            break
    if out:
        scores = np.array([c["score"] for c in out])
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        for c, p in zip(out, probs.tolist()):
            c["probability"] = round(p, 6)
    return out


class QuestionAnswering:
    name: ClassVar[str] = "nlp"
    sizes: ClassVar[tuple[str, ...]] = ("large", "base", "tiny")
    backends: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime")

    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self.squad_path: Path | None = None
        self.ids: list[str] = []
        self.index: dict[str, list[int]] = {}
        self.tokenizer: Any = None
        self.model: Any = None
        self.device = "cpu"
        self.model_device = ModelDevice()

    def generate_data(self, out_dir: Path, count: int, seed: int) -> None:
        from ..datasets.squad import generate_squad_dataset

        generate_squad_dataset(Path(out_dir), count, seed)

    def example_inputs(self, windows: int = 1, seq: int = 64) -> tuple[Any, ...]:
        """Example model inputs of one batch (for the ONNX export)."""
        import torch

        ids = torch.ones((windows, seq), dtype=torch.int64)
        return ids, torch.zeros_like(ids), torch.ones_like(ids)

    def load(self, data_dir: Path, size: str, backend: str, threads: int,
             device: str = "cpu") -> None:
        import torch

        from ..datasets.squad import load_tokenizer
        from ..models.bert import BERT_SIZES, build_bert

        check_size(self, size)
        check_backend(self.name, backend, self.backends)
        self.data_dir = Path(data_dir)
        manifest = read_app_manifest(self, self.data_dir)
        self.ids = list(manifest["files"])
        self.squad_path = self.data_dir / manifest["squad"]
        index_path = self.data_dir / manifest["index"]
        with reading_input(self, self.data_dir, index_path):
            self.index = json.loads(index_path.read_text())["paragraphs"]
        with reading_input(self, self.data_dir, self.data_dir / manifest.get("vocab", "vocab.txt")):
            self.tokenizer = load_tokenizer(self.data_dir)
        config = BERT_SIZES[size]
        if self.tokenizer.get_vocab_size() > config.vocab_size:
            raise AppError(f"vocabulary of {self.tokenizer.get_vocab_size()} pieces is larger "
                           f"than the model's {config.vocab_size}: regenerate the data")
        self.device = device
        model = build_bert(size, seed=SEED)
        names = ["input_ids", "token_type_ids", "attention_mask"]
        outputs = ["start_logits", "end_logits"]
        self.model = prepare_model(
            model, backend, threads, self.example_inputs(), cache_key=(self.name, size, config, SEED),
            input_names=names, output_names=outputs,
            dynamic_axes={n: {1: "sequence"} for n in names + outputs}, device=device)
        self.model_device = model_device(device, backend, torch)
        self._torch = torch

    def sample_ids(self) -> Sequence[str]:
        return self.ids

    def preprocess(self, sample_id: str) -> QaFeatures:
        from ..datasets.squad import read_paragraph

        assert self.squad_path is not None and self.data_dir is not None
        offset, length = self.index[sample_id]
        with reading_input(self, self.data_dir, self.squad_path):
            paragraph = read_paragraph(self.squad_path, offset, length)
            question = next(qa["question"] for qa in paragraph["qas"] if qa["id"] == sample_id)
            context = paragraph["context"]
        return tokenize_question(self.tokenizer, question, context, sample_id)

    def infer(self, batch: Sequence[QaFeatures]) -> Any:
        torch = self._torch
        tensors = [torch.from_numpy(np.concatenate([getattr(f, name) for f in batch]))
                   for name in ("input_ids", "token_type_ids", "attention_mask")]
        with torch.inference_mode():  # copies to and from a GPU are part of inference
            start, end = self.model_device.run(self.model, *tensors)
            start, end = start.float().numpy(), end.float().numpy()
        out, row = [], 0
        for f in batch:
            out.append((f, start[row:row + f.windows], end[row:row + f.windows]))
            row += f.windows
        return out

    def postprocess(self, output: Any) -> Sequence[Any]:
        results = []
        for features, start, end in output:
            nbest = best_spans(features, start, end)
            results.append({"id": features.qa_id,
                            "answer": nbest[0]["text"] if nbest else "",
                            "nbest": nbest})
        return results
