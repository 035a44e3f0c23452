"""A probe of step 3 (not the studio's fine-tuning): does training the head on one reader's aligned
recordings raise the held-out copy's similarity to that reader? docs/adaptation.md has the figures.

    python -m voicelab.adapt.probe --speaker p226 --steps 1200 --head models/weights/student-head.pt

Why a probe first: copy-synthesis showed that the inputs already describe the recording and
the gap is the timbre; this checks that the gap moves when the head's weights do, before a
real loop (checkpoints, early stopping, guards, deltas) is built around it. Evaluation set
readers only, never shipped.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass

import numpy as np
import torch

from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import Engine
from hearmylove.paths import default_model_dir

from ..distill import losses
from ..encoder import SpeakerEncoder, similarity
from .align import Aligned, align, read_recording
from .measure import EVALSET, VOICE_FOR
from .signal import SAMPLE_RATE
from .vocoder import HEAD_WEIGHTS, StudentVocoder, load_vocoder

SEGMENT = 64  # 80 Hz frames per example (0.8 s)
HOP = 300


@dataclass
class Example:
    aligned: Aligned
    features: torch.Tensor  # [512, L] the frozen front's output
    source: torch.Tensor  # [300 L]
    timbre: torch.Tensor  # [128]
    target: torch.Tensor  # [300 L] the recording, at the copy's loudness


def prepare(vocoder: StudentVocoder, aligned: Aligned) -> Example:
    """Run the frozen front once; the target is the recording at the copy's RMS (the loss compares spectra)."""
    f = aligned.features
    with torch.no_grad():
        feats, source = vocoder.front(
            *(torch.from_numpy(np.ascontiguousarray(a)) for a in (f.asr, f.f0, f.energy, f.timbre))
        )
        copy = vocoder.head(feats, source, torch.from_numpy(f.timbre))[0].numpy()
    gain = np.sqrt((copy**2).mean()) / max(float(np.sqrt((aligned.audio**2).mean())), 1e-6)
    target = torch.from_numpy((aligned.audio * gain).astype(np.float32))
    return Example(aligned, feats[0], source.reshape(-1), torch.from_numpy(f.timbre[0]), target)


def batch(examples: list[Example], size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    picks = [examples[int(i)] for i in rng.integers(0, len(examples), size)]
    starts = [int(rng.integers(0, max(1, e.features.shape[1] - SEGMENT))) for e in picks]
    return (
        torch.stack([e.features[:, s : s + SEGMENT] for e, s in zip(picks, starts, strict=True)]),
        torch.stack([e.source[s * HOP : (s + SEGMENT) * HOP] for e, s in zip(picks, starts, strict=True)]),
        torch.stack([e.timbre for e in picks]),
        torch.stack([e.target[s * HOP : (s + SEGMENT) * HOP] for e, s in zip(picks, starts, strict=True)]),
    )


def held_out_similarity(vocoder: StudentVocoder, examples: list[Example], encoder: SpeakerEncoder) -> float:
    scores = []
    with torch.no_grad():
        for e in examples:
            copy = vocoder.head(e.features[None], e.source[None], e.timbre[None])[0].numpy()
            reference = encoder.embed(e.aligned.audio, SAMPLE_RATE)
            scores.append(similarity(encoder.embed(copy, SAMPLE_RATE), reference))
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speaker", required=True, help="an evaluation-set reader, e.g. p226")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seconds", type=float, default=60.0, help="enrollment: first utterances up to this")
    parser.add_argument("--head", default=str(HEAD_WEIGHTS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model_dir = default_model_dir()
    engine = Engine.load(EngineConfig(model_dir=model_dir, threads=1, vocoder="qdq"))
    vocoder, encoder = load_vocoder(model_dir, args.head), SpeakerEncoder()
    rows = sorted(
        (r for r in csv.DictReader(open(EVALSET / "manifest.csv", encoding="utf-8")) if r["speaker"] == args.speaker),
        key=lambda r: r["utt_id"],
    )
    held, enroll, total = rows[-2:], [], 0.0
    for r in rows[:-2]:
        if total >= args.seconds:
            break
        enroll.append(r)
        total += float(r["seconds"])
    voice = engine.voice(VOICE_FOR[rows[0]["gender"]])

    def example(r: dict[str, str]) -> Example:
        audio, rate = read_recording(EVALSET / r["path"])
        text = r["transcript"].lower() if r["language"] == "en" else r["transcript"]
        return prepare(vocoder, align(engine, audio, rate, text, r["language"], voice))

    train, test = [example(r) for r in enroll], [example(r) for r in held]
    print(f"{args.speaker}: {len(train)} enrollment utterances ({total:.0f} s), {len(test)} held out")
    print(f"step 0: held-out copy similarity {held_out_similarity(vocoder, test, encoder):.3f}", flush=True)
    params = vocoder.trainable(("head",))
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    rng, started = np.random.default_rng(0), time.monotonic()
    for step in range(1, args.steps + 1):
        vocoder.head.train()
        out = losses(vocoder.head, batch(train, 4, rng))
        loss = out["sc"] + out["mag"] + out["mel"]  # no complex term: a recording's phase is not the source's
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 200 == 0:
            vocoder.head.eval()
            sim = held_out_similarity(vocoder, test, encoder)
            seconds = time.monotonic() - started
            print(
                f"step {step}: loss {loss.item():.3f}, held-out copy similarity {sim:.3f}, {seconds:.0f} s", flush=True
            )


if __name__ == "__main__":
    main()
