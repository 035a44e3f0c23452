"""Cloning a parent's voice into a Kokoro style vector, the two ways of the seed papers.

Speaker encoding (seconds): embed the parent, embed what every voice in the bank sounds
like, blend the closest voices by similarity. Speaker adaptation (minutes): CMA-ES moves
the blend so that synthesized speech sounds like the parent to the speaker encoder, with
the parent's pitch and speaking rate, and is still understood by Whisper.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hearmylove.basemodel import VOICES_FILE
from hearmylove.durable import fsync
from hearmylove.engine.engine import Engine
from hearmylove.engine.voices import STYLE_DIM, TIMBRE_DIMS, Voice, VoiceBank
from hearmylove.errors import VoiceError
from hearmylove.paths import data_dir

from .encoder import SpeakerEncoder, preprocess, similarity
from .enroll import Enrollment
from .judge import cer_zh, transcribe, wer

SAMPLE_RATE = 24_000
# What candidates say while being scored: short, varied, and never the held-out texts.
# Each generation hears the next pair, so the voice fits the parent, not two sentences.
ADAPT_TEXTS = {
    "en": [
        "The little rabbit hopped over the wet grass.",
        "Good night, my love. I will call you tomorrow.",
        "Look, a red balloon is floating over the houses!",
        "Grandpa tells the best stories about the sea.",
        "Can you count all the stars in the sky tonight?",
        "We baked cookies and gave some to the neighbours.",
        "The puppy is sleeping under the kitchen table.",
        "Brush your teeth, then choose a book to read.",
    ],
    "zh": [
        "小兔子跳过湿漉漉的草地去找妈妈。",
        "晚安，我的宝贝，明天我再给你打电话。",
        "看，一个红气球飘过了屋顶！",
        "爷爷讲的大海的故事最好听。",
        "你能数清天上所有的星星吗？",
        "我们烤了饼干，还分给了邻居。",
        "小狗在厨房的桌子底下睡觉。",
        "刷完牙，再挑一本书来读吧。",
    ],
}
CHECK_EVERY = 5  # generations between scoring the search's mean on every sentence
CHECK_TEXTS = {
    "en": "The brave little fox crossed the river and brought three red apples home to his sister.",
    "zh": "从前有一只勇敢的小狐狸，它过了河，把苹果带回了家。",
}
MAX_CHECK_ERROR = {"en": 0.10, "zh": 0.25}  # WER / CER the accepted voice must stay under
RATE_WEIGHT = 1.0  # prosody loss per doubling off the parent's speaking rate (per octave of F0: 1.0)
FRAMES_PER_SECOND = 40
BANK_TEXT = "Once upon a time, in a small house by the sea, there lived a girl who loved to sing."
Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"voicelab: {message}", file=sys.stderr, flush=True)


@dataclass
class BankVoice:
    id: str
    styles: np.ndarray = field(repr=False)
    embedding: np.ndarray = field(repr=False)


class Synth:
    """Renders fixed texts with any style matrix; texts are phonemized once."""

    def __init__(self, engine: Engine, texts: list[str], lang: str) -> None:
        self.engine = engine
        self.texts = texts
        self.phonemes = [u.phonemes for t in texts for u in engine.frontend.utterances(t, lang)]
        self.letters = sum(len("".join(ch for ch in t if ch.isalnum())) for t in texts)

    def render(self, styles: np.ndarray) -> list[np.ndarray]:
        voice = Voice("candidate", styles)
        return [self.engine.vocode_whole(self.engine.features(p, voice)) for p in self.phonemes]


def stock_bank(engine: Engine) -> dict[str, np.ndarray]:
    bank = VoiceBank(engine.config.model_dir / VOICES_FILE)
    return {vid: bank.get(vid).styles for vid in bank.ids}


def bank_dir() -> Path:
    """Voices cloned before: they join the bank the next clone starts from (VOICELAB_BANK moves it)."""
    explicit = os.environ.get("VOICELAB_BANK")
    return Path(explicit) if explicit else data_dir() / "studio" / "bank"


def load_bank(engine: Engine, encoder: SpeakerEncoder, progress: Progress = _stderr) -> list[BankVoice]:
    """Stock voices plus earlier clones, each with the embedding of its own speech (cached)."""
    styles = stock_bank(engine)
    folder = bank_dir()
    for path in sorted(folder.glob("*.npy")) if folder.exists() else []:
        styles[path.stem] = np.load(path, allow_pickle=False)
    cache_path = data_dir() / "studio" / "bank-embeddings.npz"
    cache = dict(np.load(cache_path)) if cache_path.exists() else {}
    synth = Synth(engine, [BANK_TEXT], "en")
    voices, changed = [], False
    for vid, rows in styles.items():
        key = hashlib.sha256(rows.astype(np.float32).tobytes()).hexdigest()[:16]
        if key not in cache:
            progress(f"listening to bank voice {vid}")
            cache[key] = encoder.embed(np.concatenate(synth.render(rows)), SAMPLE_RATE)
            changed = True
        voices.append(BankVoice(vid, rows.astype(np.float32), cache[key]))
    if changed:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_path.with_name("bank-embeddings.partial.npz"), **cache)
        cache_path.with_name("bank-embeddings.partial.npz").replace(cache_path)
    return voices


def add_to_bank(voice_id: str, styles: np.ndarray) -> Path:
    folder = bank_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{voice_id}.npy"
    np.save(path, styles.astype(np.float32))
    return path


@dataclass
class Encoding:
    styles: np.ndarray = field(repr=False)
    weights: dict[str, float]
    similarities: dict[str, float]
    """Parent's embedding against each bank voice's own speech."""


def nearest_stock(enrollment: Enrollment, bank: list[BankVoice], engine: Engine) -> BankVoice:
    stock = set(stock_bank(engine))
    return max((v for v in bank if v.id in stock), key=lambda v: similarity(enrollment.embedding, v.embedding))


def encode(enrollment: Enrollment, bank: list[BankVoice], top: int = 3, temperature: float = 0.03) -> Encoding:
    """Blend the `top` closest bank voices, weighted by a softmax of their similarity."""
    sims = {v.id: similarity(enrollment.embedding, v.embedding) for v in bank}
    ranked = sorted(bank, key=lambda v: sims[v.id], reverse=True)[:top]
    logits = np.array([sims[v.id] for v in ranked]) / temperature
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    rows = min(len(v.styles) for v in ranked)
    styles = sum(w * v.styles[:rows] for w, v in zip(weights, ranked, strict=True))
    return Encoding(
        np.asarray(styles, np.float32), {v.id: float(w) for v, w in zip(ranked, weights, strict=True)}, sims
    )


@dataclass
class Step:
    evaluation: int
    seconds: float
    similarity: float
    loss: float
    f0_median: float | None


@dataclass
class Adaptation:
    styles: np.ndarray = field(repr=False)
    history: list[Step]
    start_similarity: float
    similarity: float
    check_error: float
    check_text: str
    heard: str
    stopped: str


class Objective:
    """Dissimilarity to the parent of a candidate timbre offset.

    Only the decoder hears the timbre half of the style, so the synthesizer's features are
    computed once and each candidate costs one vocoder run plus an embedding.
    """

    def __init__(
        self, enrollment: Enrollment, start: np.ndarray, scale: np.ndarray, synth: Synth, encoder: SpeakerEncoder
    ) -> None:
        self.enrollment = enrollment
        self.start = start
        self.scale = scale[:TIMBRE_DIMS]
        self.encoder = encoder
        self.synth = synth
        self.engine = synth.engine
        voice = Voice("start", start)
        self.features = [self.engine.features(p, voice) for p in synth.phonemes]

    def styles(self, x: np.ndarray) -> np.ndarray:
        styles = self.start.copy()
        styles[:, :TIMBRE_DIMS] += x * self.scale
        return styles.astype(np.float32)

    def __call__(self, x: np.ndarray, group: int | None = None) -> tuple[float, float, float | None]:
        """Score on the sentence pair of `group`, or on every sentence when None."""
        offset = (np.asarray(x) * self.scale).astype(np.float32)
        feats = self.features
        if group is not None:
            first = (2 * group) % len(feats)
            feats = [feats[first], feats[(first + 1) % len(feats)]]
        audio = np.concatenate([self.engine.vocode_whole(replace(f, timbre=f.timbre + offset)) for f in feats])
        sim = similarity(self.encoder.embed_prepared(preprocess(audio, SAMPLE_RATE)), self.enrollment.embedding)
        return -sim, sim, None


def _prosody_loss(f0: np.ndarray, seconds: float, letters: int, enrollment: Enrollment) -> float:
    loss = 0.0
    target, rate = enrollment.pitch, enrollment.letters_per_second
    voiced = f0[f0 > 50]
    if target and len(voiced) > 10:
        p10, median, p90 = np.percentile(voiced, [10, 50, 90])
        loss += abs(np.log2(median / target.median_hz))
        loss += 0.5 * abs(np.log2((p90 / p10) / (target.p90_hz / target.p10_hz)))
    if rate:
        loss += RATE_WEIGHT * abs(np.log2(letters / seconds / rate))
    return float(loss)


def fit_prosody(
    enrollment: Enrollment, start: np.ndarray, scale: np.ndarray, synth: Synth, evaluations: int = 200
) -> np.ndarray:
    """Move the prosody half so the predicted pitch and durations match the parent (seconds: no vocoder)."""
    import cma

    if enrollment.pitch is None and enrollment.letters_per_second is None:
        return start
    engine = synth.engine
    step = scale[TIMBRE_DIMS:]

    def styled(x: np.ndarray) -> np.ndarray:
        styles = start.copy()
        styles[:, TIMBRE_DIMS:] += np.asarray(x) * step
        return styles.astype(np.float32)

    def loss(x: np.ndarray) -> float:
        feats = [engine.features(p, Voice("prosody", styled(x))) for p in synth.phonemes]
        f0 = np.concatenate([f.f0.ravel() for f in feats])
        seconds = sum(f.frames for f in feats) / FRAMES_PER_SECOND
        return _prosody_loss(f0, seconds, synth.letters, enrollment) + 0.01 * float(np.mean(np.square(x)))

    options = {"popsize": 10, "seed": 2, "CMA_diagonal": True, "verbose": -9, "bounds": [-3, 3]}
    es = cma.CMAEvolutionStrategy(np.zeros(STYLE_DIM - TIMBRE_DIMS), 0.5, options)
    es.optimize(loss, iterations=max(1, evaluations // es.popsize))
    best = es.result.xbest
    return styled(best) if best is not None and loss(best) < loss(np.zeros_like(best)) else start


def style_spread(bank: list[BankVoice]) -> np.ndarray:
    """How far each style dimension varies between voices: CMA-ES steps in these units."""
    means = np.stack([v.styles.mean(axis=0) for v in bank])
    return np.maximum(means.std(axis=0), 1e-3).astype(np.float32)


def _inputs_digest(enrollment: Enrollment, start: np.ndarray) -> str:
    h = hashlib.sha256(enrollment.embedding.tobytes())
    h.update(start.tobytes())
    return h.hexdigest()[:16]


class Checkpoint:
    """The optimiser's whole state after each generation, so a stopped clone resumes."""

    def __init__(self, path: Path, digest: str) -> None:
        self.path = path
        self.digest = digest

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = pickle.loads(self.path.read_bytes())
        return state if state.get("digest") == self.digest else None

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        tmp.write_bytes(pickle.dumps({**state, "digest": self.digest}))
        fsync(tmp)
        tmp.replace(self.path)


