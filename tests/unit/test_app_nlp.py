"""The NLP app: SQuAD v1.1 data, WordPiece tokeniser, windows, span extraction, BERT sizes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from deploybench.apps import create_app
from deploybench.apps.base import AppError
from deploybench.apps.nlp import (DOC_STRIDE, MAX_SEQ_LENGTH, QaFeatures, best_spans,
                                  tokenize_question, window_starts)
from deploybench.datasets.cache import ensure_data
from deploybench.datasets.squad import (SQUAD_FILE, generate_squad, load_tokenizer,
                                        read_paragraph)
from deploybench.models.bert import (BERT_SIZES, build_bert, count_parameters_meta,
                                     parameter_count)


@pytest.fixture(scope="module")
def nlp_data(tmp_path_factory) -> Path:
    return ensure_data(create_app("nlp"), 16, 0, out_dir=tmp_path_factory.mktemp("nlp") / "data")


@pytest.fixture(scope="module")
def squad(nlp_data) -> dict:
    return json.loads((nlp_data / SQUAD_FILE).read_text())


@pytest.fixture(scope="module")
def tokenizer(nlp_data):
    return load_tokenizer(nlp_data)


def paragraphs(squad):
    return [p for article in squad["data"] for p in article["paragraphs"]]


@pytest.fixture(scope="module")
def long_paragraph(squad, tokenizer) -> dict:
    for p in paragraphs(squad):
        if len(tokenizer.encode(p["context"], add_special_tokens=False).ids) > 2 * MAX_SEQ_LENGTH:
            return p
    pytest.fail("the generated data set has no long context")


def test_generated_file_is_squad_v1_1_and_every_answer_is_a_span_of_its_context(squad, nlp_data):
    assert squad["version"] == "1.1"
    manifest = json.loads((nlp_data / "manifest.json").read_text())
    ids = []
    for article in squad["data"]:
        assert article["title"] and article["paragraphs"]
        for para in article["paragraphs"]:
            assert isinstance(para["context"], str) and para["qas"]
            for qa in para["qas"]:
                assert qa["question"].endswith("?")
                answer = qa["answers"][0]
                start = answer["answer_start"]
                assert para["context"][start:start + len(answer["text"])] == answer["text"]
                ids.append(qa["id"])
    assert ids == manifest["files"] and len(ids) == 16 and len(set(ids)) == 16


def test_generation_is_deterministic_and_depends_on_the_seed():
    assert generate_squad(10, 3) == generate_squad(10, 3)
    assert generate_squad(10, 3) != generate_squad(10, 4)


def test_index_reads_each_questions_paragraph_from_disk(nlp_data, squad):
    index = json.loads((nlp_data / "index.json").read_text())["paragraphs"]
    for para in paragraphs(squad):
        for qa in para["qas"]:
            assert read_paragraph(nlp_data / SQUAD_FILE, *index[qa["id"]]) == para


def test_tokeniser_round_trips_the_text(squad, tokenizer):
    for para in paragraphs(squad)[:5]:
        encoding = tokenizer.encode(para["context"], add_special_tokens=False)
        assert tokenizer.token_to_id("[UNK]") not in encoding.ids
        decoded = tokenizer.decode(encoding.ids)
        normalised = " ".join(para["context"].lower().split())
        # decoding puts no space before punctuation either; compare without spaces too
        assert decoded == normalised or re.sub(r"\s", "", decoded) == re.sub(r"\s", "", normalised)
        assert re.sub(r"\s", "", decoded) == re.sub(r"\s", "", normalised)


def test_vocabulary_splits_unseen_names_into_word_pieces(squad, tokenizer):
    tokens = tokenizer.encode(paragraphs(squad)[0]["context"]).tokens
    assert any(t.startswith("##") for t in tokens)
    assert 1000 < tokenizer.get_vocab_size() <= BERT_SIZES["tiny"].vocab_size


def test_window_starts_step_by_the_stride_and_cover_the_context():
    assert window_starts(100, 369, 128) == [0]
    assert window_starts(800, 369, 128) == [0, 128, 256, 384, 512]
    starts = window_starts(1000, 300, 128)
    assert starts[-1] + 300 >= 1000 and all(b - a == 128 for a, b in zip(starts, starts[1:]))


def test_long_context_gives_several_windows_128_tokens_apart(long_paragraph, tokenizer):
    qa = long_paragraph["qas"][0]
    features = tokenize_question(tokenizer, qa["question"], long_paragraph["context"], qa["id"])
    context = tokenizer.encode(long_paragraph["context"], add_special_tokens=False)
    assert features.windows >= 3
    assert features.input_ids.shape == (features.windows, MAX_SEQ_LENGTH)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    q_len = len(tokenizer.encode(qa["question"], add_special_tokens=False).ids)
    first_ctx = q_len + 2
    for w in range(features.windows):
        row = features.input_ids[w]
        assert row[0] == cls_id and row[first_ctx - 1] == sep_id
        # the window's first context token is context token w * 128
        assert row[first_ctx] == context.ids[w * DOC_STRIDE]
        assert features.token_type_ids[w, first_ctx] == 1 and features.token_type_ids[w, 1] == 0
    last = features.windows - 1
    used = int(features.attention_mask[last].sum())
    assert features.input_ids[last, used - 2] == context.ids[-1]  # reaches the end
    # every context token is the "max context" token of exactly one window
    counts = np.zeros(len(context.ids), int)
    for w in range(features.windows):
        for pos, best in enumerate(features.max_context[w]):
            if best:
                counts[w * DOC_STRIDE + pos - first_ctx] += 1
    assert (counts == 1).all()


def _features(tokenizer, para) -> tuple[QaFeatures, dict]:
    qa = para["qas"][0]
    return tokenize_question(tokenizer, qa["question"], para["context"], qa["id"]), qa


def test_span_postprocessing_returns_substrings_of_the_context(squad, tokenizer):
    rng = np.random.default_rng(0)
    for para in paragraphs(squad):
        features, _ = _features(tokenizer, para)
        shape = (features.windows, MAX_SEQ_LENGTH)
        nbest = best_spans(features, rng.normal(size=shape), rng.normal(size=shape))
        assert 1 <= len(nbest) <= 20
        for candidate in nbest:
            assert candidate["text"] and candidate["text"] in para["context"]
            assert para["context"][candidate["start"]:].startswith(candidate["text"])
        assert abs(sum(c["probability"] for c in nbest) - 1) < 1e-3


def test_span_postprocessing_finds_the_span_the_logits_point_at(squad, tokenizer, long_paragraph):
    for para in (paragraphs(squad)[0], long_paragraph):
        features, qa = _features(tokenizer, para)
        answer = qa["answers"][0]
        a_start, a_end = answer["answer_start"], answer["answer_start"] + len(answer["text"])
        start = np.zeros((features.windows, MAX_SEQ_LENGTH))
        end = np.zeros_like(start)
        for w in range(features.windows):
            for pos, off in enumerate(features.token_offsets[w]):
                if off and off[0] == a_start:
                    start[w, pos] = 10
                if off and off[1] == a_end:
                    end[w, pos] = 10
        assert start.max() == 10 and end.max() == 10
        assert best_spans(features, start, end)[0]["text"] == answer["text"]


def test_spans_longer_than_30_tokens_are_never_chosen(squad, tokenizer):
    features, _ = _features(tokenizer, paragraphs(squad)[0])
    rng = np.random.default_rng(1)
    start = rng.normal(scale=0.1, size=(features.windows, MAX_SEQ_LENGTH))
    end = rng.normal(scale=0.1, size=start.shape)
    ctx = [p for p, off in enumerate(features.token_offsets[0]) if off]
    first, last = ctx[0], ctx[0] + 40
    start[0, first], end[0, last] = 10, 10  # the best-scored pair spans 41 tokens
    too_long = features.context[features.token_offsets[0][first][0]:features.token_offsets[0][last][1]]
    nbest = best_spans(features, start, end)
    assert nbest and all(c["text"] != too_long for c in nbest)
    # a span of <= 30 tokens widened to whole words stays far shorter than 41 tokens' text
    assert all(len(c["text"]) < len(too_long) for c in nbest)


def test_bert_large_has_the_papers_335M_parameters_counted_without_memory():
    large = count_parameters_meta(BERT_SIZES["large"])
    assert abs(large - 335e6) / 335e6 < 0.05
    for config in BERT_SIZES.values():
        assert parameter_count(config) == count_parameters_meta(config)
    tiny = build_bert("tiny")
    assert sum(p.numel() for p in tiny.parameters()) == parameter_count(BERT_SIZES["tiny"])


def test_app_answers_a_batch_with_one_answer_per_question(nlp_data, long_paragraph):
    app = create_app("nlp")
    app.load(nlp_data, "tiny", "torch", 1)
    ids = list(app.sample_ids())[:2] + [long_paragraph["qas"][0]["id"]]
    batch = [app.preprocess(i) for i in ids]
    results = app.postprocess(app.infer(batch))
    assert [r["id"] for r in results] == ids
    for features, result in zip(batch, results):
        assert result["answer"] and result["answer"] in features.context
    assert batch[2].windows >= 3


def test_unknown_backend_and_size_are_one_line_app_errors(nlp_data):
    app = create_app("nlp")
    with pytest.raises(AppError, match="no backend 'tensorflow'") as exc:
        app.load(nlp_data, "tiny", "tensorflow", 1)
    assert "\n" not in str(exc.value)
    with pytest.raises(AppError, match="no model size"):
        app.load(nlp_data, "huge", "torch", 1)


def test_sizes_default_to_the_papers_large():
    assert create_app("nlp").sizes == ("large", "base", "tiny")
