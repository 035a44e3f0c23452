"""The text frontend: what a parent types becomes phonemes the model can say."""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearmylove.errors import LanguageError, TextError
from hearmylove.text import normalize
from hearmylove.text.frontend import Frontend, detect_language
from hearmylove.text.sentences import MAX_TOKENS, fit_phonemes, sentences

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return Frontend()


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("She paid $12.50.", "She paid twelve dollars and fifty cents."),
        ("It costs £1.", "It costs one pound."),
        ("We met on 5/3/2024.", "We met on May third, twenty twenty-four."),
        ("Wake up at 7:05 am", "Wake up at seven oh five A M"),
        ("In 1998 there were 1,200 sheep.", "In nineteen ninety-eight there were one thousand two hundred sheep."),
        ("Dr. Lee and Mrs. Wu.", "doctor Lee and missus Wu."),
        ("The 3rd pig ate 25% of it.", "The third pig ate twenty-five percent of it."),
        ("pi is 3.14", "pi is three point one four"),
    ],
)
def test_english_numbers_money_dates_and_abbreviations_are_spelled_out(written: str, spoken: str) -> None:
    assert normalize.english(normalize.clean(written)) == spoken


def test_mandarin_numbers_and_money_become_characters() -> None:
    assert normalize.mandarin("我有3个苹果，花了¥12.5。") == "我有三个苹果，花了十二点五元。"


def test_emoji_controls_and_zero_width_characters_are_dropped() -> None:
    assert normalize.clean("Good\u200b night 🌙✨\x07 little one…") == "Good night little one…"


def test_curly_quotes_and_ellipses_are_unified() -> None:
    assert normalize.clean("\u2018Hi,\u2019 she said.... \u201cBye\u201d") == "'Hi,' she said… \u201cBye\u201d"


def test_sentences_keep_order_and_mark_paragraph_ends() -> None:
    got = list(sentences("One. Two! Three?\n\nFour… Five.\n六。七！"))
    assert [s.text for s in got] == ["One.", "Two!", "Three?", "Four…", "Five.", "六。", "七！"]
    assert [s.paragraph_end for s in got] == [False, False, True, False, False, False, True]


def test_long_phoneme_runs_are_cut_at_clauses_then_words_within_the_limit() -> None:
    clause = "ðə lˈɪTᵊl fˈɑks ɹˈæn ə lˈɔŋ wˈA,"
    pieces = fit_phonemes(" ".join([clause] * 40), limit=120)
    assert all(len(p) <= 120 for p in pieces)
    assert all(p.endswith(",") for p in pieces)  # cut at the clause marks, not mid-clause
    assert " ".join(pieces).replace("  ", " ") == " ".join([clause] * 40)
    no_punct = " ".join(["wˈɜɹd"] * 400)
    assert all(len(p) <= MAX_TOKENS for p in fit_phonemes(no_punct, limit=MAX_TOKENS))
    assert all(len(p) <= 50 for p in fit_phonemes("x" * 300, limit=50))


def test_language_is_detected_per_story() -> None:
    assert detect_language("Once upon a time there was a fox.") == "en"
    assert detect_language("从前有一只小狐狸，它很喜欢 apples。") == "zh"


def test_english_words_inside_chinese_are_read_as_english(frontend: Frontend) -> None:
    (utterance,) = list(frontend.utterances("我们明天去 Disneyland 玩。", "zh"))
    assert "dɪsn" in utterance.phonemes and "↗" in utterance.phonemes


def test_unsupported_language_names_the_choices(frontend: Frontend) -> None:
    with pytest.raises(LanguageError, match="'fr' is not supported; use one of en, zh, auto"):
        list(frontend.utterances("Bonjour", "fr"))


@pytest.mark.parametrize("text", ["", "   \n\n ", "🎉🎉🎉", "\u200b\u200b"])
def test_empty_or_unspeakable_text_is_refused(frontend: Frontend, text: str) -> None:
    with pytest.raises(TextError, match="empty|nothing speakable"):
        frontend.prepare(text)


def test_binary_garbage_is_refused_as_binary(frontend: Frontend) -> None:
    garbage = os.urandom(4096).decode("utf-8", errors="replace")
    with pytest.raises(TextError, match="binary data"):
        frontend.prepare(garbage)


def test_oversize_text_is_refused_before_any_work() -> None:
    with pytest.raises(TextError, match="1,000,000 characters; the limit is 200,000"):
        Frontend(max_chars=200_000).prepare("a" * 1_000_000)


def test_other_scripts_are_skipped_not_babbled(frontend: Frontend) -> None:
    (utterance,) = list(frontend.utterances("Café, привет, こんにちは, hello.", "en"))
    assert "kˈæf" in utterance.phonemes and "həlˈO" in utterance.phonemes
    assert all(ord(c) < 0x400 or c in "ᵊ" for c in utterance.phonemes)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_utterances_within_the_limit_or_a_clear_error(text: str) -> None:
    frontend = _shared_frontend()
    try:
        for utterance in frontend.utterances(text):
            assert 0 < len(utterance.phonemes) <= MAX_TOKENS
    except TextError as exc:
        assert str(exc)


_FRONTEND: list[Frontend] = []


def _shared_frontend() -> Frontend:
    if not _FRONTEND:
        _FRONTEND.append(Frontend())
    return _FRONTEND[0]


def test_phonemizer_word_counts_stay_off_the_console_and_its_other_warnings_do_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    list(_shared_frontend().utterances("小狐狸说：“你好！” He said, “It's 7:30.”", "auto"))
    phonemizer_log = logging.getLogger("phonemizer")
    with caplog.at_level(logging.WARNING, logger="phonemizer"):
        phonemizer_log.warning("words count mismatch on %s%% of the lines (%s/%s)", 200.0, 2, 1)
        phonemizer_log.warning("espeak-ng is missing")
    assert [r.getMessage() for r in caplog.records] == ["espeak-ng is missing"]
