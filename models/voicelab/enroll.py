"""Enrollment: a parent's recordings, checked and cleaned before any cloning starts.

A clone can only be as good as what it hears, and a technician in a family's living room
cannot judge a recording by ear: every file is read, trimmed to speech (webrtcvad), levelled,
and refused with a reason when it is too short, clipped, noisy, or another person's voice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from hearmylove.errors import RecordingError

from .encoder import RATE, SpeakerEncoder, preprocess, speech_mask
from .judge import resample
from .pitch import PitchStats, pitch_stats

MIN_SPEECH_SECONDS = 5.0
MAX_CLIPPED_SHARE = 0.001  # of samples at full scale
MIN_SNR_DB = 10.0
# GE2E between two files: one speaker's pairs median 0.84-0.94 (lowest 0.70), two speakers' median 0.59
# (highest 0.74) on shared/evalset. Files linked at >= 0.75 must form one group.
SAME_SPEAKER_LINK = 0.75
FULL_SCALE = 0.999
FRAME = 480  # 30 ms at 16 kHz


@dataclass
class Recording:
    path: Path
    speech: np.ndarray = field(repr=False)
    """16 kHz, levelled, long silences cut: what the speaker encoder and pitch tracker see."""
    seconds: float
    snr_db: float
    clipped_share: float
    transcript: str | None = None


@dataclass
class Enrollment:
    recordings: list[Recording]
    embedding: np.ndarray = field(repr=False)
    pitch: PitchStats | None
    groups: int
    """Groups of files that sound alike; more than one means more than one speaker."""

    @property
    def speech_seconds(self) -> float:
        return sum(r.seconds for r in self.recordings)

    @property
    def letters_per_second(self) -> float | None:
        """Speaking rate from transcripts (letters per second of speech), None without them."""
        timed = [(r.transcript, r.seconds) for r in self.recordings if r.transcript]
        if not timed:
            return None
        return sum(len(re.sub(r"[^\w]", "", t)) for t, _ in timed) / sum(s for _, s in timed)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Any file libsndfile reads (wav, flac, ogg, mp3), mixed to mono float32."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise RecordingError(f"{path}: cannot read it as audio ({exc}); use wav, flac, ogg or mp3") from exc
    if not len(audio):
        raise RecordingError(f"{path}: the file holds no audio")
    return audio.mean(axis=1), int(rate)


def snr_db(wav16: np.ndarray) -> float:
    """Speech level against the quietest tenth of 30 ms frames (the room's noise floor)."""
    n = len(wav16) // FRAME
    if n < 10:
        return 0.0
    power = np.mean(wav16[: n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2, axis=1) + 1e-12
    voiced = speech_mask(wav16)[: n * FRAME].reshape(n, FRAME).mean(axis=1) > 0.5
    speech = power[voiced] if voiced.any() else power
    noise = np.percentile(power, 10)
    return float(10 * np.log10(np.mean(speech) / noise))


def read_recording(path: Path, transcript: str | None = None) -> Recording:
    audio, rate = read_audio(path)
    clipped = float(np.mean(np.abs(audio) >= FULL_SCALE))
    wav16 = resample(audio, rate, RATE)
    speech = preprocess(audio, rate)
    return Recording(path, speech, len(speech) / RATE, snr_db(wav16), clipped, transcript)


def _transcript_for(path: Path) -> str | None:
    side = path.with_suffix(".txt")
    return side.read_text(encoding="utf-8").strip() or None if side.exists() else None


def _problems(rec: Recording) -> list[str]:
    problems = []
    if rec.clipped_share > MAX_CLIPPED_SHARE:
        problems.append(
            f"{rec.path.name}: clipped ({rec.clipped_share:.2%} of samples at full scale); "
            "record again with the microphone further away or the input gain lower"
        )
    if rec.snr_db < MIN_SNR_DB:
        problems.append(
            f"{rec.path.name}: too noisy (speech is {rec.snr_db:.0f} dB above the background, "
            f"at least {MIN_SNR_DB:.0f} dB is needed); record in a quiet room"
        )
    return problems


def enroll(
    files: Sequence[Path], encoder: SpeakerEncoder, transcripts: Sequence[str | None] | None = None
) -> Enrollment:
    """Read and check every recording; refuse with every problem found, not just the first."""
    if not files:
        raise RecordingError("no recordings given")
    texts = list(transcripts) if transcripts is not None else [_transcript_for(Path(f)) for f in files]
    problems: list[str] = []
    recordings: list[Recording] = []
    for path, text in zip(files, texts, strict=True):
        try:
            rec = read_recording(Path(path), text)
        except RecordingError as exc:
            problems.append(str(exc))
            continue
        problems += _problems(rec)
        recordings.append(rec)
    total = sum(r.seconds for r in recordings)
    if total < MIN_SPEECH_SECONDS:
        problems.append(
            f"too little speech: {total:.1f} s after silence is cut, at least {MIN_SPEECH_SECONDS:.0f} s is needed "
            "(a minute or more clones better)"
        )
    if problems:
        raise RecordingError("the recordings cannot be used:\n  " + "\n  ".join(problems))
    usable = [r for r in recordings if r.seconds >= 1.0]
    embeds = np.array([encoder.embed_prepared(r.speech) for r in usable])
    groups = speaker_groups(embeds)
    if len(groups) > 1:
        described = "; ".join(", ".join(usable[i].path.name for i in g) for g in groups)
        raise RecordingError(
            f"the recordings sound like {len(groups)} different speakers ({described}); "
            "use recordings of the parent alone"
        )
    mean = np.mean(embeds, axis=0)
    return Enrollment(
        recordings=recordings,
        embedding=(mean / np.linalg.norm(mean)).astype(np.float32),
        pitch=pitch_stats([(r.speech, RATE) for r in recordings]),
        groups=len(groups),
    )


def speaker_groups(embeds: np.ndarray) -> list[list[int]]:
    """Files joined when their embeddings are alike (single link), largest group first."""
    parent = list(range(len(embeds)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    sims = embeds @ embeds.T
    for i, j in zip(*np.nonzero(np.triu(sims >= SAME_SPEAKER_LINK, 1)), strict=True):
        parent[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(embeds)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=len, reverse=True)
