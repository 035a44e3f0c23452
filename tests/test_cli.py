"""`hearmylove say` and `voicelab export-base` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

BIN = Path(sys.executable).parent


def run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("text", "lang"), [("Once upon a time, there was a kind old bear.", "en"), ("从前，有一只善良的老熊。", "zh")]
)
def test_say_writes_speech_in_each_language(model_dir: Path, tmp_path: Path, text: str, lang: str) -> None:
    out = tmp_path / "story.wav"
    result = run("hearmylove", "say", text, "--lang", lang, "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = sf.info(str(out))
    assert info.samplerate == 24_000 and info.channels == 1 and 1.5 < info.duration < 15
    assert "first audio after" in result.stderr
    assert not list(tmp_path.glob("*.partial"))


def test_say_reads_a_story_file_and_writes_opus(model_dir: Path, tmp_path: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_text("The end.\n", encoding="utf-8")
    out = tmp_path / "story.opus"
    result = run("hearmylove", "say", "--file", str(story), "--out", str(out), "-q")
    assert result.returncode == 0 and result.stderr == ""
    assert sf.info(str(out)).format == "OGG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--out", "x.wav"], "story text is empty"),
        (["hello", "--out", "x.mp4"], "must end in one of .wav, .flac, .ogg, .opus"),
        (["hello", "--voice", "nobody", "--out", "x.wav"], "unknown voice 'nobody'"),
        (["hello", "--speed", "9", "--out", "x.wav"], "speed 9.0 is out of range"),
    ],
)
def test_say_refuses_bad_input_with_a_clear_message(
    model_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [str(BIN / "hearmylove"), "say", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_say_refuses_binary_files_and_oversize_stories(model_dir: Path, tmp_path: Path) -> None:
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(bytes(range(256)) * 64)
    result = run("hearmylove", "say", "--file", str(binary), "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 2 and "not UTF-8 text" in result.stderr
    huge = tmp_path / "huge.txt"
    huge.write_text("Once upon a time. " * 60_000)  # about 1 MB
    result = run("hearmylove", "say", "--file", str(huge), "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 2 and "the limit is 200,000" in result.stderr


def test_say_reads_standard_input(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.flac"
    result = run("hearmylove", "say", "-", "--out", str(out), "-q", stdin=b"Good night.")
    assert result.returncode == 0, result.stderr
    assert sf.info(str(out)).duration > 0.5


def test_say_on_an_empty_data_folder_names_the_build_and_builds_nothing(tmp_path: Path) -> None:
    """The speaker never builds a model (1.6 GB for qdq, more than a Pi has): it says how to."""
    result = run(
        "hearmylove", "say", "Hi.", "--out", str(tmp_path / "hi.wav"), env={"HEARMYLOVE_DATA": str(tmp_path / "data")}
    )
    assert result.returncode == 2
    assert "no base models in" in result.stderr and "voicelab build" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "hi.wav").exists()


def test_export_base_writes_a_verified_model_set(tmp_path: Path) -> None:
    result = run("voicelab", "export-base", "--out", str(tmp_path / "m"), "--drop-whole")
    assert result.returncode == 0, result.stderr
    assert "synthesizer.onnx" in result.stdout and "vocoder.onnx" in result.stdout
    assert not (tmp_path / "m" / "kokoro-v1.0.int8.onnx").exists()
