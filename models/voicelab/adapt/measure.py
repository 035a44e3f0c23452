"""Copy-synthesis: does a vocoder fed with a recording's aligned inputs give back that recording?

Why measure it before any fine-tuning: it checks the alignment end to end (timing, F0 and
energy scales) and it splits the distance between a stock voice and the parent in two: what
the parent's timing and prosody bring (copy vs stock rendering, same timbre) and what is left
for the vocoder's weights to learn (copy vs another real recording of the parent).

    python -m voicelab.adapt.measure --per-speaker 1 --vocoder qdq
    python -m voicelab.adapt.measure --vocoder student --head models/weights/student-head.pt
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import Engine, Features
from hearmylove.paths import default_model_dir

from ..encoder import SpeakerEncoder, similarity
from ..judge import resample
from . import dtw
from .align import Aligned, align, read_recording
from .signal import SAMPLE_RATE, f0_on_grid, mfcc

Vocoder = Callable[[Features], np.ndarray]
EVALSET = Path(__file__).resolve().parents[3].parent / "shared" / "evalset"
VOICE_FOR = {"M": "jm_kumo", "F": "jf_alpha"}  # the stock voice of the reader's gender


class CopyReport(BaseModel):
    """One recording: GE2E similarity to it of the stock rendering and of the copy-synthesis."""

    utterance: str
    voice: str = Field(description="stock voice: timbre of both renderings, and the DTW reference")
    seconds: float
    stock: float = Field(description="similarity of the stock rendering (its own timing and prosody)")
    copy_: float = Field(alias="copy", description="similarity of the copy-synthesis (recording's timing, F0, energy)")
    ceiling: float | None = Field(None, description="similarity of another real recording of the same speaker")
    f0_error_st: float = Field(description="median |F0 copy - F0 recording| in semitones, frames voiced in both")
    offset_copy_ms: float = Field(
        description="median distance of the copy's DTW path to the recording from the diagonal"
    )
    offset_stock_ms: float = Field(description="the same for the stock rendering (stretched to the recording's length)")

    model_config = ConfigDict(populate_by_name=True, validate_by_name=True)


def timing_offset_ms(audio: np.ndarray, recording: np.ndarray) -> float:
    """How far, in ms, `audio` runs ahead of or behind the recording (DTW on normalised MFCCs, both
    at 24 kHz), after stretching it to the recording's length: 0 when the timing is the recording's."""
    n, m = max(1, len(audio) // 300), max(1, len(recording) // 300)
    steps, _ = dtw.align(mfcc(audio, SAMPLE_RATE, n), mfcc(recording, SAMPLE_RATE, m))
    return float(np.median(np.abs(steps[:, 0] * (m / n) - steps[:, 1]))) * 12.5


def f0_error_st(audio: np.ndarray, recording: np.ndarray) -> float:
    frames = len(recording) // 300
    a, b = f0_on_grid(audio, SAMPLE_RATE, frames), f0_on_grid(recording, SAMPLE_RATE, frames)
    both = (a > 0) & (b > 0)
    return float(np.median(np.abs(12 * np.log2(a[both] / b[both])))) if both.any() else float("nan")


def copy_report(
    aligned: Aligned, vocoder: Vocoder, encoder: SpeakerEncoder, name: str, voice: str, other: np.ndarray | None = None
) -> CopyReport:
    """Score a copy-synthesis against its recording (`other`: another recording of the speaker, 24 kHz)."""
    reference = encoder.embed(aligned.audio, SAMPLE_RATE)
    stock, copy = vocoder(aligned.stock), vocoder(aligned.features)
    return CopyReport(
        utterance=name,
        voice=voice,
        seconds=aligned.report.seconds,
        stock=similarity(encoder.embed(stock, SAMPLE_RATE), reference),
        copy_=similarity(encoder.embed(copy, SAMPLE_RATE), reference),
        ceiling=None if other is None else similarity(encoder.embed(other, SAMPLE_RATE), reference),
        f0_error_st=f0_error_st(copy, aligned.audio),
        offset_copy_ms=timing_offset_ms(copy, aligned.audio),
        offset_stock_ms=timing_offset_ms(stock, aligned.audio),
    )


def student_vocoder(model_dir: Path, head: Path) -> Vocoder:
    """The torch student (front + head): what adaptation will train."""
    import torch

    from .vocoder import load_vocoder

    module = load_vocoder(model_dir, head)

    def run(f: Features) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (f.asr, f.f0, f.energy, f.timbre)))[
                0
            ].numpy()

    return run


def evalset_rows(per_speaker: int, lang: str = "en", max_seconds: float = 8.0) -> list[dict[str, str]]:
    """The first `per_speaker` recordings of 3 to `max_seconds` s of each speaker, and the speaker's next one."""
    rows = list(csv.DictReader(open(EVALSET / "manifest.csv", encoding="utf-8")))
    chosen: list[dict[str, str]] = []
    for speaker in sorted({r["speaker"] for r in rows if r["language"] == lang}):
        mine = sorted((r for r in rows if r["speaker"] == speaker), key=lambda r: r["utt_id"])
        short = [r for r in mine if 3.0 <= float(r["seconds"]) <= max_seconds]
        for r in short[:per_speaker]:
            chosen.append({**r, "other": next(o["path"] for o in mine if o["utt_id"] != r["utt_id"])})
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-speaker", type=int, default=1)
    parser.add_argument("--vocoder", choices=("qdq", "int8", "student"), default="qdq")
    parser.add_argument("--head", type=Path, default=None, help="student head weights (.pt)")
    parser.add_argument("--cross-gender", action="store_true", help="use the other gender's stock voice")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    model_dir = default_model_dir()
    engine = Engine.load(EngineConfig(model_dir=model_dir, threads=args.threads, vocoder="qdq"))
    if args.vocoder == "student":
        import torch

        from .vocoder import HEAD_WEIGHTS

        torch.set_num_threads(args.threads)

        vocoder = student_vocoder(model_dir, args.head or HEAD_WEIGHTS)
    elif args.vocoder == "int8":
        vocoder = Engine.load(EngineConfig(model_dir=model_dir, threads=args.threads, vocoder="int8")).vocode_whole
    else:
        vocoder = engine.vocode_whole
    encoder = SpeakerEncoder()
    print("| utterance | voice | s | stock | copy | real (same speaker) | F0 err st | offset copy / stock ms |")
    print("|---|---|---|---|---|---|---|---|")
    reports = []
    for row in evalset_rows(args.per_speaker):
        gender = {"M": "F", "F": "M"}[row["gender"]] if args.cross_gender else row["gender"]
        audio, rate = read_recording(EVALSET / row["path"])
        other, other_rate = read_recording(EVALSET / row["other"])
        aligned = align(
            engine, audio, rate, row["transcript"].lower(), row["language"], engine.voice(VOICE_FOR[gender])
        )
        r = copy_report(
            aligned, vocoder, encoder, row["utt_id"], VOICE_FOR[gender], resample(other, other_rate, SAMPLE_RATE)
        )
        reports.append(r)
        print(
            f"| {r.utterance} | {r.voice} | {r.seconds:.1f} | {r.stock:.3f} | {r.copy_:.3f} | {r.ceiling:.3f} "
            f"| {r.f0_error_st:.2f} | {r.offset_copy_ms:.0f} / {r.offset_stock_ms:.0f} |",
            flush=True,
        )
    mean = {k: np.mean([getattr(r, k) for r in reports]) for k in ("stock", "copy_", "ceiling")}
    print(f"| mean | | | {mean['stock']:.3f} | {mean['copy_']:.3f} | {mean['ceiling']:.3f} | | |")


if __name__ == "__main__":
    main()
