"""The studio's vocoder adaptation end to end: recordings in, a checked delta for the pack out.

Steps: every recording gets a transcript (its `NAME.txt`, else Whisper), is aligned to it
with the clone's own voice (so the head is trained on the timbre it will be given on the
speaker), a sixth of the utterances (at least one; or the last fifth of a single recording)
is held out for early stopping, the head is fine-tuned (`tune`), and the result is merged
exactly as a speaker merges it and heard by Whisper before it may ship (`guard`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hearmylove.engine import adapted
from hearmylove.engine.engine import Engine
from hearmylove.engine.vocoders import student_build
from hearmylove.engine.voices import Voice
from hearmylove.voicepack import AdaptedVocoder

from ..judge import transcribe
from .align import align, read_recording
from .tune import HOP, Example, Progress, Tuned, TuneSettings, prepare, tune
from .vocoder import load_built_head, load_vocoder

HELD_SHARE = 6  # one utterance in this many is held out for early stopping


@dataclass
class ParentVocoder:
    """The adapted vocoder as a pack carries it, and what the studio measured on the way."""

    manifest: AdaptedVocoder
    delta: dict[str, np.ndarray]
    tuned: Tuned


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """Training and held-out examples; a lone recording lends its last fifth."""
    if len(examples) >= 2:
        held = max(1, len(examples) // HELD_SHARE)
        return examples[:-held], examples[-held:]
    (e,) = examples
    cut = int(e.features.shape[1] * 0.8)
    head = Example(e.features[:, :cut], e.source[: cut * HOP], e.timbre, e.target[: cut * HOP], e.seconds * 0.8)
    tail = Example(e.features[:, cut:], e.source[cut * HOP :], e.timbre, e.target[cut * HOP :], e.seconds * 0.2)
    return [head], [tail]


def adapt_vocoder(
    engine: Engine,
    recordings: list[tuple[Path, str | None]],
    lang: str,
    voice: Voice,
    budget_seconds: float,
    work_dir: Path,
    settings: TuneSettings | None = None,
    threads: int = 2,
    progress: Progress = print,
) -> ParentVocoder:
    """Fine-tune the student head on the parent's `recordings` (path, transcript or None)."""
    torch.set_num_threads(threads)
    vocoder = load_vocoder(engine.config.model_dir)
    _, base_sha = load_built_head(engine.config.model_dir)
    examples = []
    for i, (path, text) in enumerate(recordings, start=1):
        audio, rate = read_recording(path)
        if not text:
            text = transcribe(audio, rate, lang)
            progress(f"Whisper heard {path.name}: {text!r}")
        examples.append(prepare(vocoder, align(engine, audio, rate, text, lang, voice)))
        progress(f"aligned {i}/{len(recordings)} recordings to their text")
    train, held = split(examples)
    seconds = sum(e.seconds for e in examples)
    progress(f"fine-tuning the vocoder on {sum(e.seconds for e in train):.0f} s, {len(held)} held out")
    tuned = tune(vocoder, train, held, budget_seconds, work_dir / "vocoder.pt", settings, progress)
    progress(
        f"vocoder adaptation stopped ({tuned.stopped}) after {tuned.steps} steps; held-out loss "
        f"{tuned.held_out_start:.3f} -> {tuned.held_out_best:.3f} (step {tuned.best_step})"
    )
    rank = (settings or TuneSettings()).rank
    manifest = AdaptedVocoder(base_head_sha256=base_sha, rank=rank, steps=tuned.best_step, speech_seconds=seconds)
    return ParentVocoder(manifest, tuned.delta, tuned)


def merged_voice(engine: Engine, voice: Voice, delta: dict[str, np.ndarray], work_dir: Path) -> Voice:
    """`voice` with the delta merged exactly as a speaker merges it (to hear it in the studio)."""
    build = student_build(engine.config.model_dir)
    with np.load(build.weights, allow_pickle=False) as npz:
        base = {name: npz[name] for name in npz.files}
    merged = adapted.merge(base, {k: v.astype(np.float16) for k, v in delta.items()})
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / adapted.MERGED_FILE
    digest = adapted.write_merged(path, merged)
    return Voice(voice.id, voice.styles, vocoder=path, vocoder_sha256=digest)
