"""The distilled vocoder's plumbing: teacher data, training that resumes, the shipped weights, the build, the engine.

How well a fully trained head sounds is measured by bench/vocoder_variants.py (the quality
gates); here a few training steps on a few seconds of teacher audio show every part works.
"""

from __future__ import annotations

import hashlib
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
from voicelab.build import (  # noqa: E402
    FRONT_FEATURES,
    FRONT_SOURCE,
    HEAD_FILE,
    HEAD_MANIFEST,
    WEIGHTS_DIR,
    build,
    extract_front,
    read_head_manifest,
    restore_dft,
)
from voicelab.cli import main  # noqa: E402
from voicelab.distill import WEIGHTS_FILE, export, make_data, plot_history, shards, train  # noqa: E402
from voicelab.student import HOP, StudentHead, frames_of, overlap_add  # noqa: E402


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
        if f.is_file() and not f.name.startswith("vocoder-student-") and f.name != "vocoders.json":
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


def test_the_critic_phase_trains_and_resumes_with_its_critic(data: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "gan.pt"
    first = train(data, checkpoint, steps=6, until=3, batch=4, adversarial_from=2, progress=lambda m: None)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert first["step"] == 3 and "critic" in saved  # the critic joined at step 2 and is kept
    assert _critic_updates(saved) == 1  # step 2 only
    state = train(data, checkpoint, steps=6, batch=4, adversarial_from=2, progress=lambda m: None)
    assert state["step"] == 6 and np.isfinite(state["history"][-1]["val_total"])
    resumed = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert _critic_updates(resumed) == 4  # went on with the same critic: 1 + steps 3, 4, 5


def _critic_updates(saved: dict) -> int:
    return int(next(iter(saved["critic_optimizer"]["state"].values()))["step"])


def test_an_empty_data_folder_is_refused_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelError, match="voicelab distill data"):
        train(tmp_path, tmp_path / "head.pt", steps=10, progress=lambda m: None)
    code = main(["distill", "train", "--data", str(tmp_path), "--checkpoint", str(tmp_path / "head.pt")])
    assert code == 2 and "0 teacher shards" in capsys.readouterr().err


def test_the_engine_speaks_through_the_exported_student(
    trained: tuple[Path, dict], engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    head_dir = tmp_path / "weights"
    export(trained[0], head_dir, progress=lambda m: None)
    manifest = json.loads((head_dir / HEAD_MANIFEST).read_text())
    digest = manifest["files"][HEAD_FILE]["sha256"]
    assert manifest["steps"] == 60 and sorted(manifest["computed"].values()) == ["dft", "idft"]
    assert not _holds_dft(onnx.load(str(head_dir / HEAD_FILE)))  # the build computes them
    sandbox = _sandbox(model_dir, tmp_path)
    build(sandbox, head_dir, ["student"], progress=lambda m: None)
    student = Engine.load(EngineConfig(model_dir=sandbox, vocoder="student", threads=2))
    assert student.vocoder_name == f"vocoder-student-{digest[:16]}.onnx"
    text = "The moon is up, and the little owl is awake. Good night!"
    audio = student.synthesize(text, lang="en")
    teacher = engine.synthesize(text, lang="en")
    assert audio.shape == teacher.shape and np.isfinite(audio).all()


def _holds_dft(model: onnx.ModelProto) -> bool:
    return any(tuple(t.dims) in ((1200, 1202), (1202, 1200)) for t in model.graph.initializer) or any(
        n.op_type == "Constant" and tuple(n.attribute[0].t.dims) in ((1200, 1202), (1202, 1200))
        for n in model.graph.node
        if n.attribute and n.attribute[0].HasField("t")
    )


def test_a_tampered_or_missing_student_is_refused(trained: tuple[Path, dict], model_dir: Path, tmp_path: Path) -> None:
    sandbox = _sandbox(model_dir, tmp_path)
    with pytest.raises(ModelError, match="not built .*voicelab build"):
        Engine.load(EngineConfig(model_dir=sandbox, vocoder="student"))
    head_dir = tmp_path / "weights"
    export(trained[0], head_dir, progress=lambda m: None)
    head = head_dir / HEAD_FILE
    pristine = head.read_bytes()
    raw = bytearray(pristine)
    raw[len(raw) // 2] ^= 0x01
    head.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="does not match the sha256"):
        build(sandbox, head_dir, ["student"], progress=lambda m: None)
    assert not list(sandbox.glob("vocoder-student-*"))  # nothing built from a damaged head
    head.write_bytes(pristine)
    merged = build(sandbox, head_dir, ["student"], progress=lambda m: None)["student"]
    with open(merged, "r+b") as f:  # the speaker's copy damaged after the build (a bad SD card)
        f.seek(merged.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ModelError, match="does not match its sha256"):
        Engine.load(EngineConfig(model_dir=sandbox, vocoder="student"))


def test_say_with_an_unbuilt_vocoder_names_the_build_and_builds_nothing(model_dir: Path, tmp_path: Path) -> None:
    sandbox = _sandbox(model_dir, tmp_path)
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "hearmylove"), "say", "Hi.", "--vocoder", "student", "--model-dir", str(sandbox)]
        + ["--out", str(tmp_path / "hi.wav")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HEARMYLOVE_DATA": str(tmp_path / "data")},
    )
    assert result.returncode == 2
    assert "'student' vocoder is not built" in result.stderr and "voicelab build" in result.stderr
    assert not (tmp_path / "hi.wav").exists() and not list(sandbox.glob("vocoder-student-*"))


