"""LibriSpeech-like speech: real synthesized English, 16 kHz mono 16-bit WAV, ~15 s each.

espeak-ng speaks generated sentences (deterministic by seed; words only from the RNN-T
alphabet: a-z, space, apostrophe) at 22,050 Hz; the audio is resampled to 16 kHz with a
band-limited polyphase filter (``scipy.signal.resample_poly``, 320/441), given a faint
noise floor like a recording, and padded with trailing near-silence to the exact duration.
Voices, speed and pitch vary per file. The manifest holds each file's transcript.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from . import write_manifest

SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050
DEFAULT_DURATION_S = 15.0

VOICES = ("en-us", "en-gb", "en-us+m3", "en-gb+f2", "en-us+f3", "en+m5", "en-gb-x-rp", "en-029")

_SUBJECTS = ("the farmer", "a young girl", "the old captain", "my brother", "the teacher",
             "a quiet stranger", "the children", "our neighbour", "the doctor", "his mother",
             "the king", "a tired soldier", "the baker", "every student", "the little dog")
_VERBS = ("walked to", "looked at", "spoke about", "carried", "painted", "remembered",
          "found", "opened", "watched", "followed", "wrote about", "cleaned", "sold",
          "built", "forgot")
_OBJECTS = ("the river", "a small house", "the broken window", "the long road", "an old letter",
            "the green garden", "the market", "a heavy box", "the church bell", "the winter coat",
            "the village school", "a silver ring", "the morning train", "the kitchen table",
            "the dark forest")
_TAILS = ("before the storm", "in the evening", "without a word", "with great care",
          "after dinner", "near the bridge", "for the first time", "at the end of the day",
          "while it was raining", "because it was late", "in the spring", "and then went home")
_POSSESSIVES = ("the farmer's", "my sister's", "the captain's", "her father's", "the baker's")


class SpeechSynthesisError(RuntimeError):
    """espeak-ng is missing or failed; the message says how to fix it."""


def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechSynthesisError(
            "espeak-ng is not installed: run `bash scripts/install.sh` (or apt-get install espeak-ng)")
    return path


def sentence(rng: np.random.Generator) -> str:
    """One generated English sentence, lower case, words of the RNN-T alphabet only."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    subject = pick(_SUBJECTS)
    obj = pick(_OBJECTS)
    if rng.random() < 0.25:
        obj = pick(_POSSESSIVES) + " " + obj.split(" ", 1)[1]
    words = f"{subject} {pick(_VERBS)} {obj}"
    if rng.random() < 0.7:
        words += " " + pick(_TAILS)
    return words


