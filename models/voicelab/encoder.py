"""Speaker encoder: Resemblyzer's GE2E network as ONNX, with a numpy front end.

The studio scores every candidate voice with it, hundreds of times a clone, so embedding
must be cheap and need neither torch nor librosa. torch is used once, to export the
pretrained weights that the PyPI package `resemblyzer` ships (studio extra).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hearmylove.durable import fsync
from hearmylove.errors import ModelError
from hearmylove.paths import data_dir

from .judge import resample

RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s windows, averaged into one utterance embedding
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75
VAD_WINDOW = 480  # 30 ms at 16 kHz
VAD_SMOOTHING = 8
VAD_MAX_SILENCE = 6
NORM_DBFS = -30.0
ENCODER_FILE = "ge2e-resemblyzer-0.1.4.onnx"


def encoder_path() -> Path:
    return data_dir() / "studio" / ENCODER_FILE


def _pretrained_weights() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the speaker encoder's weights come from PyPI: pip install --no-deps resemblyzer==0.1.4")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


def export_encoder(out: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Export GE2E (3-layer LSTM + linear + ReLU + L2 norm) to ONNX; atomic, once."""
    try:
        import torch
    except ImportError as exc:
        raise ModelError("exporting the speaker encoder needs torch: pip install -e '.[studio]'") from exc
    if progress:
        progress(f"exporting the GE2E speaker encoder to {out}")

    class GE2E(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(N_MELS, 256, num_layers=3, batch_first=True)
            self.linear = torch.nn.Linear(256, 256)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True)

    model = GE2E()
    state = torch.load(_pretrained_weights(), map_location="cpu", weights_only=False)["model_state"]
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    example = torch.zeros(2, PARTIAL_FRAMES, N_MELS)
    with warnings.catch_warnings():
        # torch warns on every LSTM exported with a batch other than 1 and no initial states as
        # inputs. GE2E starts from zero states, which the ONNX LSTM then makes for any batch: the
        # exported encoder embeds any number of windows at once, checked against Resemblyzer in
        # tests/test_speaker_encoder.py.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=["mels"],
            output_names=["embeds"],
            dynamic_axes={"mels": {0: "batch"}, "embeds": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    fsync(tmp)
    tmp.replace(out)
    fsync(out.parent)
    return out


@functools.cache
def _mel_filters() -> np.ndarray:
    """Slaney-scale triangular filters with area normalisation (what GE2E was trained on)."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        linear = hz / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(hz >= 1000.0, log, linear)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        linear = mel * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
        return np.where(mel >= 15.0, log, linear)

    fft_hz = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(RATE / 2)), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(0, np.minimum(lower, upper))
    filters *= (2.0 / (edges[2 : N_MELS + 2] - edges[:N_MELS]))[:, None]
    return filters.astype(np.float32)


def mel_frames(wav: np.ndarray) -> np.ndarray:
    """Power mel spectrogram [frames, 40] of 16 kHz audio, centred frames, zero padded."""
    padded = np.pad(wav.astype(np.float32), N_FFT // 2)
    n = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power.astype(np.float32) @ _mel_filters().T).astype(np.float32)


def speech_mask(wav: np.ndarray) -> np.ndarray:
    """Per-sample voice activity (webrtcvad, 30 ms windows, smoothed and dilated)."""
    import webrtcvad

    usable = len(wav) - len(wav) % VAD_WINDOW
    pcm = np.clip(np.round(wav[:usable] * 32767), -32768, 32767).astype(np.int16).tobytes()
    vad = webrtcvad.Vad(3)
    flags = np.array(
        [vad.is_speech(pcm[i * 2 : (i + VAD_WINDOW) * 2], RATE) for i in range(0, usable, VAD_WINDOW)], dtype=float
    )
    if not len(flags):
        return np.zeros(len(wav), dtype=bool)
    kernel = np.ones(VAD_SMOOTHING) / VAD_SMOOTHING
    smooth = np.convolve(np.pad(flags, ((VAD_SMOOTHING - 1) // 2, VAD_SMOOTHING // 2)), kernel, mode="valid")
    voiced = np.round(smooth).astype(bool)
    reach = VAD_MAX_SILENCE // 2
    dilated = np.convolve(voiced.astype(int), np.ones(2 * reach + 1, dtype=int), mode="same") > 0
    mask = np.repeat(dilated, VAD_WINDOW)
    return np.pad(mask, (0, len(wav) - len(mask)))


def preprocess(wav: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz, quiet audio raised to -30 dBFS, long silences cut (as the encoder was trained)."""
    wav = resample(np.asarray(wav, dtype=np.float32), rate, RATE)
    rms = float(np.sqrt(np.mean(np.square(wav * 32767.0, dtype=np.float64)))) if len(wav) else 0.0
    if rms > 0:
        gain_db = NORM_DBFS - 20 * np.log10(rms / 32767.0)
        if gain_db > 0:
            wav = wav * np.float32(10 ** (gain_db / 20))
    return wav[speech_mask(wav)]


def partial_windows(n_samples: int) -> list[int]:
    """Start frames of the 1.6 s windows that cover an utterance (the last one if >= 75% full)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round(RATE / PARTIALS_PER_SECOND / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


class SpeakerEncoder:
    """Embeds speech as a 256-d unit vector; cosine similarity compares speakers."""

    def __init__(self, model: Path | None = None, threads: int = 1) -> None:
        path = model or encoder_path()
        if not path.exists():
            export_encoder(path, progress=lambda m: print(f"voicelab: {m}", file=sys.stderr, flush=True))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed_prepared(self, wav: np.ndarray) -> np.ndarray:
        """Embedding of audio already through `preprocess`."""
        starts = partial_windows(len(wav))
        end = (starts[-1] + PARTIAL_FRAMES) * HOP
        mels = mel_frames(np.pad(wav, (0, max(0, end - len(wav)))))
        batch = np.stack([mels[s : s + PARTIAL_FRAMES] for s in starts]).astype(np.float32)
        partials = self._session.run(None, {"mels": batch})[0]
        mean = partials.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def embed(self, wav: np.ndarray, rate: int) -> np.ndarray:
        prepared = preprocess(wav, rate)
        if len(prepared) < RATE // 2:
            raise ModelError("too little speech to embed (under half a second after silence is cut)")
        return self.embed_prepared(prepared)

    def embed_many(self, wavs: list[tuple[np.ndarray, int]]) -> np.ndarray:
        """One speaker's embedding from several utterances: the normalised mean."""
        mean = np.mean([self.embed(w, r) for w, r in wavs], axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
