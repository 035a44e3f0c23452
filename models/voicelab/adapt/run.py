"""The studio's vocoder adaptation end to end: recordings in, a checked delta for the pack out.

Steps: every recording gets a transcript (its `NAME.txt`, else Whisper), is aligned to it
with the clone's own voice (so the head is trained on the timbre it will be given on the
speaker), a sixth of the utterances (at least one; or the last fifth of a single recording)
is held out for early stopping, the head is fine-tuned (`tune`), and the result is merged
exactly as a speaker merges it and heard by Whisper before it may ship (`guard`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hearmylove.engine import adapted
from hearmylove.engine.engine import Engine, Features
from hearmylove.engine.vocoders import student_build
from hearmylove.engine.voices import Voice
from hearmylove.voicepack import AdaptedVocoder

from ..clone import ADAPT_TEXTS
from ..judge import cer_zh, transcribe, wer
from .align import align, read_recording
from .tune import HOP, Example, Progress, Tuned, TuneSettings, prepare, rehearse, tune
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
    anchor = e.anchor if e.anchor is not None else e.target

    def part(lo: int, hi: int) -> Example:
        share = (hi - lo) / e.features.shape[1]
        samples = slice(lo * HOP, hi * HOP)
        return Example(
            e.features[:, lo:hi], e.source[samples], e.timbre, e.target[samples], e.seconds * share, anchor[samples]
        )

    head, tail = part(0, cut), part(cut, e.features.shape[1])
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
        examples.append(prepare(vocoder, align(engine, audio, rate, text, lang, voice), text))
        progress(f"aligned {i}/{len(recordings)} recordings to their text")
    train, held = split(examples)
    seconds = sum(e.seconds for e in examples)
    rehearsal = [rehearse(vocoder, f) for f in _rehearsal_features(engine, voice, lang)]
    progress(
        f"fine-tuning the vocoder on {sum(e.seconds for e in train):.0f} s, {len(held)} held out, "
        f"{sum(e.seconds for e in rehearsal):.0f} s of its own speech rehearsed"
    )
    guard = [(rehearse(vocoder, f, text), language) for f, text, language in _guard_features(engine, voice, lang)]
    judge = _judge([*guard, *((e, lang) for e in held if e.text)])
    tuned = tune(vocoder, train, held, budget_seconds, work_dir / "vocoder.pt", settings, progress, rehearsal, judge)
    progress(
        f"vocoder adaptation stopped ({tuned.stopped}) after {tuned.steps} steps; held-out loss "
        f"{tuned.held_out_start:.3f} -> {tuned.held_out_best:.3f} (step {tuned.best_step})"
    )
    rank = (settings or TuneSettings()).rank
    manifest = AdaptedVocoder(base_head_sha256=base_sha, rank=rank, steps=tuned.best_step, speech_seconds=seconds)
    return ParentVocoder(manifest, tuned.delta, tuned)


def _judge(held: list[tuple[Example, str]]) -> Callable[[torch.nn.Module], float]:
    """Whisper's error rate on what the head makes of `held` (example, language): the guard's
    sentences as the synthesizer says them in the clone's voice, and copies of the held-out recordings."""

    def error(head: torch.nn.Module) -> float:
        head.eval()
        rates = []
        with torch.no_grad():
            for e, lang in held:
                audio = head(e.features[None], e.source[None], e.timbre[None])[0].numpy()
                heard = transcribe(audio, 24_000, lang)
                rates.append(wer(e.text, heard) if lang == "en" else cer_zh(e.text, heard))
        return float(np.mean(rates))

    return error


GUARD_SENTENCES = 2
"""The last sentences of each language's list are never rehearsed: the guard hears the voice say
them, two in the parent's language and one in the other (a Mandarin parent tells English stories)."""


def _guard_features(engine: Engine, voice: Voice, lang: str) -> list[tuple[Features, str, str]]:
    """The guard's sentences in the clone's voice, as the synthesizer makes them (one utterance each)."""
    other = "zh" if lang == "en" else "en"
    texts = [(t, lang) for t in ADAPT_TEXTS[lang][-GUARD_SENTENCES:]] + [(ADAPT_TEXTS[other][-1], other)]
    triples = []
    for text, language in texts:
        (utterance,) = engine.frontend.utterances(text, language)
        triples.append((engine.features(utterance.phonemes, voice), text, language))
    return triples


def _rehearsal_features(engine: Engine, voice: Voice, lang: str) -> list[Features]:
    """The clone's voice saying the studio's sentences in both languages (never the guard's or the check texts)."""
    other = "zh" if lang == "en" else "en"
    texts = [(t, lang) for t in ADAPT_TEXTS[lang][:-GUARD_SENTENCES]]
    texts += [(t, other) for t in ADAPT_TEXTS[other][:-GUARD_SENTENCES]]
    utterances = [u for text, language in texts for u in engine.frontend.utterances(text, language)]
    return [engine.features(u.phonemes, voice) for u in utterances]


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