def synthesize(text: str, voice: str, speed_wpm: int, pitch: int) -> np.ndarray:
    """espeak-ng's speech for ``text`` as int16 samples at its native 22,050 Hz."""
    proc = subprocess.run([espeak_path(), "-v", voice, "-s", str(speed_wpm), "-p", str(pitch),
                           "--stdout", text], capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        raise SpeechSynthesisError(
            f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()[:200]}")
    with wave.open(io.BytesIO(_fix_stream_header(proc.stdout))) as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise SpeechSynthesisError("espeak-ng did not write 16-bit mono audio")
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if rate != ESPEAK_RATE:
        raise SpeechSynthesisError(f"espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE}")
    return samples


def _fix_stream_header(data: bytes) -> bytes:
    """espeak-ng --stdout cannot seek back, so its RIFF/data sizes are placeholders (0 or
    0x7fffffff); set them to the real sizes so ``wave`` reads exactly the samples."""
    pos = data.find(b"data", 12)
    if data[:4] != b"RIFF" or pos < 0:
        raise SpeechSynthesisError("espeak-ng did not write a WAV stream")
    size = len(data) - pos - 8
    size -= size % 2
    return (data[:4] + (pos + size).to_bytes(4, "little") + data[8:pos + 4]
            + size.to_bytes(4, "little") + data[pos + 8:pos + 8 + size])


def resample_to_16k(samples: np.ndarray) -> np.ndarray:
    """22,050 Hz int16 -> 16,000 Hz float (band-limited polyphase: up 320, down 441)."""
    from scipy.signal import resample_poly

    return resample_poly(samples.astype(np.float64), 320, 441)


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


def read_wav(path: Path, data: bytes | None = None) -> tuple[np.ndarray, int]:
    """(float32 samples in [-1, 1), sample rate) of a 16-bit mono WAV file (``data``: its
    bytes, already read; ``path`` then only names it)."""
    with wave.open(io.BytesIO(data) if data is not None else str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: not a 16-bit mono WAV file")
        rate = wav.getframerate()
        frames = wav.getnframes()
        data = wav.readframes(frames)
    if len(data) != 2 * frames:  # ``wave`` reads a cut-off file without a word
        raise ValueError(f"{path}: truncated WAV, {len(data) // 2} of {frames} samples")
    pcm = np.frombuffer(data, dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate


def utterance(rng: np.random.Generator, duration_s: float) -> tuple[np.ndarray, str]:
    """Speech of at most ``duration_s`` (16 kHz float samples, int16 scale) and its transcript.

    Sentences are added while they fit: the words of a draft are spoken, and words are
    dropped from the end (by the measured speaking rate) until the speech fits.
    """
    voice = VOICES[int(rng.integers(len(VOICES)))]
    speed = int(rng.integers(150, 190))
    pitch = int(rng.integers(30, 70))
    target = int(duration_s * SAMPLE_RATE)
    sentences: list[list[str]] = []
    words_wanted = max(2, int(duration_s * speed / 60 * 1.5))
    while sum(len(s) for s in sentences) < words_wanted:
        sentences.append(sentence(rng).split())
    words = [w for s in sentences for w in s]
    ends = set(np.cumsum([len(s) for s in sentences]).tolist())  # sentence boundaries

    def text_of(n: int) -> str:
        out = []
        for i, w in enumerate(words[:n], start=1):
            out.append(w + ("." if i in ends or i == n else ""))
        return " ".join(out)

    # Words kept: estimate from the measured speaking rate, then bisect between the longest
    # draft that fits and the shortest that does not (a handful of espeak-ng calls).
    fits: tuple[int, np.ndarray] | None = None
    too_long = len(words) + 1
    n = len(words)
    for _ in range(12):
        audio = resample_to_16k(synthesize(text_of(n), voice, speed, pitch))
        if len(audio) <= target:
            fits = (n, audio)
        else:
            too_long = n
        low = fits[0] if fits else 0
        if too_long - low <= 1:
            break
        seconds_per_word = len(audio) / SAMPLE_RATE / n
        guess = n + int((target - len(audio)) / SAMPLE_RATE / seconds_per_word)
        n = min(max(guess, low + 1), too_long - 1)
        if n == (fits[0] if fits else -1):
            n = (low + too_long) // 2
    if fits is None:  # not even one word fits: keep the start of the last draft
        fits = (n, audio[:target])
    n, audio = fits
    transcript = " ".join(words[:n])
    return audio, transcript


def generate_speech(out_dir: Path, count: int, seed: int,
                    duration_s: float = DEFAULT_DURATION_S) -> None:
    """``count`` WAV files of exactly ``duration_s`` seconds and a manifest with transcripts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    target = int(round(duration_s * SAMPLE_RATE))
    files: list[str] = []
    transcripts: dict[str, str] = {}
    for i in range(count):
        lead = int(rng.integers(0, SAMPLE_RATE // 10))  # up to 0.1 s before the first word
        speech, text = utterance(rng, (target - lead) / SAMPLE_RATE)
        audio = np.zeros(target)
        audio[lead:lead + len(speech)] = speech
        audio += rng.normal(0.0, 3.0, size=target)  # faint noise floor (~-80 dBFS)
        name = f"utt_{i:05d}.wav"
        write_wav(out_dir / name, audio)
        files.append(name)
        transcripts[name] = text
    write_manifest(out_dir, "sr", count, seed, files, sample_rate=SAMPLE_RATE,
                   duration_s=duration_s, transcripts=transcripts)
