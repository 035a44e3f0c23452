"""The speech engine: story text in, 24 kHz float32 audio chunks out.

`Engine.load` once, then `stream(text, voice)` yields chunks while a worker thread
stays a few seconds ahead: it phonemizes and synthesizes the next sentence while the
current one plays. The vocoder (95% of the cost) runs over short windows of frames
with context on each side and a cross-fade at each seam, so the first sound comes
after a fraction of a second and memory does not grow with the story's length.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .. import basemodel
from ..errors import HearMyLoveError, ModelError, TextError
from ..text.frontend import Frontend, Utterance
from . import adapted
from .config import EngineConfig
from .vocoders import student_build, vocoder_file
from .voices import DEFAULT_VOICE, DEFAULT_VOICES, TIMBRE_DIMS, Voice, VoiceBank

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 600  # the vocoder turns one 40 Hz feature frame into 600 samples
ENGINE_VERSION = "1"
"""Changes whenever the same text and voice would sound different: it keys the render cache."""

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class Features:
    """The synthesizer's output for one utterance: what the vocoder turns into sound."""

    asr: np.ndarray  # [1, 512, T]
    f0: np.ndarray  # [1, 2T]
    energy: np.ndarray  # [1, 2T]
    timbre: np.ndarray  # [1, 128]

    @property
    def frames(self) -> int:
        return int(self.asr.shape[2])


def session_options(config: EngineConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = _OPT_LEVELS[config.optimization]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spinning else "0")
    options.log_severity_level = 3
    return options


