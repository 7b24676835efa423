"""Recommendation app: Criteo TSV requests, parsing and hashing, DLRM, CTR and top-k."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from deploybench.apps import create_app
from deploybench.apps.base import AppError
from deploybench.apps.rs import TOP_K, parse_criteo
from deploybench.datasets.criteo import (KAGGLE_CARDINALITIES, USER_SPARSE,
                                         generate_criteo_requests, request_lines)
from deploybench.models.dlrm import DLRM_SIZES, build_dlrm


@pytest.fixture(scope="module")
def rs_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rs") / "data"
    create_app("rs").generate_data(out, 4, seed=0)
    return out


def test_requests_are_criteo_lines_of_128_candidates(rs_data):
    manifest = json.loads((rs_data / "manifest.json").read_text())
    assert manifest["app"] == "rs" and manifest["candidates"] == 128
    lines = (rs_data / manifest["files"][0]).read_text().splitlines()
    assert len(lines) == 128
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 40
        assert fields[0] in ("0", "1")
        assert all(v == "" or v.lstrip("-").isdigit() for v in fields[1:14])
        assert all(v == "" or (len(v) == 8 and int(v, 16) >= 0) for v in fields[14:])
    # one user: the user/context categorical columns are the same on every line
    user = {tuple(line.split("\t")[14:14 + USER_SPARSE]) for line in lines}
    assert len(user) == 1


def test_generated_data_has_missing_values_and_skewed_categories():
    rng = np.random.default_rng(0)
    rows = [line.split("\t") for _ in range(20) for line in request_lines(rng, 128)]
    i12 = [r[12] for r in rows]  # I12 is mostly missing in Criteo
    assert 0.6 < i12.count("") / len(i12) < 0.9
    c16 = Counter(r[14 + 15] for r in rows)  # C16, an ad column: 5.5M values, Zipf-like
    ranked = [n for _, n in c16.most_common()]
    assert ranked[0] / len(rows) > 0.03  # uniform over 5.5M values would almost never repeat
    assert ranked[0] > 2 * ranked[2]  # popularity falls with rank
    assert len(ranked) > len(rows) / 4  # and a long tail of rare values


def test_parsing_handles_missing_and_negative_values():
    line = "\t".join(["1", "", "-2", "3"] + [""] * 10 + ["ffffffff"] + [""] * 25)
    table_sizes = [1000] * 26
    labels, dense, sparse = parse_criteo(line + "\n", table_sizes)
    assert labels.tolist() == [1]
    assert dense.dtype == np.float32 and dense.shape == (1, 13)
    assert dense[0, 0] == 0 and dense[0, 1] == 0  # missing -> 0, negative -> 0
    assert dense[0, 2] == pytest.approx(np.log(4))
    assert sparse.shape == (1, 26) and sparse[0, 0] == 0xFFFFFFFF % 1000
    assert (sparse[0, 1:] == 0).all()  # missing categories hash to row 0


def test_parsing_rejects_a_line_with_the_wrong_number_of_fields():
    with pytest.raises(ValueError, match="line 2"):
        parse_criteo("\t".join(["0"] * 40) + "\n" + "0\t1\t2\n", [10] * 26)


@pytest.mark.parametrize("size", list(DLRM_SIZES))
def test_hashing_keeps_every_index_inside_its_table(rs_data, size):
    sizes = DLRM_SIZES[size].table_sizes
    for name in json.loads((rs_data / "manifest.json").read_text())["files"]:
        _, _, sparse = parse_criteo((rs_data / name).read_text(), sizes)
        assert (sparse >= 0).all()
        assert (sparse < np.asarray(sizes)).all()


def test_debug_size_has_mlperf_mlps_and_a_1gb_model():
    cfg = DLRM_SIZES["debug"]
    assert cfg.bottom_mlp == (512, 256, 128) and cfg.embedding_dim == 128
    assert cfg.interaction_dim == 479 and cfg.top_mlp == (1024, 1024, 512, 256, 1)
    assert all(t <= c for t, c in zip(cfg.table_sizes, KAGGLE_CARDINALITIES))
    size_gb = cfg.parameter_count() * 4 / 1e9
    assert 0.7 < size_gb < 1.3  # Table I: DLRM (Debugging) is ~1 GB


def test_tiny_model_parameter_count_matches_its_config():
    cfg = DLRM_SIZES["tiny"]
    assert sum(p.numel() for p in build_dlrm("tiny").parameters()) == cfg.parameter_count()


def test_app_batches_requests_and_returns_top_k_per_request(rs_data):
    app = create_app("rs")
    app.load(rs_data, "tiny", "torch", 1)
    ids = list(app.sample_ids())
    dense, sparse = app.preprocess(ids[0])
    assert dense.shape == (128, 13) and sparse.shape == (128, 26) and sparse.dtype == torch.int64
    inputs = [app.preprocess(s) for s in ids[:3]]
    together = app.postprocess(app.infer(inputs))
    alone = app.postprocess(app.infer(inputs[2:]))
    assert len(together) == 3
    assert [t["candidate"] for t in together[2]["top"]] == [t["candidate"] for t in alone[0]["top"]]
    for result in together:
        ctrs = [t["ctr"] for t in result["top"]]
        assert len(ctrs) == TOP_K and ctrs == sorted(ctrs, reverse=True)
        assert all(0 < p < 1 for p in ctrs)
        assert all(0 <= t["candidate"] < 128 for t in result["top"])
    example = app.example_inputs(2)
    assert example[0].shape == (256, 13) and example[1].shape == (256, 26)
    assert app.model(*example).shape == (256,)


def test_app_says_which_file_is_malformed(rs_data, tmp_path):
    app = create_app("rs")
    app.load(rs_data, "tiny", "torch", 1)
    app.data_dir = tmp_path
    (tmp_path / "bad.tsv").write_text("0\t1\n")
    with pytest.raises(AppError, match=r"bad.tsv cannot be read \(ValueError: line 1.*"
                                       r"deploybench data --app rs --force"):
        app.preprocess("bad.tsv")


def test_app_refuses_unknown_size_and_foreign_data(ic_data):
    app = create_app("rs")
    with pytest.raises(AppError, match="model size"):
        app.load(ic_data, "huge", "torch", 1)
    with pytest.raises(AppError, match="not Criteo"):
        app.load(ic_data, "tiny", "torch", 1)


@pytest.mark.parametrize("scenario,batch_size,inference_only", [
    ("Offline", 4, False), ("SingleStream", 1, True), ("Server", 3, False)])
def test_app_runs_under_loadgen_in_every_scenario(rs_data, tmp_path, scenario, batch_size,
                                                  inference_only):
    from deploybench.worker.driver import LoadgenDriver

    app = create_app("rs")
    app.load(rs_data, "tiny", "torch", 1)
    driver = LoadgenDriver(app, batch_size=batch_size, inference_only=inference_only)
    driver.run(scenario=scenario, requests=8, log_dir=tmp_path / "lg", server_target_qps=100.0)
    log = driver.log
    assert len(log.infer_ns) == 8 and min(log.infer_ns) > 0 and min(log.postprocess_ns) > 0
    if scenario == "Offline":
        assert max(log.batch) < 8  # some requests shared a batch
