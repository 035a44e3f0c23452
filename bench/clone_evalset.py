"""Clone each of the 9 speakers of ../shared/evalset and score the clones on held-out sentences.

For every speaker: enrollment = their first utterances up to 60 s, held out = their last 3.
Reported side by side: the closest stock voice, speaker encoding, encoding + adaptation;
GE2E similarity to the held-out recordings, normalized between the stranger level (the
other speakers' real recordings) and the same-speaker level (enrollment vs held-out real
recordings); Whisper WER; DNSMOS; F0 error; cloning time on this machine. Clones join the
studio's voice bank in turn, as they would in a studio.

    .venv/bin/python bench/clone_evalset.py [--budget-minutes 3] [--speakers 1688,LJ] [--report-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from hearmylove.engine.engine import Engine
from hearmylove.engine.voices import Voice
from voicelab.clone import adapt, add_to_bank, bank_dir, encode, load_bank
from voicelab.encoder import SpeakerEncoder, similarity
from voicelab.enroll import enroll, read_audio
from voicelab.evaluate import Reference, render, score, write_report
from voicelab.judge import transcribe, wer

EVALSET = Path(__file__).resolve().parents[2] / "shared" / "evalset"
ENROLL_SECONDS = 60.0
HELD_OUT = 3


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def split(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rows = sorted(rows, key=lambda r: r["utt_id"])
    held, rest = rows[-HELD_OUT:], rows[:-HELD_OUT]
    enrolled, total = [], 0.0
    for row in rest:
        if total + float(row["seconds"]) <= ENROLL_SECONDS:
            enrolled.append(row)
            total += float(row["seconds"])
    return enrolled, held


def held_similarity(encoder: SpeakerEncoder, clips: list[np.ndarray], real: np.ndarray) -> float:
    return similarity(encoder.embed_many([(c, 24_000) for c in clips]), real)


def held_wer(clips: list[np.ndarray], refs: list[Reference]) -> float:
    """Whisper's WER on the held-out texts: LibriSpeech's archaic sentences are hard for any voice."""
    return float(np.mean([wer(r.text, transcribe(c, 24_000, "en")) for r, c in zip(refs, clips, strict=True)]))


def stock_wer(spk: str, rows: list[dict[str, str]], engine: Engine, encoder: SpeakerEncoder) -> dict[str, object]:
    """The WER column's reference: the closest stock voice reading the same held-out texts."""
    enrolled, held = split(rows)
    refs = [Reference(*read_audio(EVALSET / r["path"]), r["transcript"].lower()) for r in held]
    enrollment = enroll([EVALSET / r["path"] for r in enrolled], encoder, [r["transcript"] for r in enrolled])
    stock = [v for v in load_bank(engine, encoder, log) if not v.id.startswith("evalset-")]
    best = max(stock, key=lambda v: similarity(enrollment.embedding, v.embedding))
    clips = render(engine, Voice(best.id, best.styles), refs, "en")
    return {"speaker": spk, "stock": best.id, "wer_stock": held_wer(clips, refs)}