def ensure_models(config: EngineConfig) -> None:
    """The base models must be there: the speaker loads them, it never builds them."""
    if not (config.model_dir / basemodel.MANIFEST_FILE).exists():
        raise ModelError(
            f"no base models in {config.model_dir}; build them where there is memory: "
            f"voicelab build --model-dir {config.model_dir} (setup.sh and the image build do)"
        )


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        synthesizer: ort.InferenceSession,
        vocoder: ort.InferenceSession,
        vocoder_name: str = basemodel.VOCODER_FILE,
    ) -> None:
        self.config = config
        self.vocoder_name = vocoder_name
        """The vocoder's file: part of every render's cache key."""
        self._synthesizer = synthesizer
        self._vocoder = vocoder
        self._adapted: tuple[Path, ort.InferenceSession, list[ort.OrtValue]] | None = None
        self._adapted_lock = threading.Lock()
        model_dir = config.model_dir
        self.vocab: dict[str, int] = json.loads((model_dir / basemodel.VOCAB_FILE).read_text())["vocab"]
        self.voices = VoiceBank(model_dir / basemodel.VOICES_FILE)
        self.frontend = Frontend(
            english=config.english,
            sentence_pause=config.sentence_pause,
            paragraph_pause=config.paragraph_pause,
            max_chars=config.max_text_chars,
        )

    @classmethod
    def load(cls, config: EngineConfig | None = None) -> Engine:
        """Open the synthesizer and the configured vocoder, verified; nothing is built here."""
        config = config or EngineConfig()
        ensure_models(config)
        options = session_options(config)

        def session(path: Path) -> ort.InferenceSession:
            if not path.exists():
                raise ModelError(f"{path} is missing; rebuild: voicelab build --model-dir {config.model_dir}")
            return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

        vocoder = vocoder_file(config.model_dir, config.vocoder)
        synthesizer = session(config.model_dir / basemodel.SYNTH_FILE)
        return cls(config, synthesizer, session(vocoder), vocoder.name)

    # -- the two model calls -------------------------------------------------------

    def tokens(self, phonemes: str) -> np.ndarray:
        ids = [self.vocab[ch] for ch in phonemes if ch in self.vocab]
        return np.array([[0, *ids, 0]], dtype=np.int64)

    def features(self, phonemes: str, voice: Voice, speed: float = 1.0) -> Features:
        tokens = self.tokens(phonemes)
        style = voice.style_for(tokens.shape[1] - 2)
        asr, f0, energy = self._synthesizer.run(
            None, {"tokens": tokens, "style": style, "speed": np.array([speed], dtype=np.float32)}
        )
        return Features(asr, f0, energy, np.ascontiguousarray(style[:, :TIMBRE_DIMS]))

    def vocoder_for(self, voice: Voice | None) -> ort.InferenceSession:
        """The configured vocoder, or for a parent's adapted voice the student with that parent's
        head (one such session is kept: a speaker tells in one family voice at a time)."""
        if voice is None or voice.vocoder is None:
            return self._vocoder
        with self._adapted_lock:
            if self._adapted is None or self._adapted[0] != voice.vocoder:
                self._adapted = None  # free the last parent's session before opening the next
                build = student_build(self.config.model_dir)
                options = session_options(self.config)
                values = []
                for name, array in adapted.initializers(voice.vocoder, build.tensors).items():
                    values.append(ort.OrtValue.ortvalue_from_numpy(array))
                    options.add_initializer(name, values[-1])
                session = ort.InferenceSession(str(build.graph), options, providers=["CPUExecutionProvider"])
                self._adapted = (voice.vocoder, session, values)  # the values must outlive the session
            return self._adapted[1]

    def vocode_whole(self, features: Features, voice: Voice | None = None) -> np.ndarray:
        """All frames in one call: the reference that windowed vocoding approximates."""
        return self._run_vocoder(features, 0, features.frames, self.vocoder_for(voice))

    def _run_vocoder(self, f: Features, lo: int, hi: int, session: ort.InferenceSession | None = None) -> np.ndarray:
        (audio,) = (session or self._vocoder).run(
            None,
            {
                "asr": f.asr[:, :, lo:hi],
                "F0_pred": f.f0[:, 2 * lo : 2 * hi],
                "N_pred": f.energy[:, 2 * lo : 2 * hi],
                "style_timbre": f.timbre,
            },
        )
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def vocode(self, f: Features, voice: Voice | None = None) -> Iterator[np.ndarray]:
        """Vocode window by window; each seam is cross-faded over overlapping samples."""
        session = self.vocoder_for(voice)
        cfg = self.config
        total = f.frames
        context = cfg.context_frames
        fade = min(cfg.crossfade_samples, context * SAMPLES_PER_FRAME)
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32) if fade else None
        tail: np.ndarray | None = None
        start = 0
        size = cfg.first_window_frames
        while start < total:
            end = min(total, start + size)
            if total - end < cfg.first_window_frames // 2:
                end = total  # fold a sliver of a last window into this one
            lo, hi = max(0, start - context), min(total, end + context)
            audio = self._run_vocoder(f, lo, hi, session)
            last = end == total
            keep_to = (end - lo) * SAMPLES_PER_FRAME + (0 if last else fade)
            piece = audio[(start - lo) * SAMPLES_PER_FRAME : keep_to]
            if tail is not None and ramp is not None:
                piece = piece.copy()
                piece[:fade] = tail * (1.0 - ramp) + piece[:fade] * ramp
            if not last and fade:
                tail = piece[-fade:].copy()
                piece = piece[:-fade]
            yield piece
            start = end
            size = cfg.window_frames

    # -- public API ----------------------------------------------------------------

    def voice(self, voice: str | Voice | None = None, lang: str = "en") -> Voice:
        if isinstance(voice, Voice):
            return voice
        return self.voices.get(voice or DEFAULT_VOICES.get(lang, DEFAULT_VOICE))

    def stream(
        self, text: str, voice: str | Voice | None = None, lang: str = "auto", speed: float = 1.0
    ) -> Iterator[np.ndarray]:
        """Yield float32 chunks at 24 kHz. Bad text or voice fails here, before any audio."""
        if not 0.5 <= speed <= 2.0:
            raise TextError(f"speed {speed!r} is out of range; use 0.5 to 2.0")
        cleaned, language = self.frontend.prepare(text, lang)  # fail fast on bad input
        chosen = self.voice(voice, language)
        utterances = self.frontend.phonemize(cleaned, language)
        return _Prefetcher(self, utterances, chosen, speed).chunks()

    def synthesize(
        self, text: str, voice: str | Voice | None = None, lang: str = "auto", speed: float = 1.0
    ) -> np.ndarray:
        chunks = list(self.stream(text, voice, lang, speed))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def utterance_audio(self, utterance: Utterance, voice: Voice, speed: float) -> Iterator[np.ndarray]:
        yield from self.vocode(self.features(utterance.phonemes, voice, speed), voice)
        if utterance.pause:
            yield np.zeros(int(utterance.pause * SAMPLE_RATE), np.float32)


_DONE = object()


class _Prefetcher:
    """Runs synthesis in a worker thread a bounded number of chunks ahead of the reader."""

    def __init__(self, engine: Engine, utterances: Iterator[Utterance], voice: Voice, speed: float) -> None:
        cfg = engine.config
        window_seconds = cfg.window_frames * SAMPLES_PER_FRAME / SAMPLE_RATE
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(2, int(cfg.prefetch_seconds / window_seconds) + 1))
        self._stop = threading.Event()
        self._engine = engine
        self._utterances = utterances
        self._voice = voice
        self._speed = speed

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for utterance in self._utterances:
                for chunk in self._engine.utterance_audio(utterance, self._voice, self._speed):
                    if not self._put(chunk):
                        return
        except HearMyLoveError as exc:
            self._put(exc)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, who decides
            log.exception("synthesis failed")
            self._put(exc)
        finally:
            self._put(_DONE)

    def chunks(self) -> Iterator[np.ndarray]:
        worker = threading.Thread(target=self._work, name="hml-synth", daemon=True)
        worker.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            self._stop.set()
            worker.join(timeout=30)
