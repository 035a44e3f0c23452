"""The distilled vocoder's plumbing: teacher data, training that resumes, the artefact, the engine.

How well a fully trained head sounds is measured by bench/vocoder_variants.py (the quality
gates); here a few training steps on a few seconds of teacher audio show every part works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from hearmylove.engine.config import EngineConfig  # noqa: E402
from hearmylove.engine.engine import SAMPLES_PER_FRAME, Engine  # noqa: E402
from hearmylove.errors import ModelError  # noqa: E402
from hearmylove.student import FRONT_FEATURES, FRONT_SOURCE, HEAD_FILE, HEAD_MANIFEST, extract_front  # noqa: E402
from voicelab.cli import main  # noqa: E402
from voicelab.distill import export, make_data, plot_history, shards, train  # noqa: E402
from voicelab.student import HOP, frames_of, overlap_add  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    make_data(out, minutes=0.15, seed=1, progress=lambda m: None)
    return out


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    checkpoint = tmp_path_factory.mktemp("train") / "head.pt"
    first = train(data, checkpoint, steps=60, until=30, batch=4, progress=lambda m: None)
    assert first["step"] == 30
    state = train(data, checkpoint, steps=60, batch=4, progress=lambda m: None)  # resumes
    return checkpoint, state


def _sandbox(model_dir: Path, tmp: Path) -> Path:
    """The real base model, linked into a folder of the test's own (the merged student lands there)."""
    sandbox = tmp / "models"
    sandbox.mkdir()
    for f in model_dir.iterdir():
        if f.is_file() and not f.name.startswith("vocoder-student-"):  # students merged earlier stay out
            (sandbox / f.name).symlink_to(f)
    return sandbox


def test_framing_and_overlap_add_invert_each_other() -> None:
    signal = torch.randn(2, HOP * 40)
    frames = frames_of(signal, 40)
    window = torch.hann_window(4 * HOP, periodic=True)
    rebuilt = overlap_add(frames * window.pow(2)) / 1.5  # Hann squared at 4x overlap sums to 1.5
    inner = slice(4 * HOP, -4 * HOP)
    assert torch.allclose(rebuilt[:, inner], signal[:, inner], atol=1e-5)


def test_the_front_is_exactly_what_the_teacher_feeds_its_generator(engine: Engine, model_dir: Path) -> None:
    teacher = onnx.load(str(model_dir / "vocoder.onnx"))
    teacher.graph.output.extend([onnx.ValueInfoProto(name=FRONT_FEATURES), onnx.ValueInfoProto(name=FRONT_SOURCE)])
    utterance = next(iter(engine.frontend.utterances("A small boat sailed home.", "en")))
    f = engine.features(utterance.phonemes, engine.voice(None, "en"))
    feed = {"asr": f.asr, "F0_pred": f.f0, "N_pred": f.energy, "style_timbre": f.timbre}
    _, features, source = ort.InferenceSession(teacher.SerializeToString()).run(None, feed)
    front = ort.InferenceSession(extract_front(model_dir / "vocoder.onnx").SerializeToString())
    got_features, got_source, timbre = front.run(None, feed)
    assert np.array_equal(got_features, features) and np.array_equal(got_source, source)
    assert got_features.shape[2] == 2 * f.frames and got_source.size == f.frames * SAMPLES_PER_FRAME
    assert np.array_equal(timbre, f.timbre)


def test_teacher_shards_are_aligned_and_resume_without_repeating(data: Path, engine: Engine) -> None:
    paths = shards(data)
    assert len(paths) >= 2
    stock = np.stack([engine.voices.get(v).styles[:, :128] for v in engine.voices.ids])
    for p in paths:
        with np.load(p) as d:
            assert d["source"].size == d["audio"].size == HOP * d["features"].shape[1]
            assert np.isfinite(d["audio"]).all() and np.abs(d["audio"]).max() > 0.01
            # a blend with noise, never a stock voice: the stock voices stay held out for the gates
            assert np.abs(stock - d["timbre"]).max(axis=2).min() > 1e-3
    (data / "999999.npz.partial.npz").write_bytes(b"power cut")
    try:
        assert shards(data) == paths  # a half-written shard is never trained on
        make_data(data, minutes=0.15, seed=1, progress=lambda m: None)
        assert shards(data) == paths  # enough there already: nothing rendered again
    finally:
        (data / "999999.npz.partial.npz").unlink()


def test_training_resumes_from_its_checkpoint_and_learns(trained: tuple[Path, dict], tmp_path: Path) -> None:
    checkpoint, state = trained
    steps = [row["step"] for row in state["history"]]
    assert steps == [0, 30, 50, 60]  # the second run went on from step 30, not from scratch
    assert state["history"][-1]["val_total"] < 0.8 * state["history"][0]["val_total"]
    curve = plot_history(checkpoint, tmp_path / "curve.png")
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_empty_data_folder_is_refused_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelError, match="voicelab distill data"):
        train(tmp_path, tmp_path / "head.pt", steps=10, progress=lambda m: None)
    code = main(["distill", "train", "--data", str(tmp_path), "--checkpoint", str(tmp_path / "head.pt")])
    assert code == 2 and "0 teacher shards" in capsys.readouterr().err


def test_the_engine_speaks_through_the_exported_student(
    trained: tuple[Path, dict], engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    head_dir = tmp_path / "artefact"
    export(trained[0], head_dir, progress=lambda m: None)
    manifest = json.loads((head_dir / HEAD_MANIFEST).read_text())
    assert manifest["steps"] == 60 and len(manifest["sha256"]) == 64
    config = EngineConfig(model_dir=_sandbox(model_dir, tmp_path), vocoder="student", student_dir=head_dir, threads=2)
    student = Engine.load(config, progress=lambda m: None)
    assert student.vocoder_name == f"vocoder-student-{manifest['sha256'][:16]}.onnx"
    text = "The moon is up, and the little owl is awake. Good night!"
    audio = student.synthesize(text, lang="en")
    teacher = engine.synthesize(text, lang="en")
    assert audio.shape == teacher.shape and np.isfinite(audio).all()


def test_a_tampered_or_missing_student_is_refused(trained: tuple[Path, dict], model_dir: Path, tmp_path: Path) -> None:
    sandbox = _sandbox(model_dir, tmp_path)
    missing = EngineConfig(model_dir=sandbox, vocoder="student", student_dir=tmp_path / "nothing")
    with pytest.raises(ModelError, match="no student vocoder .*voicelab distill export"):
        Engine.load(missing)
    head_dir = tmp_path / "artefact"
    export(trained[0], head_dir, progress=lambda m: None)
    head = head_dir / HEAD_FILE
    raw = bytearray(head.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    head.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="does not match the sha256"):
        Engine.load(EngineConfig(model_dir=sandbox, vocoder="student", student_dir=head_dir))
    assert not list(sandbox.glob("vocoder-student-*"))  # nothing built from a damaged head


def test_say_with_the_student_and_no_artefact_names_what_is_missing(model_dir: Path, tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "hearmylove"), "say", "Hi.", "--vocoder", "student", "--model-dir", str(model_dir)]
        + ["--out", str(tmp_path / "hi.wav")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HEARMYLOVE_DATA": str(tmp_path / "data")},
    )
    assert result.returncode == 2
    assert "no student vocoder in" in result.stderr and "student-vocoder" in result.stderr
    assert not (tmp_path / "hi.wav").exists()
