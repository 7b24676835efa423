"""Speech recognition (SR), after MLPerf's RNN-T on LibriSpeech dev-clean.

Data: ~15 s English utterances spoken by espeak-ng, 16 kHz mono 16-bit WAV (see
datasets/speech.py). preprocess: read the WAV from disk, log-mel features computed with
torch (pre-emphasis 0.97, 20 ms Hann window, 10 ms hop, 512-point FFT, 80 Slaney mel bins
0-8 kHz, log with a 2^-24 floor, per-feature mean/variance normalisation), then MLPerf's
frame splicing (3 consecutive frames stacked, every third kept: 240 features per 30 ms).
infer: the RNN-T encoder on the padded batch, then greedy decoding (part of inference, as in
MLPerf). postprocess: symbol ids to text.

The app runs on the CPU only, as MLPerf's RNN-T did in the paper (Table I: "Cloud: CPU").
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .backends import check_backend, prepare_model
from .base import AppError, check_size, read_app_manifest, read_input, reading_input
from .device import ModelDevice

SAMPLE_RATE = 16_000
N_MELS = 80
WINDOW_S = 0.020
HOP_S = 0.010
N_FFT = 512
PREEMPHASIS = 0.97
LOG_FLOOR = 2.0 ** -24
FRAMES_STACKED = 3


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE,
                   fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale, each
    normalised to unit area (Slaney), so loudness does not depend on a band's width."""
    fmax = rate / 2 if fmax is None else fmax
    fft_hz = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


