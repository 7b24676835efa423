"""The onnxruntime backend: export, cache, thread budget, and outputs equal to torch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deploybench.apps import backends, create_app
from deploybench.apps.backends import OnnxModel, export_key, onnx_model, prepare_model
from deploybench.apps.base import AppError
from deploybench.models.bert import BERT_SIZES, build_bert
from deploybench.models.resnet import RESNET_SIZES, build_resnet

BERT_NAMES = dict(input_names=["input_ids", "token_type_ids", "attention_mask"],
                  output_names=["start_logits", "end_logits"],
                  dynamic_axes={n: {1: "sequence"} for n in
                                ("input_ids", "token_type_ids", "attention_mask",
                                 "start_logits", "end_logits")})


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def test_ic_tiny_on_onnxruntime_gives_the_same_logits_as_torch(cache):
    model = build_resnet("tiny")
    ort_model = onnx_model(model, (torch.zeros(1, 3, 224, 224),), threads=1,
                           cache_key=("ic", "tiny", RESNET_SIZES["tiny"], 0), cache_dir=cache)
    x = torch.randn(3, 3, 224, 224)  # another batch size than the export's: dynamic axis
    with torch.inference_mode():
        expected = model(x)
    got = ort_model(x)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape == (3, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_nlp_tiny_on_onnxruntime_gives_the_same_logits_as_torch(cache):
    model = build_bert("tiny")
    example = (torch.ones(1, 64, dtype=torch.int64), torch.zeros(1, 64, dtype=torch.int64),
               torch.ones(1, 64, dtype=torch.int64))
    ort_model = onnx_model(model, example, threads=1, cache_dir=cache,
                           cache_key=("nlp", "tiny", BERT_SIZES["tiny"], 0), **BERT_NAMES)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 4000, (2, 384), generator=g)
    types = torch.zeros_like(ids)
    types[:, 20:] = 1
    mask = torch.ones_like(ids)
    mask[1, 300:] = 0
    with torch.inference_mode():
        expected = model(ids, types, mask)
    got = ort_model(ids, types, mask)
    assert isinstance(got, tuple) and len(got) == 2
    for g_out, e_out in zip(got, expected):
        assert g_out.shape == (2, 384)
        torch.testing.assert_close(g_out, e_out, rtol=1e-4, atol=1e-4)


def test_export_is_cached_on_disk_and_reused(cache, monkeypatch):
    model = build_resnet("tiny")
    key = ("ic", "tiny", RESNET_SIZES["tiny"], 0)
    example = (torch.zeros(1, 3, 224, 224),)
    first = onnx_model(model, example, threads=1, cache_key=key, cache_dir=cache)
    assert first.path.parent == cache and first.path.name.startswith("ic-tiny-")

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although cached")

    monkeypatch.setattr(backends, "export_onnx", no_export)
    again = onnx_model(model, example, threads=1, cache_key=key, cache_dir=cache)
    assert again.path == first.path


def test_cache_key_changes_with_config_seed_and_input_shape():
    model = build_resnet("tiny")
    x = (torch.zeros(1, 3, 224, 224),)
    base = export_key(model, x, ("ic", "tiny", RESNET_SIZES["tiny"], 0))
    assert base == export_key(model, x, ("ic", "tiny", RESNET_SIZES["tiny"], 0))
    assert base != export_key(model, x, ("ic", "tiny", RESNET_SIZES["tiny"], 1))
    assert base != export_key(model, x, ("ic", "tiny", RESNET_SIZES["small"], 0))
    assert base != export_key(model, (torch.zeros(1, 3, 112, 112),), ("ic", "tiny", RESNET_SIZES["tiny"], 0))


def test_session_gets_the_thread_budget_and_one_inter_op_thread(cache):
    model = build_resnet("tiny")
    ort_model = onnx_model(model, (torch.zeros(1, 3, 224, 224),), threads=2,
                           cache_key=("ic", "tiny", RESNET_SIZES["tiny"], 0), cache_dir=cache)
    options = ort_model.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_unwritable_cache_exports_to_a_temporary_folder_and_cleans_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    model = build_resnet("tiny")
    ort_model = onnx_model(model, (torch.zeros(1, 3, 224, 224),), threads=1,
                           cache_key=("ic", "tiny", RESNET_SIZES["tiny"], 0),
                           cache_dir=blocker / "onnx")
    assert not ort_model.path.exists()  # the scratch folder is gone; the session works
    assert ort_model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_prepare_model_keeps_the_module_on_torch_and_refuses_unknown_backends(cache):
    model = build_resnet("tiny")
    example = (torch.zeros(1, 3, 224, 224),)
    assert prepare_model(model, "torch", 1, example, cache_key=("ic",)) is model
    assert isinstance(prepare_model(model, "onnxruntime", 1, example, cache_dir=cache,
                                    cache_key=("ic", "tiny", RESNET_SIZES["tiny"], 0)), OnnxModel)
    with pytest.raises(AppError, match="unknown backend 'tvm'"):
        prepare_model(model, "tvm", 1, example, cache_key=("ic",))


def test_ic_app_gives_the_same_top5_on_both_backends(ic_data, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path))
    results = {}
    for backend in ("torch", "onnxruntime"):
        app = create_app("ic")
        app.load(ic_data, "tiny", backend, 1)
        batch = [app.preprocess(s) for s in list(app.sample_ids())[:2]]
        results[backend] = app.postprocess(app.infer(batch))
    assert [[c["index"] for c in r] for r in results["torch"]] == \
        [[c["index"] for c in r] for r in results["onnxruntime"]]
    assert list((tmp_path / "onnx").glob("ic-tiny-*.onnx"))  # cached under DEPLOYBENCH_HOME


def test_ic_app_refuses_an_unknown_backend_in_one_line(ic_data):
    with pytest.raises(AppError, match="app ic has no backend 'tensorrt'") as exc:
        create_app("ic").load(ic_data, "tiny", "tensorrt", 1)
    assert "\n" not in str(exc.value)


def _app_on(name, data_dir, backend, size="tiny"):
    app = create_app(name)
    app.load(data_dir, size, backend, 1)
    return app


def test_rs_app_gives_the_same_ctrs_on_both_backends(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))
    rs = create_app("rs")
    rs.generate_data(tmp_path / "rs", 3, 0)
    torch_app, ort_app = (_app_on("rs", tmp_path / "rs", b) for b in ("torch", "onnxruntime"))
    batch = [torch_app.preprocess(s) for s in torch_app.sample_ids()]  # 3 requests: a new batch size
    (expected, counts), (got, got_counts) = torch_app.infer(batch), ort_app.infer(batch)
    assert counts == got_counts
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert torch_app.postprocess((expected, counts)) == ort_app.postprocess((got, got_counts))


def test_sr_app_decodes_the_same_text_on_both_backends(tmp_path, monkeypatch):
    """Encoder, prediction step and joint each run on onnxruntime; greedy decoding calls
    them as it calls the torch modules, so the decoded symbols must be identical -- for
    utterances of odd and even frame counts (the encoder's time reduction pads)."""
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path / "home"))
    sr = create_app("sr")
    sr.duration_s = 2
    sr.generate_data(tmp_path / "sr", 2, 0)
    torch_app, ort_app = (_app_on("sr", tmp_path / "sr", b) for b in ("torch", "onnxruntime"))
    features = [torch_app.preprocess(s) for s in torch_app.sample_ids()]
    for batch in (features, [features[0][:-1]], [features[1][:-2], features[0]]):
        expected = torch_app.infer(batch)
        assert ort_app.infer(batch) == expected
        assert any(expected)  # something was decoded, so the comparison means something
