"""Turn what a parent types into words a G2P can read.

Stories arrive from phones: curly quotes, emoji, pasted web text, prices and dates.
Numbers and symbols are spelled out here, once, so that every G2P back end (misaki or
espeak-ng) reads them the same way; characters nobody can pronounce are dropped
instead of reaching the model as garbage.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words as _num2words

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAN_RE = re.compile(f"[{_HAN}]")

# Abbreviations that end in a period but not a sentence.
_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miz",
    "dr": "doctor",
    "prof": "professor",
    "st": "saint",
    "jr": "junior",
    "sr": "senior",
    "mt": "mount",
    "vs": "versus",
    "etc": "et cetera",
    "e.g": "for example",
    "i.e": "that is",
    "approx": "approximately",
    "no": "number",
    "ave": "avenue",
    "rd": "road",
    "capt": "captain",
    "gen": "general",
}
_ABBREV_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")\.(?=\s|$|,)",
    re.IGNORECASE,
)
_MONTHS = ("January February March April May June July August September October November December").split()
_CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent"), "¥": ("yuan", "fen")}
_PUNCT_MAP = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u2032": "'",
    "`": "'",
    "\u201c": "\u201c",
    "\u201d": "\u201d",
    "\u201e": "\u201c",
    "\u00ab": "\u201c",
    "\u00bb": "\u201d",
    "\u2013": ", ",
    "\u2014": " \u2014 ",
    "\u2015": " \u2014 ",
    "\u00a0": " ",
    "\u3000": " ",
    "&": " and ",
    "+": " plus ",
    "=": " equals ",
    "@": " at ",
}


def num2words(n: int, **kwargs: str) -> str:
    """num2words without its commas, which the model would read as pauses."""
    return str(_num2words(n, **kwargs)).replace(",", "")


def _plural(word: str, n: int) -> str:
    if n == 1 or word in ("yuan", "fen"):
        return word
    return "pennies" if word == "penny" else word + "s"


def _money(match: re.Match[str]) -> str:
    symbol, whole, frac = match.group(1), match.group(2).replace(",", ""), match.group(3)
    major, minor = _CURRENCIES[symbol]
    n = int(whole)
    words = f"{num2words(n)} {_plural(major, n)}"
    if frac:
        cents = int((frac + "0")[:2])
        if cents:
            words += f" and {num2words(cents)} {_plural(minor, cents)}"
    return words


def _say_number(text: str) -> str:
    grouped = "," in text
    text = text.replace(",", "")
    if "." in text:
        whole, frac = text.split(".", 1)
        return f"{num2words(int(whole or 0))} point {' '.join(num2words(int(d)) for d in frac)}"
    n = int(text)
    if not grouped and 1100 <= n <= 2099 and not (2000 <= n <= 2009):
        return num2words(n, to="year")
    return num2words(n)


def _date(match: re.Match[str]) -> str:
    month, day, year = int(match.group(1)), int(match.group(2)), match.group(3)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return match.group(0)
    out = f"{_MONTHS[month - 1]} {num2words(day, to='ordinal')}"
    if year:
        out += ", " + _say_number(year)
    return out


def _time(match: re.Match[str]) -> str:
    hour, minute, ampm = int(match.group(1)), int(match.group(2)), (match.group(3) or "").lower()
    if hour > 24 or minute > 59:
        return match.group(0)
    spoken = num2words(hour)
    if minute:
        spoken += " " + (f"oh {num2words(minute)}" if minute < 10 else num2words(minute))
    elif not ampm:
        spoken += " o'clock"
    if ampm:
        spoken += " " + " ".join(ampm.replace(".", "").upper())
    return spoken


_CJK_PUNCT = "，。！？、；：“”‘’（）《》…—"


def junk_share(text: str) -> float:
    """Share of characters that no text editor would produce: control codes, replacement
    characters, private-use and unassigned code points. High for binary data."""
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return 0.0
    bad = sum(1 for ch in visible if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cn", "Cs"))
    return bad / len(visible)


def speakable_script(text: str) -> str:
    """Keep what the engine can read: ASCII (accents folded: café -> cafe), Han, CJK
    punctuation. Other scripts (Cyrillic, kana, ...) become spaces instead of babble."""
    folded = unicodedata.normalize("NFKD", text)
    out = []
    for ch in folded:
        if ord(ch) < 128 or HAN_RE.match(ch) or ch in _CJK_PUNCT:
            out.append(ch)
        elif unicodedata.category(ch) != "Mn":
            out.append(" ")
    return unicodedata.normalize("NFC", re.sub(r"[ \t]+", " ", "".join(out))).strip()


def clean(text: str) -> str:
    """Drop what cannot be spoken in any language: controls, emoji, private-use and
    unassigned code points, stray symbols. Keeps letters, digits, punctuation, spaces."""
    text = unicodedata.normalize("NFC", text)
    out = []
    for ch in text:
        if ch in "\n\t":
            out.append(ch)
            continue
        if ch in _PUNCT_MAP:
            out.append(_PUNCT_MAP[ch])
            continue
        cat = unicodedata.category(ch)
        if cat[0] in "LN" or cat[0] == "P" or ch == " " or ch in "$£€¥%":
            out.append(ch)
        elif cat == "Zs":
            out.append(" ")
        # everything else (So emoji, Sk, Cc, Cf zero-width, Co, Cn, Cs) is dropped
    text = "".join(out)
    text = re.sub(r"\.{3,}|…", "… ", text)
    text = re.sub(r"([!?.,;:])\1+", r"\1", text)
    text = re.sub(r"[ \t]+", " ", text)
    return text.strip()


def english(text: str) -> str:
    """Spell out numbers, money, dates, times and abbreviations in English words."""
    text = _ABBREV_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = re.sub(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{4}))?\b", _date, text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\s*([ap]\.?m\.?)?(?=\W|$)", _time, text, flags=re.IGNORECASE)
    text = re.sub(r"([$£€¥])\s?(\d[\d,]*)(?:\.(\d+))?", _money, text)
    text = re.sub(r"(\d[\d,]*(?:\.\d+)?)\s?%", lambda m: _say_number(m.group(1)) + " percent", text)
    text = re.sub(
        r"\b(\d+)(st|nd|rd|th)\b", lambda m: num2words(int(m.group(1)), to="ordinal"), text, flags=re.IGNORECASE
    )
    text = re.sub(r"\d+(?:,\d{3})*(?:\.\d+)?", lambda m: _say_number(m.group(0)), text)
    text = re.sub(r"[$£€¥%]", " ", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def mandarin(text: str) -> str:
    """Spell out numbers, money and percentages in Chinese characters."""
    import cn2an

    text = re.sub(r"¥\s?(\d+(?:\.\d+)?)", r"\1元", text)
    text = re.sub(r"\$\s?(\d+(?:\.\d+)?)", r"\1美元", text)
    text = re.sub(r"€\s?(\d+(?:\.\d+)?)", r"\1欧元", text)
    text = re.sub(r"£\s?(\d+(?:\.\d+)?)", r"\1英镑", text)
    text = re.sub(r"(\d+)\s?[:：](\d{2})", r"\1点\2分", text)
    text = str(cn2an.transform(text, "an2cn"))
    return re.sub(r"[$£€¥%]", "", text)
