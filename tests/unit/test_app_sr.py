"""Speech recognition app: real WAV data, log-mel features, the RNN-T and its decoder."""
from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from deploybench.apps import create_app
from deploybench.apps.base import AppError
from deploybench.apps.sr import LogMel, mel_filterbank, splice_frames
from deploybench.models.rnnt import (BLANK, LABELS, RNNT_SIZES, build_rnnt, greedy_decode,
                                     ids_to_text)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (scripts/install.sh installs it)")


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/install.sh installs it)")
    app = create_app("sr")
    app.duration_s = 3.0  # short utterances keep the tests fast
    out = tmp_path_factory.mktemp("sr") / "data"
    app.generate_data(out, 3, seed=0)
    return out


@needs_espeak
def test_generated_wav_is_16k_mono_16bit_of_the_requested_duration(sr_data):
    manifest = json.loads((sr_data / "manifest.json").read_text())
    assert manifest["app"] == "sr" and len(manifest["files"]) == 3
    for name in manifest["files"]:
        with wave.open(str(sr_data / name)) as wav:
            assert wav.getframerate() == 16_000
            assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
            assert wav.getnframes() == 3 * 16_000
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
        rms = np.sqrt(np.mean(pcm ** 2))
        assert rms > 300, "expected speech, got near-silence"


@needs_espeak
def test_transcripts_use_only_the_model_alphabet(sr_data):
    manifest = json.loads((sr_data / "manifest.json").read_text())
    for name in manifest["files"]:
        text = manifest["transcripts"][name]
        assert len(text.split()) >= 3
        assert set(text) <= set(LABELS)


@needs_espeak
def test_generation_is_deterministic_by_seed(tmp_path):
    from deploybench.datasets.speech import generate_speech

    generate_speech(tmp_path / "a", 1, seed=5, duration_s=1.5)
    generate_speech(tmp_path / "b", 1, seed=5, duration_s=1.5)
    generate_speech(tmp_path / "c", 1, seed=6, duration_s=1.5)
    a = (tmp_path / "a" / "utt_00000.wav").read_bytes()
    assert a == (tmp_path / "b" / "utt_00000.wav").read_bytes()
    assert a != (tmp_path / "c" / "utt_00000.wav").read_bytes()


def test_resampler_keeps_a_tone_at_its_frequency():
    from deploybench.datasets.speech import ESPEAK_RATE, resample_to_16k

    t = np.arange(ESPEAK_RATE) / ESPEAK_RATE
    tone = 10_000 * np.sin(2 * np.pi * 1000 * t)  # 1 kHz
    alias = 10_000 * np.sin(2 * np.pi * 10_000 * t)  # above 16 kHz's Nyquist: must vanish
    out = resample_to_16k(tone + alias)
    assert abs(len(out) - 16_000) <= 1
    spectrum = np.abs(np.fft.rfft(out[:16_000]))
    assert int(np.argmax(spectrum)) == 1000
    assert spectrum[6000] < 0.01 * spectrum[1000]  # 10 kHz would fold to 6 kHz if not filtered


def test_log_mel_has_80_bins_and_one_frame_per_10ms():
    samples = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32))
    feats = LogMel()(samples)
    assert feats.shape == (80, 101)  # 1 s / 10 ms hop + 1 (centred frames)
    assert torch.allclose(feats.mean(dim=1), torch.zeros(80), atol=1e-4)  # per-feature normalised
    assert torch.allclose(feats.std(dim=1), torch.ones(80), atol=1e-3)
    spliced = splice_frames(feats)
    assert spliced.shape == (34, 240)  # 3 frames stacked, every third kept
    assert torch.equal(spliced[1, :80], feats[:, 3]) and torch.equal(spliced[1, 80:160], feats[:, 4])


def test_log_mel_puts_a_tone_in_the_mel_band_of_its_frequency():
    fb = mel_filterbank()
    assert fb.shape == (80, 257) and (fb.sum(axis=1) > 0).all()
    t = np.arange(16_000) / 16_000
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32))
    mel = LogMel()
    power = torch.stft(tone, 512, 160, 320, window=mel.window, return_complex=True).abs() ** 2
    band = int((mel.filterbank @ power).mean(dim=1).argmax())
    fft_bin = round(2000 / 8000 * 256)
    assert fb[band, fft_bin] == fb[:, fft_bin].max()


