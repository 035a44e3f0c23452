"""The studio's two jobs end to end: clone recordings into a signed pack, and evaluate a pack.

Kept apart from the algorithms (`enroll`, `clone`, `evaluate`) so those stay testable
pieces; this module only wires them to files, keys and progress messages.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hearmylove.basemodel import read_manifest
from hearmylove.engine.engine import Engine
from hearmylove.engine.vocoders import installed_student
from hearmylove.engine.voices import Voice
from hearmylove.errors import RecordingError
from hearmylove.paths import default_model_dir
from hearmylove.voicepack import Consent, load_public_key, open_pack

from .clone import (
    MAX_CHECK_ERROR,
    Progress,
    Step,
    adapt,
    add_to_bank,
    encode,
    intelligibility,
    load_bank,
    nearest_stock,
)
from .encoder import SpeakerEncoder
from .enroll import Enrollment, enroll, read_audio
from .evaluate import Reference, Scores, render, score, write_report
from .pack import build_pack

if TYPE_CHECKING:
    from .adapt.run import ParentVocoder


@dataclass
class CloneResult:
    start: float
    final: float
    languages: list[str]
    log: Path


def clone_voice(
    files: list[Path],
    voice_id: str,
    display_name: str,
    lang: str,
    consent: Consent,
    key: Path,
    out: Path,
    budget_minutes: float,
    progress: Progress,
    max_evaluations: int = 2000,
    add_to_voice_bank: bool = False,
    vocoder_minutes: float = 0.0,
) -> CloneResult:
    """Recordings -> a signed pack: the style vector (encoding, then CMA-ES for `budget_minutes`),
    then, for `vocoder_minutes` > 0, the parent's own vocoder (the student head fine-tuned on
    the recordings), kept only if Whisper still understands it."""
    encoder = SpeakerEncoder()
    progress(f"checking {len(files)} recording(s)")
    enrollment = enroll(files, encoder)
    pitch = enrollment.pitch
    progress(
        f"{enrollment.speech_seconds:.0f} s of speech"
        + (f", F0 median {pitch.median_hz:.0f} Hz" if pitch else "")
        + (f", {enrollment.letters_per_second:.1f} letters/s" if enrollment.letters_per_second else "")
    )
    engine = Engine.load()
    bank = load_bank(engine, encoder, progress)
    encoding = encode(enrollment, bank)
    progress("speaker encoding: " + ", ".join(f"{v} {w:.2f}" for v, w in encoding.weights.items()))
    work = out.with_name(out.name + ".work")
    adapted = adapt(
        enrollment,
        encoding.styles,
        bank,
        engine,
        encoder,
        lang,
        budget_minutes * 60,
        work,
        max_evaluations,
        progress=progress,
        fallback=nearest_stock(enrollment, bank, engine).styles,
    )
    progress(f"adaptation stopped ({adapted.stopped}); Whisper heard: {adapted.heard!r}")
    voice = Voice(voice_id, adapted.styles)
    quality: dict[str, float] = {}
    parent = None
    if vocoder_minutes > 0:
        parent, voice, quality = _own_vocoder(engine, enrollment, lang, voice, vocoder_minutes, work, progress)
    languages = [lang]
    other = "zh" if lang == "en" else "en"
    other_error, heard = intelligibility(engine, adapted.styles, other, voice)
    if other_error <= MAX_CHECK_ERROR[other]:
        languages.append(other)
    else:
        progress(f"the voice is not clear enough in {other} ({heard!r}); the pack is for {lang} only")
    quality |= {
        "similarity_start": adapted.start_similarity,
        "similarity": adapted.similarity,
        f"check_error_{lang}": quality.get(f"check_error_{lang}", adapted.check_error),
        f"check_error_{other}": other_error,
        "speech_seconds": enrollment.speech_seconds,
        "evaluations": float(len(adapted.history)),
    }
    vocoder = (parent.manifest, parent.delta) if parent is not None else None
    build_pack(
        adapted.styles, voice_id, display_name, languages, consent, quality, default_model_dir(), key, out, vocoder
    )
    if add_to_voice_bank:  # only with the family's consent: later clones start from this voice
        add_to_bank(voice_id, adapted.styles)
    log = out.with_name(out.name + ".clone.json")
    log.write_text(
        json.dumps(
            {
                "encoding": {"weights": encoding.weights, "similarities": encoding.similarities},
                "stopped": adapted.stopped,
                "history": [asdict(s) for s in adapted.history],
            },
            indent=1,
        )
    )
    return CloneResult(adapted.start_similarity, adapted.similarity, languages, log)


def _own_vocoder(
    engine: Engine,
    enrollment: Enrollment,
    lang: str,
    voice: Voice,
    minutes: float,
    work: Path,
    progress: Progress,
) -> tuple[ParentVocoder | None, Voice, dict[str, float]]:
    """Fine-tune the vocoder on the recordings; keep it only if Whisper understands it."""
    from .adapt.run import adapt_vocoder, merged_voice  # torch: the studio extra

    recordings = [(r.path, r.transcript) for r in enrollment.recordings]
    parent = adapt_vocoder(engine, recordings, lang, voice, minutes * 60, work, progress=progress)
    own = merged_voice(engine, voice, parent.delta, work)
    error, heard = intelligibility(engine, voice.styles, lang, own)
    if error > MAX_CHECK_ERROR[lang]:
        progress(f"with its own vocoder Whisper heard {heard!r}: the pack keeps the speaker's vocoder")
        return None, voice, {"vocoder_rejected": 1.0}
    progress(f"the parent's own vocoder: Whisper heard {heard!r}")
    quality = {
        "vocoder_steps": float(parent.tuned.best_step),
        "vocoder_held_out_loss_start": parent.tuned.held_out_start,
        "vocoder_held_out_loss": parent.tuned.held_out_best,
        f"check_error_{lang}": error,
    }
    return parent, own, quality


def read_references(refs: list[Path], texts: list[str] | None) -> list[Reference]:
    if texts and len(texts) == 1 and Path(texts[0]).is_file() and len(refs) > 1:
        texts = [line.strip() for line in Path(texts[0]).read_text(encoding="utf-8").splitlines() if line.strip()]
    if texts is None:
        texts = []
        for ref in refs:
            side = ref.with_suffix(".txt")
            if not side.is_file():
                raise RecordingError(f"{ref}: no transcript; give --texts or put {side.name} beside it")
            texts.append(side.read_text(encoding="utf-8").strip())
    if len(texts) != len(refs):
        raise RecordingError(f"{len(refs)} reference recordings but {len(texts)} transcripts; give one per file")
    return [Reference(*read_audio(ref), text) for ref, text in zip(refs, texts, strict=True)]


@dataclass
class EvalReport:
    scores: Scores
    path: Path


def evaluate_pack(
    pack: Path,
    refs: list[Path],
    texts: list[str] | None,
    pubs: list[Path],
    lang: str,
    report: Path | None,
    progress: Progress,
) -> EvalReport:
    keys = [load_public_key(p.read_text()) for p in pubs]
    model_dir = default_model_dir()
    base = str(read_manifest(model_dir)["base_model_sha256"])
    manifest, voice = open_pack(pack, keys, base, student=installed_student(model_dir))
    references = read_references(refs, texts)
    engine = Engine.load()
    encoder = SpeakerEncoder()
    progress(f"speaking {len(references)} held-out sentence(s) in {manifest.display_name}'s voice")
    clones = render(engine, voice, references, lang)
    progress("scoring: speaker similarity, Whisper, pitch, DNSMOS")
    scores = score(clones, references, lang, encoder)
    history = None
    log = pack.with_name(pack.name + ".clone.json")
    if log.is_file():
        history = [Step(**s) for s in json.loads(log.read_text())["history"]]
    path = report or pack.with_name(pack.name + ".report.html")
    write_report(path, f"Voice {manifest.display_name} ({manifest.voice_id})", scores, clones, references, history)
    return EvalReport(scores, path)
