"""The torch front is Kokoro's front: same features and source as the ONNX graph, and it trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from hearmylove.engine.config import EngineConfig  # noqa: E402
from hearmylove.engine.engine import Engine, Features  # noqa: E402
from voicelab.adapt.front import float_front, load_front  # noqa: E402
from voicelab.adapt.vocoder import StudentVocoder, load_head  # noqa: E402
from voicelab.build import extract_front  # noqa: E402

TEXT = "Once upon a time, a little fox lived at the edge of a great forest."


@pytest.fixture(scope="module")
def features(engine: Engine) -> Features:
    (utterance,) = engine.frontend.utterances(TEXT, "en")
    return engine.features(utterance.phonemes, engine.voice("jm_kumo"))


@pytest.fixture(scope="module")
def front(model_dir: Path):  # noqa: ANN201
    torch.set_num_threads(1)
    return load_front(model_dir / "vocoder.onnx")


def _feed(f: Features) -> dict[str, np.ndarray]:
    return {"asr": f.asr, "F0_pred": f.f0, "N_pred": f.energy, "style_timbre": f.timbre}


def _torch_front(front, f: Features) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    with torch.no_grad():
        feats, source = front(*(torch.from_numpy(a) for a in (f.asr, f.f0, f.energy, f.timbre)))
    return feats.numpy(), source.numpy()


def test_torch_front_reproduces_the_float_onnx_front(model_dir: Path, front, features: Features) -> None:  # noqa: ANN001
    session = ort.InferenceSession(
        float_front(model_dir / "vocoder.onnx").SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want_feats, want_source, _ = session.run(None, _feed(features))
    feats, source = _torch_front(front, features)
    assert feats.shape == want_feats.shape == (1, 512, 2 * features.frames)
    assert source.shape == want_source.shape == (1, 600 * features.frames, 1)
    assert np.abs(feats - want_feats).max() <= 1e-4 * np.abs(want_feats).max()
    # The source's phase is integrated in float32 over the utterance: rounding, not a different signal.
    assert np.abs(source - want_source).max() < 2e-3
    assert np.corrcoef(source.ravel(), want_source.ravel())[0, 1] > 0.99999


def test_torch_front_is_close_to_the_int8_front_the_speaker_runs(model_dir: Path, front, features: Features) -> None:  # noqa: ANN001
    session = ort.InferenceSession(
        extract_front(model_dir / "vocoder.onnx").SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want_feats, _, _ = session.run(None, _feed(features))
    feats, _ = _torch_front(front, features)
    assert np.corrcoef(feats.ravel(), want_feats.ravel())[0, 1] > 0.99  # int8 activations: measured 0.9987


def test_gradients_reach_the_head_and_the_chosen_front_block(front, features: Features) -> None:  # noqa: ANN001
    vocoder = StudentVocoder(front, load_head())
    params = vocoder.trainable(("head", "front.decode.3"))
    lo, hi = 40, 80  # one second is enough to see every layer take part
    inputs = (
        torch.from_numpy(features.asr[:, :, lo:hi]),
        torch.from_numpy(features.f0[:, 2 * lo : 2 * hi]),
        torch.from_numpy(features.energy[:, 2 * lo : 2 * hi]),
        torch.from_numpy(features.timbre),
    )
    audio = vocoder(*inputs)
    assert audio.shape == (1, 600 * (hi - lo))
    spectrum = torch.stft(audio, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
    torch.log(spectrum + 1e-5).mean().backward()
    assert params and all(p.grad is not None for p in params)
    assert vocoder.head.out.weight.grad.abs().sum() > 0  # type: ignore[union-attr]
    assert vocoder.front.decode[3].conv2.weight.grad.abs().sum() > 0  # type: ignore[union-attr]
    assert all(p.grad is None for p in vocoder.front.encode.parameters())  # frozen stays frozen
    vocoder.requires_grad_(False)


def test_torch_student_sounds_like_the_student_the_speaker_runs(model_dir: Path, front, features: Features) -> None:  # noqa: ANN001
    """models/weights/student-head.pt (fp16) behind the torch front = the built ONNX student (int8 front)."""
    speaker = Engine.load(EngineConfig(model_dir=model_dir, threads=1, vocoder="student"))
    want = speaker.vocode_whole(features)
    with torch.no_grad():
        got = StudentVocoder(front, load_head())(
            *(torch.from_numpy(a) for a in (features.asr, features.f0, features.energy, features.timbre))
        )[0].numpy()
    assert got.shape == want.shape
    assert np.corrcoef(got, want)[0, 1] > 0.99  # measured 0.9998