def test_full_rnnt_has_the_mlperf_parameter_count():
    model = build_rnnt("full")
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - 45.3e6) / 45.3e6 < 0.10
    assert model.joint.out.out_features == 29 == BLANK + 1
    assert model.encoder.pre_rnn.input_size == 240
    assert model.encoder.post_rnn.input_size == 2 * 1024  # time reduction stacks 2 frames


def test_sizes_shrink_from_full_to_tiny():
    counts = [sum(p.numel() for p in build_rnnt(s).parameters()) for s in RNNT_SIZES]
    assert counts == sorted(counts, reverse=True)


def _decode(model, features, lengths):
    with torch.inference_mode():
        encoded, enc_lengths = model(features, lengths)
        c = model.config
        return greedy_decode(encoded, enc_lengths, model.prediction, model.joint,
                             model.initial_state(), max_symbols_per_step=c.max_symbols_per_step,
                             max_symbols_per_frame=c.max_symbols_per_frame), enc_lengths


def test_tiny_decode_is_deterministic_and_bounded():
    features = torch.randn(1, 501, 240, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([501])
    first, enc_lengths = _decode(build_rnnt("tiny"), features, lengths)
    again, _ = _decode(build_rnnt("tiny"), features, lengths)
    assert first == again
    assert int(enc_lengths[0]) == 251  # 501 frames, time reduction 2
    cfg = RNNT_SIZES["tiny"]
    assert 0 < len(first[0]) <= cfg.max_symbols_per_frame * 251
    assert all(0 <= i < BLANK for i in first[0])
    assert len(ids_to_text(first[0])) == len(first[0])


def test_padding_in_a_batch_does_not_change_an_utterance_result():
    model = build_rnnt("tiny")
    g = torch.Generator().manual_seed(2)
    long, short = torch.randn(90, 240, generator=g), torch.randn(40, 240, generator=g)
    batch = torch.nn.utils.rnn.pad_sequence([long, short], batch_first=True)
    together, _ = _decode(model, batch, torch.tensor([90, 40]))
    alone, _ = _decode(model, short[None], torch.tensor([40]))
    assert together[1] == alone[0]


@needs_espeak
def test_app_runs_preprocess_infer_postprocess_on_a_batch(sr_data):
    app = create_app("sr")
    app.load(sr_data, "tiny", "torch", 1)
    ids = list(app.sample_ids())
    inputs = [app.preprocess(s) for s in ids[:2]]
    assert inputs[0].shape == (101, 240)  # 3 s -> 301 frames -> 101 spliced frames
    texts = app.postprocess(app.infer(inputs))
    assert len(texts) == 2 and all(isinstance(t, str) and set(t) <= set(LABELS) for t in texts)
    features, lengths = app.example_inputs(2)
    assert features.shape == (2, 101, 240) and lengths.tolist() == [101, 101]


def test_app_refuses_gpu_other_backends_and_foreign_data(tmp_path, ic_data):
    app = create_app("sr")
    with pytest.raises(AppError, match="CPU only"):
        app.load(ic_data, "tiny", "torch", 1, device="cuda")
    with pytest.raises(AppError, match="backend"):
        app.load(ic_data, "tiny", "onnx-nope", 1)
    with pytest.raises(AppError, match="not speech"):
        app.load(ic_data, "tiny", "torch", 1)


@needs_espeak
@pytest.mark.parametrize("scenario,batch_size,inference_only", [
    ("Offline", 2, False), ("SingleStream", 1, True), ("Server", 2, False)])
def test_app_runs_under_loadgen_in_every_scenario(sr_data, tmp_path, scenario, batch_size,
                                                  inference_only):
    from deploybench.worker.driver import LoadgenDriver

    app = create_app("sr")
    app.load(sr_data, "tiny", "torch", 1)
    driver = LoadgenDriver(app, batch_size=batch_size, inference_only=inference_only)
    result = driver.run(scenario=scenario, requests=6, log_dir=tmp_path / "lg",
                        server_target_qps=50.0)
    assert result.get("validity") or result.get("samples_per_second")
    log = driver.log
    assert len(log.infer_ns) == 6 and min(log.infer_ns) > 0
    if inference_only:
        assert max(log.preprocess_ns) < 1_000_000  # inputs came from the untimed cache
    else:
        assert min(log.preprocess_ns) > 0


def test_missing_espeak_is_a_one_line_app_error(tmp_path, monkeypatch):
    import deploybench.datasets.speech as speech

    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(AppError, match="espeak-ng is not installed: run `bash scripts/install.sh`"):
        create_app("sr").generate_data(tmp_path / "out", 1, 0)
