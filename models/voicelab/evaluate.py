"""How close a cloned voice is to the real parent, on utterances cloning never heard.

Similarity alone flatters (the optimiser was tuned against the same encoder), so it is
reported next to the levels that give it meaning: the same speaker's own recordings
compared with each other, and strangers. Intelligibility, pitch and naturalness guard
against a voice that matches the encoder but not a listener.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from pydantic import BaseModel

from hearmylove.engine.engine import Engine
from hearmylove.engine.voices import Voice

from .clone import SAMPLE_RATE, Step
from .dnsmos import dnsmos
from .encoder import SpeakerEncoder, similarity
from .judge import cer_zh, transcribe, wer
from .pitch import f0_track, pitch_stats

# GE2E between different speakers' recordings (FACTS: 0.51-0.56; shared/evalset pairs median 0.59).
STRANGER_LEVEL = 0.56


@dataclass
class Reference:
    audio: np.ndarray = field(repr=False)
    rate: int
    text: str


class Scores(BaseModel):
    similarity: float
    same_level: float
    stranger_level: float
    normalized: float
    error_rate: float
    """WER for English, CER for Mandarin."""
    f0_real_hz: float | None
    f0_clone_hz: float | None
    f0_error_semitones: float | None
    dnsmos_clone: float
    dnsmos_real: float


def same_speaker_level(refs: list[Reference], encoder: SpeakerEncoder) -> float:
    """The real speaker against themself: one half of the references against the other."""
    if len(refs) < 2:
        return 1.0
    half = len(refs) // 2
    a = encoder.embed_many([(r.audio, r.rate) for r in refs[:half]])
    b = encoder.embed_many([(r.audio, r.rate) for r in refs[half:]])
    return similarity(a, b)


def render(engine: Engine, voice: Voice, refs: list[Reference], lang: str) -> list[np.ndarray]:
    return [engine.synthesize(r.text, voice, lang) for r in refs]


def score(
    clones: list[np.ndarray],
    refs: list[Reference],
    lang: str,
    encoder: SpeakerEncoder,
    same_level: float | None = None,
    stranger_level: float = STRANGER_LEVEL,
) -> Scores:
    real_embed = encoder.embed_many([(r.audio, r.rate) for r in refs])
    clone_embed = encoder.embed_many([(c, SAMPLE_RATE) for c in clones])
    sim = similarity(real_embed, clone_embed)
    same = same_level if same_level is not None else same_speaker_level(refs, encoder)
    errors = []
    for clone, ref in zip(clones, refs, strict=True):
        heard = transcribe(clone, SAMPLE_RATE, lang)
        errors.append(wer(ref.text, heard) if lang == "en" else cer_zh(ref.text, heard))
    real_pitch = pitch_stats([(r.audio, r.rate) for r in refs])
    clone_pitch = pitch_stats([(c, SAMPLE_RATE) for c in clones])
    f0_error = None
    if real_pitch and clone_pitch:
        f0_error = float(12 * np.log2(clone_pitch.median_hz / real_pitch.median_hz))
    return Scores(
        similarity=sim,
        same_level=same,
        stranger_level=stranger_level,
        normalized=(sim - stranger_level) / max(same - stranger_level, 1e-6),
        error_rate=float(np.mean(errors)),
        f0_real_hz=real_pitch.median_hz if real_pitch else None,
        f0_clone_hz=clone_pitch.median_hz if clone_pitch else None,
        f0_error_semitones=f0_error,
        dnsmos_clone=float(np.mean([dnsmos(c, SAMPLE_RATE).ovrl for c in clones])),
        dnsmos_real=float(np.mean([dnsmos(r.audio, r.rate).ovrl for r in refs])),
    )


# -- the HTML report ---------------------------------------------------------------


def _png(fig: object) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _wav(audio: np.ndarray, rate: int) -> str:
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def _spectrogram(ax: object, audio: np.ndarray, rate: int, title: str) -> None:
    n_fft, hop = 1024, 256
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * np.hanning(n_fft)
    power = 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10)
    keep = int(8000 / (rate / n_fft))  # up to 8 kHz, the band both recordings share
    ax.imshow(  # type: ignore[attr-defined]
        power[:, :keep].T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=power.max() - 80,
        extent=(0, len(audio) / rate, 0, keep * rate / n_fft / 1000),
    )
    ax.set_title(title)  # type: ignore[attr-defined]
    ax.set_xlabel("seconds")  # type: ignore[attr-defined]
    ax.set_ylabel("kHz")  # type: ignore[attr-defined]


def _figures(clones: list[np.ndarray], refs: list[Reference], history: list[Step] | None) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    if history:
        fig, ax = plt.subplots(figsize=(7, 3))
        sims = np.array([s.similarity for s in history])
        ax.plot(np.arange(1, len(sims) + 1), sims, ".", alpha=0.4, label="candidate")
        ax.plot(np.arange(1, len(sims) + 1), np.maximum.accumulate(sims), "-", label="best so far")
        ax.set_xlabel("evaluation")
        ax.set_ylabel("GE2E similarity to the parent")
        ax.legend()
        figures["Similarity over the optimisation (to the enrollment recordings)"] = _png(fig)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3))
    real = np.concatenate([f0_track(r.audio, r.rate) for r in refs])
    clone = np.concatenate([f0_track(c, SAMPLE_RATE) for c in clones])
    bins = np.geomspace(60, 500, 40).tolist()
    ax.hist(real[real > 0], bins=bins, alpha=0.6, label="real parent", density=True)
    ax.hist(clone[clone > 0], bins=bins, alpha=0.6, label="clone", density=True)
    ax.set_xscale("log")
    ax.set_xlabel("F0 (Hz)")
    ax.legend()
    figures["Pitch: F0 of voiced frames, real vs clone"] = _png(fig)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    _spectrogram(axes[0], refs[0].audio, refs[0].rate, "real parent")
    _spectrogram(axes[1], clones[0], SAMPLE_RATE, "clone, same sentence")
    figures["Spectrograms of the first held-out sentence"] = _png(fig)
    plt.close(fig)
    return figures


def write_report(
    path: Path,
    title: str,
    scores: Scores,
    clones: list[np.ndarray],
    refs: list[Reference],
    history: list[Step] | None = None,
    notes: dict[str, str] | None = None,
) -> Path:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.3f}</td></tr>" if isinstance(v, float) else ""
        for k, v in scores.model_dump().items()
    )
    extra = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in (notes or {}).items())
    plots = "".join(
        f"<h2>{html.escape(name)}</h2><img src='{src}' alt='{html.escape(name)}'>"
        for name, src in _figures(clones, refs, history).items()
    )
    players = "".join(
        f"<tr><td>{html.escape(r.text)}</td><td><audio controls src='{_wav(r.audio, r.rate)}'></audio></td>"
        f"<td><audio controls src='{_wav(c, SAMPLE_RATE)}'></audio></td></tr>"
        for r, c in zip(refs, clones, strict=True)
    )
    page = f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}th{{text-align:left;padding-right:2em}}
img{{max-width:100%}}td{{padding:.2em .6em}}</style>
<h1>{html.escape(title)}</h1>
<p>Held-out sentences the clone never heard. Normalized similarity is 0 at a stranger's level and 1 at the
real speaker's own level (one half of the recordings against the other).</p>
<table>{rows}{extra}</table>{plots}
<h2>Listen</h2><table><tr><th>sentence</th><th>real parent</th><th>clone</th></tr>{players}</table></html>"""
    path.write_text(page, encoding="utf-8")
    return path
