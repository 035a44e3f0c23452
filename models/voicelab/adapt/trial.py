"""Vocoder adaptation tried on evaluation-set readers, judged on recordings it never heard.

    python -m voicelab.adapt.trial --speaker p226 --seconds 60 --minutes 6 --out trial.json

For one reader: the first utterances up to `--seconds` are the enrollment (what a parent
records), the last three are held out and never touched. The closest stock voice (the
studio's own choice, by GE2E) gives the timbre input; the head is fine-tuned on the
enrollment (`run.adapt_vocoder`, the studio's path); then the held-out sentences are spoken
by the speaker's engine with the stock voice and with the adapted vocoder, and both are
scored against the held-out recordings: normalized similarity (0 = same-gender strangers,
1 = the reader's own other recordings), Whisper WER/CER, DNSMOS; and the adapted voice reads
a sentence in the other language (a parent cloned in Mandarin tells English stories).
Evaluation-set readers only: nothing here is shipped or trained into a shipped model.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import Engine
from hearmylove.engine.voices import Voice

from ..clone import CHECK_TEXTS, intelligibility, load_bank, nearest_stock
from ..encoder import SpeakerEncoder
from ..enroll import enroll, read_audio
from ..evaluate import Reference, render, same_speaker_level, score
from .measure import EVALSET
from .run import adapt_vocoder, merged_voice
from .tune import TuneSettings

HELD_OUT = 3


def _rows(speaker: str) -> list[dict[str, str]]:
    with open(EVALSET / "manifest.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["speaker"] == speaker]
    if len(rows) < HELD_OUT + 2:
        raise SystemExit(f"{speaker}: {len(rows)} utterances in the evaluation set; need {HELD_OUT + 2}")
    return sorted(rows, key=lambda r: r["utt_id"])


def _text(row: dict[str, str]) -> str:
    return row["transcript"].lower() if row["language"] == "en" else row["transcript"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speaker", required=True, help="an evaluation-set reader, e.g. p226 or S0150")
    parser.add_argument("--seconds", type=float, default=60.0, help="enrollment: first utterances up to this")
    parser.add_argument("--minutes", type=float, default=6.0, help="fine-tuning budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", choices=["all", "timbre"], default="all", help="what trains")
    parser.add_argument("--rehearsal", type=float, default=1.0, help="weight of the base head's own speech")
    parser.add_argument("--work", default="/tmp/voicelab-trial", help="checkpoint folder (resumes)")
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args(argv)

    rows = _rows(args.speaker)
    held, enrollment_rows, total = rows[-HELD_OUT:], [], 0.0
    for r in rows[:-HELD_OUT]:
        if total >= args.seconds:
            break
        enrollment_rows.append(r)
        total += float(r["seconds"])
    lang = rows[0]["language"]
    other = "zh" if lang == "en" else "en"
    engine = Engine.load(EngineConfig(vocoder="student", threads=args.threads))
    encoder = SpeakerEncoder()
    paths = [EVALSET / r["path"] for r in enrollment_rows]
    enrollment = enroll(paths, encoder, [_text(r) for r in enrollment_rows])
    stock = nearest_stock(enrollment, load_bank(engine, encoder), engine)
    voice = Voice(stock.id, stock.styles)
    print(f"{args.speaker}: {len(paths)} enrollment utterances ({total:.0f} s); closest stock voice {stock.id}")
    work = Path(args.work) / args.speaker
    parent = adapt_vocoder(
        engine,
        [(p, _text(r)) for p, r in zip(paths, enrollment_rows, strict=True)],
        lang,
        voice,
        args.minutes * 60,
        work,
        TuneSettings(parts=args.parts, rehearsal=args.rehearsal),
        args.threads,
    )
    adapted = merged_voice(engine, voice, parent.delta, work)
    refs = [Reference(*read_audio(EVALSET / r["path"]), _text(r)) for r in held]
    same = same_speaker_level(refs, encoder)
    result: dict[str, object] = {
        "speaker": args.speaker,
        "language": lang,
        "enrollment_seconds": total,
        "steps": parent.tuned.steps,
        "best_step": parent.tuned.best_step,
        "minutes": parent.tuned.seconds / 60,
        "stock_voice": stock.id,
        "same_level": same,
        "parts": args.parts,
        "rehearsal": args.rehearsal,
        "delta_kb": sum(v.astype("float16").nbytes for v in parent.delta.values()) / 1024,
    }
    for name, chosen in (("stock", voice), ("adapted", adapted)):
        scores = score(render(engine, chosen, refs, lang), refs, lang, encoder, same_level=same)
        result[name] = scores.model_dump()
        print(
            f"{name:8s} similarity {scores.similarity:.3f} normalized {scores.normalized:.2f}, "
            f"{'WER' if lang == 'en' else 'CER'} {scores.error_rate:.1%}, DNSMOS {scores.dnsmos_clone:.2f}"
        )
    for name, chosen in (("stock", voice), ("adapted", adapted)):
        error, heard = intelligibility(engine, chosen.styles, other, chosen)
        result[f"{name}_in_{other}"] = {"error": error, "heard": heard, "text": CHECK_TEXTS[other]}
        print(f"{name} voice in {other}: error {error:.1%}, Whisper heard {heard!r}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