def adapt(
    enrollment: Enrollment,
    start: np.ndarray,
    bank: list[BankVoice],
    engine: Engine,
    encoder: SpeakerEncoder,
    lang: str,
    budget_seconds: float,
    work_dir: Path,
    max_evaluations: int = 2000,
    patience: int = 3,
    progress: Progress = _stderr,
    fallback: np.ndarray | None = None,
) -> Adaptation:
    """Fit prosody to the parent's pitch and rate, then CMA-ES over a timbre offset for every row; resumable."""
    import cma

    synth = Synth(engine, ADAPT_TEXTS[lang], lang)
    scale = style_spread(bank)
    start = fit_prosody(enrollment, start, scale, Synth(engine, ADAPT_TEXTS[lang][:3], lang))  # ~30 s
    objective = Objective(enrollment, start, scale, synth, encoder)
    checkpoint = Checkpoint(work_dir / "adapt.pickle", _inputs_digest(enrollment, start))
    state = checkpoint.load()
    if state:
        es, history, checks, recent = state["es"], state["history"], state["checks"], state["recent"]
        progress(f"resuming adaptation at evaluation {len(history)}")
    else:
        options = {"popsize": 10, "seed": 1, "CMA_diagonal": True, "verbose": -9, "bounds": [-3, 3]}
        es = cma.CMAEvolutionStrategy(np.zeros(TIMBRE_DIMS), 0.5, options)
        loss, sim, f0 = objective(np.zeros(TIMBRE_DIMS))
        history, checks, recent = [Step(1, 0.0, sim, loss, f0)], [(1, sim)], []
    start_sim = history[0].similarity
    began = time.monotonic() - history[-1].seconds
    stopped = "evaluation limit"
    while len(history) < max_evaluations:
        per_eval = history[-1].seconds / max(len(history) - 1, 1)
        if time.monotonic() - began + per_eval * es.popsize > budget_seconds:
            stopped = "time budget"
            break
        generation = (len(history) - 1) // es.popsize
        xs = es.ask()
        losses = []
        for x in xs:
            loss, sim, f0 = objective(np.asarray(x), generation)
            losses.append(loss)
            history.append(Step(len(history) + 1, time.monotonic() - began, sim, loss, f0))
        es.tell(xs, losses)
        recent = [*recent, np.asarray(xs[int(np.argmin(losses))])][-3:]
        if generation % CHECK_EVERY == CHECK_EVERY - 1:
            checks.append((len(history), objective(np.asarray(es.mean))[1]))
        checkpoint.save({"es": es, "history": history, "checks": checks, "recent": recent})
        progress(
            f"adapting {len(history)} evaluations, {history[-1].seconds:.0f}/{budget_seconds:.0f} s, "
            f"similarity on every sentence {checks[-1][1]:.3f} (start {start_sim:.3f})"
        )
        if _stalled(checks, patience):
            stopped = f"no progress in {patience * CHECK_EVERY} generations"
            break
    candidates = [np.asarray(es.mean), *recent, np.zeros(TIMBRE_DIMS)]
    return _accept(candidates, objective, engine, lang, history, start_sim, stopped, progress, fallback)