def clone_speaker(
    spk: str,
    rows: list[dict[str, str]],
    held_embeds: dict[str, np.ndarray],
    engine: Engine,
    encoder: SpeakerEncoder,
    args: argparse.Namespace,
) -> dict[str, object]:
    enrolled, held = split(rows)
    refs = [Reference(*read_audio(EVALSET / r["path"]), r["transcript"].lower()) for r in held]
    real_held = held_embeds[spk]
    stranger = float(np.mean([similarity(real_held, e) for s, e in held_embeds.items() if s != spk]))
    started = time.monotonic()
    enrollment = enroll([EVALSET / r["path"] for r in enrolled], encoder, [r["transcript"] for r in enrolled])
    same = similarity(enrollment.embedding, real_held)
    bank = load_bank(engine, encoder, log)
    encoding = encode(enrollment, bank)
    encode_seconds = time.monotonic() - started
    work = Path(f"/tmp/evalset-{spk}")
    adapted = adapt(enrollment, encoding.styles, bank, engine, encoder, "en", args.budget_minutes * 60, work)
    clone_seconds = time.monotonic() - started
    stock = [v for v in bank if not v.id.startswith("evalset-")]
    best_stock = max(stock, key=lambda v: encoding.similarities[v.id])
    stock_clips = render(engine, Voice(best_stock.id, best_stock.styles), refs, "en")
    before = held_similarity(encoder, stock_clips, real_held)
    encoded = held_similarity(encoder, render(engine, Voice("encoded", encoding.styles), refs, "en"), real_held)
    wer_stock = held_wer(stock_clips, refs)
    clones = render(engine, Voice("clone", adapted.styles), refs, "en")
    scores = score(clones, refs, "en", encoder, same_level=same, stranger_level=stranger)
    add_to_bank(f"evalset-{spk.lower()}", adapted.styles)
    if args.report_dir:
        args.report_dir.mkdir(parents=True, exist_ok=True)
        title = f"evalset speaker {spk}"
        write_report(args.report_dir / f"{spk}.html", title, scores, clones, refs, adapted.history)
    span = same - stranger
    return {
        "speaker": spk,
        "enroll_s": enrollment.speech_seconds,
        "stock": f"{best_stock.id} {before:.3f}",
        "encoded": encoded,
        "adapted": scores.similarity,
        "same": same,
        "stranger": stranger,
        "norm_stock": (before - stranger) / span,
        "norm_encoded": (encoded - stranger) / span,
        "norm_adapted": scores.normalized,
        "wer": scores.error_rate,
        "wer_stock": wer_stock,
        "dnsmos": scores.dnsmos_clone,
        "dnsmos_real": scores.dnsmos_real,
        "f0_st": scores.f0_error_semitones,
        "evals": len(adapted.history),
        "encode_s": encode_seconds,
        "clone_s": clone_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=3.0)
    parser.add_argument("--speakers", help="comma-separated subset, e.g. 1688,LJ")
    parser.add_argument("--report-dir", type=Path, help="write each speaker's HTML report here")
    parser.add_argument("--stock-wer-only", action="store_true", help="only the closest stock voice's WER")
    args = parser.parse_args()
    rows = list(csv.DictReader(open(EVALSET / "manifest.csv", encoding="utf-8")))
    speakers: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        speakers.setdefault(row["speaker"], []).append(row)
    wanted = args.speakers.split(",") if args.speakers else list(speakers)
    for stale in bank_dir().glob("evalset-*.npy") if bank_dir().exists() else []:
        stale.unlink()  # earlier runs' clones would let a speaker start from their own voice

    encoder = SpeakerEncoder(threads=2)
    engine = Engine.load()
    held_embeds = {}
    for spk, spk_rows in speakers.items():
        _, held = split(spk_rows)
        held_embeds[spk] = encoder.embed_many([read_audio(EVALSET / r["path"]) for r in held])

    results = []
    if args.stock_wer_only:
        for spk in wanted:
            log(str(stock_wer(spk, speakers[spk], engine, encoder)))
        return 0
    for spk in wanted:
        row = clone_speaker(spk, speakers[spk], held_embeds, engine, encoder, args)
        results.append(row)
        log(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    print(
        "| speaker | enroll s | best stock (sim) | encoding | adapted | same / stranger "
        "| normalized stock / enc / adapted | WER clone (stock) | DNSMOS clone (real) | F0 error st "
        "| evals | clone time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['speaker']} | {r['enroll_s']:.0f} | {r['stock']} | {r['encoded']:.3f} | {r['adapted']:.3f} "
            f"| {r['same']:.3f} / {r['stranger']:.3f} "
            f"| {r['norm_stock']:.2f} / {r['norm_encoded']:.2f} / {r['norm_adapted']:.2f} "
            f"| {r['wer']:.1%} ({r['wer_stock']:.1%}) "
            f"| {r['dnsmos']:.2f} ({r['dnsmos_real']:.2f}) | {r['f0_st']:+.1f} "
            f"| {r['evals']} | {r['encode_s']:.0f} s + {r['clone_s'] - r['encode_s']:.0f} s |"
        )
    means = {k: float(np.mean([r[k] for r in results])) for k in ("norm_stock", "norm_encoded", "norm_adapted", "wer")}
    print(
        f"\nmean normalized similarity: stock {means['norm_stock']:.2f}, encoding {means['norm_encoded']:.2f}, "
        f"adapted {means['norm_adapted']:.2f}; mean WER {means['wer']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