class LogMel:
    """Log-mel features with torch; the window and filterbank are built once."""

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        import torch

        self.torch = torch
        self.win_length = round(WINDOW_S * rate)  # 320 samples
        self.hop_length = round(HOP_S * rate)  # 160 samples
        self.window = torch.hann_window(self.win_length, periodic=False)
        self.filterbank = torch.from_numpy(mel_filterbank(rate=rate))

    def __call__(self, samples: Any) -> Any:
        """float samples (N,) -> normalised log-mel features (80, 1 + N // hop)."""
        torch = self.torch
        x = torch.cat([samples[:1], samples[1:] - PREEMPHASIS * samples[:-1]])
        spec = torch.stft(x, n_fft=N_FFT, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()
        feats = torch.log(self.filterbank @ power + LOG_FLOOR)
        mean = feats.mean(dim=1, keepdim=True)
        std = feats.std(dim=1, keepdim=True)
        return (feats - mean) / (std + 1e-5)


def splice_frames(feats: Any, stacked: int = FRAMES_STACKED) -> Any:
    """(80, T) -> (ceil(T / stacked), 80 * stacked): each kept frame with its next
    ``stacked - 1`` frames (zeros past the end), every ``stacked``-th frame kept."""
    import torch

    n_feat, t = feats.shape
    shifted = [feats]
    for k in range(1, stacked):
        shifted.append(torch.cat([feats[:, k:], feats.new_zeros(n_feat, k)], dim=1))
    return torch.cat(shifted, dim=0)[:, ::stacked].t().contiguous()


class SpeechRecognition:
    name: ClassVar[str] = "sr"
    sizes: ClassVar[tuple[str, ...]] = ("full", "small", "tiny")
    backends: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime")
    #: utterance length the data generator writes (tests use shorter ones)
    duration_s: float = 15.0

    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self.files: list[str] = []
        self.transcripts: dict[str, str] = {}
        self.model: Any = None
        self.features: LogMel | None = None
        self.device = "cpu"
        #: SR runs on the CPU only; its encoder still goes through the one infer helper
        self.model_device = ModelDevice()

    def generate_data(self, out_dir: Path, count: int, seed: int) -> None:
        from ..datasets.speech import SpeechSynthesisError, generate_speech

        try:
            generate_speech(Path(out_dir), count, seed, duration_s=self.duration_s)
        except SpeechSynthesisError as exc:
            raise AppError(str(exc)) from None

    def load(self, data_dir: Path, size: str, backend: str, threads: int,
             device: str = "cpu") -> None:
        import torch

        from ..models.rnnt import build_rnnt

        check_size(self, size)
        check_backend(self.name, backend, self.backends)
        if device != "cpu":
            raise AppError("app sr runs on the CPU only (like MLPerf's RNN-T in the paper): use a CPU scenario")
        self.data_dir = Path(data_dir)
        manifest = read_app_manifest(self, self.data_dir)
        self.files = list(manifest["files"])
        self.transcripts = dict(manifest.get("transcripts", {}))
        self.duration_s = float(manifest.get("duration_s", self.duration_s))
        self.model = build_rnnt(size)
        self.features = LogMel()
        self._prepare_backend(backend, threads, size)
        self._torch = torch

    def sample_ids(self) -> Sequence[str]:
        return self.files

    def preprocess(self, sample_id: str) -> Any:
        from ..datasets.speech import read_wav

        assert self.data_dir is not None and self.features is not None
        path = self.data_dir / sample_id
        with reading_input(self, self.data_dir, path):
            samples, rate = read_wav(path, read_input(path))
        if rate != SAMPLE_RATE:
            raise AppError(f"{sample_id}: sample rate {rate} Hz, the model needs {SAMPLE_RATE}")
        feats = self.features(self._torch.from_numpy(samples))
        return splice_frames(feats)

    def example_inputs(self, batch_size: int = 1) -> tuple[Any, Any]:
        """(features (B, T, 240), lengths (B,)) for the encoder (``self.model``'s forward) on
        utterances of the data set's length."""
        import torch

        frames = math.ceil((1 + int(self.duration_s * SAMPLE_RATE) // round(HOP_S * SAMPLE_RATE))
                           / FRAMES_STACKED)
        generator = torch.Generator().manual_seed(0)
        features = torch.randn(batch_size, frames, N_MELS * FRAMES_STACKED, generator=generator)
        return features, torch.full((batch_size,), frames, dtype=torch.long)

    def _prepare_backend(self, backend: str, threads: int, size: str) -> None:
        """The three networks as callables on ``backend``. On onnxruntime each is exported
        on its own (encoder with a dynamic number of frames; one prediction step; the joint)
        and greedy decoding stays in Python, calling them step by step as it does on torch."""
        import torch

        model = self.model
        if backend == "torch":
            self.encoder, self.predict, self.joint = model, model.prediction, model.joint
            return
        config = model.config
        key = (self.name, size, config, 0)
        self.encoder = prepare_model(
            model, backend, threads, self.example_inputs(), cache_key=(*key, "encoder"),
            input_names=["features", "lengths"], output_names=["encoded", "encoded_lengths"],
            dynamic_axes={"features": {1: "frames"}, "encoded": {1: "encoded_frames"}})
        h, c = model.initial_state()
        tokens = torch.zeros((1, 1), dtype=torch.long)
        self.predict = prepare_model(
            model.prediction, backend, threads, (tokens, h, c), cache_key=(*key, "prediction"),
            input_names=["tokens", "h", "c"], output_names=["g", "h_out", "c_out"],
            # the LSTM state is (layers, batch, hidden): batch is axis 1 there, not 0
            dynamic_axes={"h": {0: "layers", 1: "batch"}, "c": {0: "layers", 1: "batch"},
                          "h_out": {0: "layers", 1: "batch"}, "c_out": {0: "layers", 1: "batch"}})
        f = torch.zeros((1, config.encoder_hidden))
        g = torch.zeros((1, config.pred_hidden))
        self.joint = prepare_model(model.joint, backend, threads, (f, g), cache_key=(*key, "joint"),
                                   input_names=["f", "g"], output_names=["logits"])

    def infer(self, batch: Sequence[Any]) -> Any:
        from ..models.rnnt import greedy_decode

        torch = self._torch
        model = self.model
        with torch.inference_mode():
            lengths = torch.tensor([f.shape[0] for f in batch], dtype=torch.long)
            features = torch.nn.utils.rnn.pad_sequence(list(batch), batch_first=True)
            encoded, enc_lengths = self.model_device.run(self.encoder, features, lengths)
            config = model.config
            return greedy_decode(encoded, enc_lengths, self.predict, self.joint,
                                 model.initial_state(),
                                 max_symbols_per_step=config.max_symbols_per_step,
                                 max_symbols_per_frame=config.max_symbols_per_frame)

    def postprocess(self, output: Any) -> Sequence[Any]:
        from ..models.rnnt import ids_to_text

        return [ids_to_text(ids) for ids in output]
