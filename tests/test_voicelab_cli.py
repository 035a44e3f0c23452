"""The studio as a technician runs it: clone -> eval -> the speaker tells a Mandarin story in that voice."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest
import soundfile as sf

from tests.studio_data import paths, utterances
from tests.test_cli import run
from voicelab.judge import cer_zh, transcribe

STORY_ZH = "从前，有一只小狐狸住在森林里。它每天晚上都听妈妈讲故事。"


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Recordings with their transcripts beside them, as a technician would bring them."""
    folder = tmp_path_factory.mktemp("studio")
    for row, src in zip(utterances("p225"), paths("p225"), strict=True):
        (folder / src.name).symlink_to(src)
        (folder / src.name).with_suffix(".txt").write_text(row["transcript"])
    assert run("voicelab", "keygen", "--out", str(folder / "studio.key")).returncode == 0
    return folder


@pytest.fixture(scope="module")
def pack(studio: Path, model_dir: Path) -> Path:
    out = studio / "mama.tar"
    recordings = sorted(studio.glob("*.wav"))[:5]
    result = run(
        "voicelab", "clone", *map(str, recordings), "--name", "mama", "--lang", "en", "--out", str(out),
        "--max-evaluations", "11", "--vocoder-minutes", "0.5", "--key", str(studio / "studio.key"),
        "--recorded-by", "Li Na (mother)", "--device-id", "kid-001",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (studio / "clone.log").write_text(result.stderr)
    assert re.search(r"similarity to the recordings 0\.\d+ -> 0\.\d+", result.stdout)
    assert "speaker encoding:" in result.stderr and "adapting" in result.stderr  # progress is shown
    assert re.search(r"vocoder adaptation: step \d+/\d+, training loss [\d.]+, held-out loss", result.stderr)
    return out


def test_clone_makes_a_signed_pack_with_consent(pack: Path, studio: Path) -> None:
    result = run("voicelab", "verify", str(pack), "--pub", str(studio / "studio.pub"))
    assert result.returncode == 0, result.stderr
    assert "recorded by Li Na (mother)" in result.stdout and "kid-001" in result.stdout
    own_vocoder = "the parent's own vocoder: Whisper heard" in (studio / "clone.log").read_text()
    assert own_vocoder == ("vocoder.npz" in tarfile.open(pack).getnames())  # kept only when Whisper understood it
    assert (studio / "mama.tar.clone.json").exists()


def test_eval_writes_a_report_on_held_out_recordings(pack: Path, studio: Path) -> None:
    held = sorted(studio.glob("*.wav"))[-2:]
    result = run("voicelab", "eval", str(pack), "--refs", *map(str, held), "--pub", str(studio / "studio.pub"))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = dict(
        line.split(maxsplit=1) for line in result.stdout.splitlines() if line and not line.startswith("report")
    )
    assert 0.3 < float(figures["similarity"]) < 1 and float(figures["error_rate"]) <= 0.2
    assert float(figures["dnsmos_clone"]) > 2.5
    report = (studio / "mama.tar.report.html").read_text()
    assert report.count("<audio") == 4 and report.count("data:image/png") == 3  # steps, F0, spectrograms


def test_the_cloned_voice_tells_a_mandarin_story(pack: Path, studio: Path, tmp_path: Path) -> None:
    out = tmp_path / "story.wav"
    result = run(
        "hearmylove", "say", STORY_ZH, "--lang", "zh", "--voice", str(pack), "--trust", str(studio / "studio.pub"),
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out, dtype="float32")
    assert cer_zh(STORY_ZH, transcribe(audio, rate, "zh")) <= 0.3


def test_a_tampered_pack_or_an_untrusted_one_does_not_speak(pack: Path, studio: Path, tmp_path: Path) -> None:
    data = bytearray(pack.read_bytes())
    at = data.index(b"\x93NUMPY") + 1000
    data[at] ^= 0x01
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(bytes(data))
    out = tmp_path / "x.wav"
    result = run("hearmylove", "say", "Hello.", "--voice", str(tampered), "--trust", str(studio / "studio.pub"),
                 "--out", str(out))  # fmt: skip
    assert result.returncode != 0 and "style.npy" in result.stderr and not out.exists()
    assert run("voicelab", "keygen", "--out", str(tmp_path / "other.key")).returncode == 0
    result = run("hearmylove", "say", "Hello.", "--voice", str(pack), "--trust", str(tmp_path / "other.pub"),
                 "--out", str(out))  # fmt: skip
    assert result.returncode != 0 and "trusted key" in result.stderr and not out.exists()


def test_bad_recordings_are_refused_before_any_work(studio: Path, tmp_path: Path) -> None:
    junk = tmp_path / "memo.mp3"
    junk.write_bytes(b"\x00\x01garbage" * 50)
    result = run(
        "voicelab", "clone", str(junk), "--name", "x", "--lang", "en", "--out", str(tmp_path / "x.tar"),
        "--key", str(studio / "studio.key"), "--recorded-by", "x", "--device-id", "kid-001",
    )  # fmt: skip
    assert result.returncode == 2
    assert "memo.mp3: cannot read it as audio" in result.stderr and "too little speech" in result.stderr
    assert not (tmp_path / "x.tar").exists()
