"""Vocoder variants side by side with Piper en_US-joe-medium, and the quality gates, in one run.

Variants: `int8` (Kokoro's dynamic int8, the teacher), `fp32` (dequantized), `qdq` (static
int8, calibrated), `student` (the distilled head after Kokoro's front, when its artefact is
there). For each: file size, vocoder cost per second of audio at 1 and 2 threads,
the whole engine's cost and its ratio to Piper; gates on 10 held-out clips, 8 English and 2 Mandarin (never the
calibration ones): Whisper WER on English (teacher + 1 point at most), CER on Mandarin (Whisper
base; teacher + 5 points at most: one character of two short sentences is 2.5), GE2E similarity to the teacher's
audio (>= 0.90), DNSMOS overall (within 0.2 of the teacher), clicks at streamed window seams
(energy jump at a seam no larger than the 99th percentile of jumps elsewhere, x1.5).
The machine is noisy: costs are medians of interleaved repeats; trust the ratios.

usage: .venv/bin/python bench/vocoder_variants.py [--repeats 3] [--weights DIR] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_vs_piper import load_piper, piper_chunks  # noqa: E402

from hearmylove.engine.config import EngineConfig  # noqa: E402
from hearmylove.engine.engine import SAMPLE_RATE, Engine, Features  # noqa: E402
from hearmylove.engine.vocoders import vocoder_file  # noqa: E402
from hearmylove.errors import ModelError  # noqa: E402
from voicelab.build import build  # noqa: E402
from voicelab.dnsmos import dnsmos  # noqa: E402
from voicelab.encoder import SpeakerEncoder, similarity  # noqa: E402
from voicelab.judge import cer_zh, transcribe, wer  # noqa: E402
from voicelab.quantize import dequantize  # noqa: E402

HELD_OUT = [
    ("en", "jf_tebukuro", "The old lighthouse keeper waved at every ship that passed in the night."),
    ("en", "jf_alpha", "Seven yellow ducks walked in a line to the pond behind the farm."),
    ("en", "jm_kumo", "When the snow melted, the little bear woke up hungry and went looking for honey."),
    ("en", "jf_nezumi", "Please remember to feed the goldfish before you leave for school."),
    ("zh", "jf_gongitsune", "月亮出来了，小兔子和妈妈一起坐在山坡上看星星。"),
    # More held-out clips (one Whisper word on 4 sentences was 2 WER points): never trained or calibrated on.
    ("en", "jf_gongitsune", "A gentle breeze carried the smell of rain across the sleepy valley."),
    ("en", "jm_kumo", "Can you count how many stars are shining above the barn tonight?"),
    ("en", "jf_alpha", "The brave little tugboat pulled the giant ship safely into the harbour."),
    ("en", "jf_tebukuro", "After lunch, we painted a rainbow with seven bright colours on the wall."),
    ("zh", "jm_kumo", "小刺猬背着红红的苹果，慢慢地走回了家。"),
]
COST_TEXT = "Once upon a time, a little fox found a shiny red apple under the old oak tree near the river."


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, f: Features, lo: int = 0, hi: int | None = None) -> np.ndarray:
    hi = f.frames if hi is None else hi
    feed = {"asr": f.asr[:, :, lo:hi], "F0_pred": f.f0[:, 2 * lo : 2 * hi], "N_pred": f.energy[:, 2 * lo : 2 * hi]}
    return sess.run(None, {**feed, "style_timbre": f.timbre})[0].reshape(-1)


def seam_jumps(engine: Engine, f: Features) -> tuple[float, float]:
    """Largest energy jump (dB, 5 ms frames) at a streamed window seam vs the 99th percentile elsewhere."""
    pieces = list(engine.vocode(f))
    audio = np.concatenate(pieces)
    seams = np.cumsum([len(p) for p in pieces])[:-1]
    hop = 120
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-8)
    jumps = np.abs(np.diff(db))
    at_seams = [jumps[s // hop - 1] for s in seams if 0 < s // hop - 1 < len(jumps)]
    return max(at_seams, default=0.0), float(np.percentile(jumps, 99))


def variant_paths(model_dir: Path, tmp: Path, weights: Path | None) -> dict[str, Path]:
    """Every variant's file; `weights` builds the student from another head (a candidate) first."""
    build(model_dir, which=["qdq"], progress=print)
    paths = {"int8": model_dir / "vocoder.onnx", "fp32": tmp / "vocoder-fp32.onnx"}
    paths["qdq"] = vocoder_file(model_dir, "qdq")
    onnx.save(dequantize(onnx.load(str(paths["int8"]))), str(paths["fp32"]))
    if weights is not None:
        build(model_dir, weights, ["student"], progress=print)
    try:
        paths["student"] = vocoder_file(model_dir, "student")
    except ModelError as exc:
        print(f"no student: {exc}")
    return paths


