"""Vocoder variants built from the shipped weights: float and static int8 still speak like the teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import SAMPLE_RATE, Engine
from voicelab.build import build
from voicelab.encoder import SpeakerEncoder, similarity
from voicelab.judge import transcribe, wer
from voicelab.quantize import QDQ_FILE, dequantize

TEXT = "The old lighthouse keeper waved at every ship that passed in the night."


def _features(engine: Engine) -> object:
    utterance = next(iter(engine.frontend.utterances(TEXT, "en")))
    return engine.features(utterance.phonemes, engine.voice(None, "en"))


def _run(path: Path, f: object) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"asr": f.asr, "F0_pred": f.f0, "N_pred": f.energy, "style_timbre": f.timbre}  # type: ignore[attr-defined]
    return session.run(None, feed)[0].reshape(-1)


def test_dequantized_vocoder_has_no_integer_kernels_and_sounds_the_same(
    engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    model = dequantize(onnx.load(str(model_dir / "vocoder.onnx")))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
    assert "Conv" in ops and "MatMul" in ops
    path = tmp_path / "vocoder-fp32.onnx"
    onnx.save(model, str(path))
    f = _features(engine)
    teacher, student = _run(model_dir / "vocoder.onnx", f), _run(path, f)
    assert len(teacher) == len(student)
    assert np.corrcoef(teacher, student)[0, 1] > 0.95  # int8 rounding apart, the same waveform


@pytest.fixture(scope="module")
def qdq_engine(model_dir: Path) -> Engine:
    return Engine.load(EngineConfig(model_dir=model_dir, vocoder="qdq"))  # built by the model_dir fixture


def test_the_static_int8_vocoder_is_built_once_understood_and_keeps_the_voice(
    qdq_engine: Engine, engine: Engine, model_dir: Path
) -> None:
    model = onnx.load(str(model_dir / QDQ_FILE))
    quantized = [n.name for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert any("generator/resblocks" in n for n in quantized)
    for kept in ("noise_convs", "conv_post", "decoder/decode.", "decoder/encode/"):  # not static int8
        assert not any(kept in n for n in quantized), kept
    front = [n.name for n in model.graph.node if n.op_type == "ConvInteger"]
    assert front and all("/generator/" not in n for n in front)  # the front as Kokoro ships it
    f = _features(engine)
    teacher, fast = engine.vocode_whole(f), qdq_engine.vocode_whole(f)
    encoder = SpeakerEncoder(threads=2)
    assert similarity(encoder.embed(fast, SAMPLE_RATE), encoder.embed(teacher, SAMPLE_RATE)) >= 0.90  # the gate
    audio = qdq_engine.synthesize(TEXT, lang="en")
    assert wer(TEXT, transcribe(audio, SAMPLE_RATE, "en")) <= 0.1
    built = (model_dir / QDQ_FILE).stat().st_mtime
    build(model_dir, which=["qdq"], progress=lambda m: None)
    assert (model_dir / QDQ_FILE).stat().st_mtime == built  # intact and recorded: not rebuilt
