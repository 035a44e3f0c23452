"""Whisper listens to the engine: the stories must be understood, not just sound like speech."""

from __future__ import annotations

import numpy as np
import pytest

from hearmylove.engine.engine import SAMPLE_RATE, Engine
from voicelab.judge import cer_zh, transcribe, wer

ENGLISH = [
    "Once upon a time, in a little house by the sea, there lived a girl named Mia.",
    "She had three cats, and every night they listened to the waves.",
    "The little rabbit hopped across the garden to find a carrot for his mother.",
    "On May 3rd, Grandpa paid $12.50 for 2 kites.",
]
MANDARIN = [
    "从前，有一只小狐狸，它住在森林里。",
    "每天早上，它都会跑到小河边和朋友打招呼。",
    "晚上，星星一颗一颗地出来了。",
]


def test_english_story_is_understood_by_whisper(engine: Engine) -> None:
    errors = []
    for sentence in ENGLISH:
        audio = np.concatenate(list(engine.stream(sentence, lang="en")))
        heard = transcribe(audio, SAMPLE_RATE, "en")
        errors.append(wer(engine.frontend.prepare(sentence, "en")[0], heard))
    # Whisper writes "$12.50" where we said "twelve dollars and fifty cents": score spoken forms.
    assert np.mean(errors[:3]) <= 0.10, errors
    assert errors[3] <= 0.3, errors  # measured 0.2 ("3rd" heard as "3", "2" as "two"); one word of slack


def test_spelled_out_numbers_are_heard_as_numbers(engine: Engine) -> None:
    audio = engine.synthesize("We counted 25 stars.", lang="en")
    heard = transcribe(audio, SAMPLE_RATE, "en").lower()
    assert "25" in heard or "twenty-five" in heard or "twenty five" in heard, heard


@pytest.mark.parametrize("lang", ["zh", "auto"])
def test_mandarin_story_is_understood_by_multilingual_whisper(engine: Engine, lang: str) -> None:
    audio = engine.synthesize("".join(MANDARIN), lang=lang)
    heard = transcribe(audio, SAMPLE_RATE, "zh")
    # Whisper base itself reaches CER 0.13 on real Mandarin speech (AISHELL): allow its noise.
    assert cer_zh("".join(MANDARIN), heard) <= 0.30, heard