def plot(paths: dict[str, Path], engine: Engine, out: Path) -> None:
    """Spectrograms of one held-out clip by every vocoder, one above the other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lang, vid, text = HELD_OUT[2]
    utterance = next(iter(engine.frontend.utterances(text, lang)))
    f = engine.features(utterance.phonemes, engine.voice(vid, lang))
    fig, axes = plt.subplots(len(paths), 1, figsize=(10, 2.2 * len(paths)), sharex=True)
    for ax, (name, path) in zip(axes, paths.items(), strict=True):
        audio = run(session(path, 2), f)
        ax.specgram(audio, NFFT=1024, Fs=SAMPLE_RATE, noverlap=768, cmap="magma", vmin=-130)
        ax.set_ylabel(f"{name}\nHz")
        ax.set_ylim(0, 8000)
    axes[-1].set_xlabel(f"seconds ({vid}: {text})")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"spectrograms: {out}")


def gates(paths: dict[str, Path], engine: Engine, encoder: SpeakerEncoder) -> dict[str, dict[str, float]]:
    feats = []
    for lang, vid, text in HELD_OUT:
        utterance = next(iter(engine.frontend.utterances(text, lang)))
        feats.append((lang, text, engine.features(utterance.phonemes, engine.voice(vid, lang))))
    audio = {name: [run(session(p, 2), f) for _, _, f in feats] for name, p in paths.items()}
    out = {}
    for name in paths:
        engine._vocoder = session(paths[name], 2)
        pairs = zip(feats, audio[name], strict=True)
        pairs = list(pairs)
        errors = [wer(text, transcribe(a, SAMPLE_RATE, "en")) for (lang, text, _), a in pairs if lang == "en"]
        cers = [cer_zh(text, transcribe(a, SAMPLE_RATE, "zh")) for (lang, text, _), a in pairs if lang == "zh"]
        sims = [
            similarity(encoder.embed(a, SAMPLE_RATE), encoder.embed(t, SAMPLE_RATE))
            for a, t in zip(audio[name], audio["int8"], strict=True)
        ]
        seam = [seam_jumps(engine, f) for _, _, f in feats]
        out[name] = {
            "wer": float(np.mean(errors)),
            "cer_zh": float(np.mean(cers)),
            "ge2e_to_teacher": float(min(sims)),
            "dnsmos": float(np.mean([dnsmos(a, SAMPLE_RATE).ovrl for a in audio[name]])),
            "seam_db": max(s for s, _ in seam),
            "p99_db": float(np.median([p for _, p in seam])),
        }
    return out


def costs(paths: dict[str, Path], engine: Engine, threads: int, repeats: int) -> dict[str, float]:
    feats = [engine.features(u.phonemes, engine.voice(None, "en")) for u in engine.frontend.utterances(COST_TEXT, "en")]
    sessions = {name: session(p, threads) for name, p in paths.items()}
    seconds = sum(f.frames for f in feats) * 600 / SAMPLE_RATE
    timings: dict[str, list[float]] = {name: [] for name in [*paths, "piper"]}
    piper = load_piper(threads)
    for sess in sessions.values():
        [run(sess, f) for f in feats]  # warm-up
    list(piper_chunks(piper, COST_TEXT))
    for _ in range(repeats):  # interleaved, so a noisy moment hits every variant alike
        for name, sess in sessions.items():
            started = time.perf_counter()
            [run(sess, f) for f in feats]
            timings[name].append((time.perf_counter() - started) / seconds)
        started = time.perf_counter()
        samples = sum(len(c) for c in piper_chunks(piper, COST_TEXT))
        timings["piper"].append((time.perf_counter() - started) / (samples / piper.config.sample_rate))  # type: ignore[attr-defined]
    return {name: statistics.median(t) for name, t in timings.items()}


def engine_costs(paths: dict[str, Path], threads: int, repeats: int) -> dict[str, float]:
    """The whole engine (text to audio) per second of audio, with each vocoder."""
    out = {}
    for name, path in paths.items():
        engine = Engine.load(EngineConfig(threads=threads))
        engine._vocoder = session(path, threads)
        list(engine.stream(COST_TEXT, lang="en"))
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            samples = sum(len(c) for c in engine.stream(COST_TEXT, lang="en"))
            runs.append((time.perf_counter() - started) / (samples / SAMPLE_RATE))
        out[name] = statistics.median(runs)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", help="build the student from this head folder first (default: as built)")
    parser.add_argument("--plot", help="write spectrograms of a held-out clip by every vocoder to this PNG")
    args = parser.parse_args()
    engine = Engine.load(EngineConfig(threads=2, vocoder="int8"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = variant_paths(engine.config.model_dir, Path(tmp), Path(args.weights) if args.weights else None)
        if args.plot:
            plot(paths, engine, Path(args.plot))
        quality = gates(paths, engine, SpeakerEncoder(threads=2))
        per_threads = {t: costs(paths, engine, t, args.repeats) for t in (1, 2)}
        whole = {t: engine_costs(paths, t, args.repeats) for t in (1, 2)}
        sizes = {name: p.stat().st_size / 1e6 for name, p in paths.items()}
    teacher = quality["int8"]
    print(
        "| vocoder | size MB | vocoder s/audio-s 1 thr | 2 thr | engine s/audio-s 2 thr | engine / Piper 1 thr "
        "| 2 thr | WER en | CER zh | GE2E to teacher | DNSMOS | seam jump dB (p99 elsewhere) | gates |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in paths:
        q = quality[name]
        ok = (
            q["wer"] <= teacher["wer"] + 0.01
            and q["cer_zh"] <= teacher["cer_zh"] + 0.05
            and q["ge2e_to_teacher"] >= 0.90
            and abs(q["dnsmos"] - teacher["dnsmos"]) <= 0.2
            and q["seam_db"] <= 1.5 * q["p99_db"]
        )
        print(
            f"| {name} | {sizes[name]:.1f} | {per_threads[1][name]:.3f} | {per_threads[2][name]:.3f} "
            f"| {whole[2][name]:.3f} | {whole[1][name] / per_threads[1]['piper']:.1f}x "
            f"| {whole[2][name] / per_threads[2]['piper']:.1f}x | {q['wer']:.1%} | {q['cer_zh']:.1%} "
            f"| {q['ge2e_to_teacher']:.3f} "
            f"| {q['dnsmos']:.2f} | {q['seam_db']:.1f} ({q['p99_db']:.1f}) | {'met' if ok else 'NOT met'} |"
        )
    print(
        f"| Piper joe-medium | | {per_threads[1]['piper']:.3f} | {per_threads[2]['piper']:.3f} | | 1.0x | 1.0x ||||||"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