def _stalled(checks: list[tuple[int, float]], patience: int) -> bool:
    """True when the last `patience` checks of the mean did not beat the best one before them."""
    if len(checks) <= patience:
        return False
    return max(s for _, s in checks[-patience:]) <= max(s for _, s in checks[:-patience]) + 0.002


def intelligibility(engine: Engine, styles: np.ndarray, lang: str, voice: Voice | None = None) -> tuple[float, str]:
    """Whisper's error on the check sentence in `styles` (or in `voice`, with its own vocoder)."""
    audio = engine.synthesize(CHECK_TEXTS[lang], voice or Voice("check", styles), lang)
    heard = transcribe(audio, SAMPLE_RATE, lang)
    error = wer(CHECK_TEXTS[lang], heard) if lang == "en" else cer_zh(CHECK_TEXTS[lang], heard)
    return error, heard


def _accept(
    candidates: list[np.ndarray],
    objective: Objective,
    engine: Engine,
    lang: str,
    history: list[Step],
    start_sim: float,
    stopped: str,
    progress: Progress,
    fallback: np.ndarray | None = None,
) -> Adaptation:
    """The candidate most like the parent on every sentence that Whisper still understands.

    If none is (Whisper tiny.en mishears a word more often than one would think), the
    `fallback` voice, a stock one, is used rather than failing a parent's whole session.
    """
    scored = sorted(((objective(x)[1], i) for i, x in enumerate(candidates)), reverse=True)
    for sim, i in scored:
        styles = objective.styles(candidates[i])
        error, heard = intelligibility(engine, styles, lang)
        if error <= MAX_CHECK_ERROR[lang]:
            return Adaptation(styles, history, start_sim, sim, error, CHECK_TEXTS[lang], heard, stopped)
        progress(f"a candidate scored {sim:.3f} but Whisper heard {heard!r}: rejected")
    if fallback is not None:
        error, heard = intelligibility(engine, fallback, lang)
        if error <= MAX_CHECK_ERROR[lang]:
            progress("no adapted voice was clear enough: the pack carries the closest stock voice instead")
            audio = np.concatenate(objective.synth.render(fallback))
            sim = similarity(objective.encoder.embed(audio, SAMPLE_RATE), objective.enrollment.embedding)
            return Adaptation(fallback, history, start_sim, sim, error, CHECK_TEXTS[lang], heard, stopped)
    raise VoiceError("no candidate voice stayed intelligible, not even the encoded start; check the recordings")
