"""DNSMOS P.835 (Microsoft), a naturalness proxy: predicted signal, background and overall MOS.

The ONNX network ships in the PyPI package `speechmos`; it takes raw 16 kHz audio in
9.01 s windows, so it is run here directly (no librosa, nothing downloads). The cubic
maps from raw network outputs to MOS are the published DNSMOS calibration.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel

from hearmylove.errors import ModelError

from .judge import resample

RATE = 16_000
WINDOW = int(9.01 * RATE)
_CALIBRATION = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}


class Mos(BaseModel):
    sig: float
    bak: float
    ovrl: float


@functools.cache
def _session() -> ort.InferenceSession:
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("DNSMOS comes from PyPI: pip install speechmos==0.0.1.1")
    model = Path(next(iter(spec.submodule_search_locations))) / "dnsmos_models" / "sig_bak_ovr.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def dnsmos(audio: np.ndarray, rate: int) -> Mos:
    """Mean over 9 s windows a second apart; short clips are looped to fill one window."""
    wav = np.clip(resample(np.asarray(audio, dtype=np.float32), rate, RATE), -1.0, 1.0)
    if not len(wav):
        raise ModelError("DNSMOS needs audio, got an empty clip")
    while len(wav) < WINDOW:
        wav = np.concatenate([wav, wav])
    hops = int(np.floor(len(wav) / RATE) - WINDOW / RATE) + 1
    starts = [i * RATE for i in range(max(hops, 1)) if i * RATE + WINDOW <= len(wav)]
    batch = np.stack([wav[s : s + WINDOW] for s in starts]).astype(np.float32)
    raw = _session().run(None, {"input_1": batch})[0]
    mapped = {name: np.polyval(coeffs, raw[:, i]) for i, (name, coeffs) in enumerate(_CALIBRATION.items())}
    return Mos(**{name: float(np.mean(values)) for name, values in mapped.items()})