def test_the_shipped_weights_are_one_model_and_train_on(data: Path, tmp_path: Path) -> None:
    """models/weights: hashes hold, the ONNX head equals the fp16 checkpoint the studio starts from,
    and training goes on from that checkpoint as well as from scratch."""
    manifest = read_head_manifest(WEIGHTS_DIR)  # checks the ONNX head's sha256
    shipped = WEIGHTS_DIR / WEIGHTS_FILE
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == manifest["files"][WEIGHTS_FILE]["sha256"]
    saved = torch.load(shipped, map_location="cpu", weights_only=True)
    head = StudentHead(**saved["config"])
    head.load_state_dict({k: v.float() for k, v in saved["model"].items()})
    head.eval()
    model = onnx.load(str(WEIGHTS_DIR / HEAD_FILE))
    restore_dft(model, manifest["computed"])
    rng = np.random.default_rng(0)
    frames = 24
    feed = {
        "features": rng.normal(0, 1, (1, 512, frames)).astype(np.float32),
        "source": (0.1 * np.sin(np.arange(HOP * frames) * 0.05)).astype(np.float32).reshape(1, -1, 1),
        "timbre": rng.normal(0, 0.3, (1, 128)).astype(np.float32),
    }
    (got,) = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    with torch.no_grad():
        want = head(*(torch.from_numpy(v) for v in feed.values())).numpy()
    assert np.corrcoef(got.reshape(-1), want.reshape(-1))[0, 1] > 0.999  # fp16 rounding apart
    for init in (shipped, None):
        state = train(data, tmp_path / f"ft-{init is None}.pt", steps=4, batch=2, init=init, progress=lambda m: None)
        assert state["step"] == 4 and np.isfinite(state["history"][-1]["val_total"])
    start = train(data, tmp_path / "probe.pt", steps=1, until=0, batch=2, init=shipped, progress=lambda m: None)
    scratch = train(data, tmp_path / "probe0.pt", steps=1, until=0, batch=2, progress=lambda m: None)
    assert start["history"][0]["val_total"] < scratch["history"][0]["val_total"]  # the weights were used


def test_training_with_ffts_and_the_exported_matrices_agree() -> None:
    head = StudentHead()
    with torch.no_grad():
        head.out.weight.normal_(0, 0.02)
    head.eval()
    inputs = (torch.randn(2, 512, 32), 0.1 * torch.randn(2, HOP * 32), torch.randn(2, 128))
    with torch.no_grad():
        fast = head(*inputs)
        head.matrices = True
        exported = head(*inputs)
    assert torch.allclose(fast, exported, atol=1e-4)
