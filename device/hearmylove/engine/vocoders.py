"""The vocoder files the speaker may run, and the check that each is the one its build wrote.

Why a record: the fast vocoders (`qdq`, static int8; `student`, Kokoro's front + our distilled
head) are graphs built where there is memory (`voicelab build`: set-up, the image build, the
studio), never on the speaker. The build writes `vocoders.json` beside the base model with
each file's sha256; the speaker only verifies and loads, and a missing or damaged file is
refused with the command that builds it. Nothing here imports `onnx`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..basemodel import VOCODER_FILE, _sha256
from ..durable import fsync
from ..errors import ModelError

VocoderName = Literal["int8", "qdq", "student"]
RECORD_FILE = "vocoders.json"
BUILD_HINT = "build it where there is memory: voicelab build --model-dir {dir} (setup.sh and the image build do)"


class BuiltVocoder(BaseModel):
    """One built vocoder: its file in the model folder, its sha256 and where it came from."""

    model_config = ConfigDict(extra="forbid")

    file: str
    sha256: str
    source: dict[str, object] = {}
    """What it was built from (recipe version, or the student head's sha256 and training record)."""


def _read(model_dir: Path) -> dict[str, BuiltVocoder]:
    path = model_dir / RECORD_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {name: BuiltVocoder.model_validate(entry) for name, entry in raw.items()}
    except (ValueError, AttributeError, ValidationError) as exc:
        raise ModelError(f"{path} is not a vocoder record ({exc}); {BUILD_HINT.format(dir=model_dir)}") from exc


def built(model_dir: Path) -> dict[str, BuiltVocoder]:
    """The vocoders `voicelab build` recorded in this model folder."""
    return _read(model_dir)


def vocoder_file(model_dir: Path, name: VocoderName) -> Path:
    """The verified file for vocoder `name`; Kokoro's own `int8` is covered by the base manifest."""
    if name == "int8":
        return model_dir / VOCODER_FILE
    entry = _read(model_dir).get(name)
    if entry is None:
        raise ModelError(f"the {name!r} vocoder is not built in {model_dir}; {BUILD_HINT.format(dir=model_dir)}")
    path = model_dir / entry.file
    if not path.exists():
        raise ModelError(f"{path} is missing; {BUILD_HINT.format(dir=model_dir)}")
    if _sha256(path) != entry.sha256:
        raise ModelError(f"{path} does not match its sha256 in {RECORD_FILE}: damaged or replaced; rebuild it")
    return path


def record(model_dir: Path, name: VocoderName, path: Path, source: dict[str, object]) -> BuiltVocoder:
    """Note a freshly built vocoder (called by the build, never on the speaker); written atomically."""
    entries = _read(model_dir)
    entries[name] = BuiltVocoder(file=path.name, sha256=_sha256(path), source=source)
    out = model_dir / RECORD_FILE
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps({k: v.model_dump() for k, v in entries.items()}, indent=2) + "\n")
    fsync(tmp)
    tmp.replace(out)
    fsync(model_dir)
    return entries[name]


class StudentBuild(BaseModel):
    """The built student, as a parent's adapted vocoder needs it: the graph, the head's weights
    in torch's layout (what a delta is merged into) and the graph's name for each tensor."""

    model_config = ConfigDict(frozen=True)

    graph: Path
    weights: Path
    tensors: dict[str, str]
    head_sha256: str


def student_build(model_dir: Path) -> StudentBuild:
    """The verified student graph and head weights; ModelError naming the build command if absent."""
    graph = vocoder_file(model_dir, "student")
    source = _read(model_dir)["student"].source
    name, digest, tensors = source.get("weights_file"), source.get("weights_sha256"), source.get("tensors")
    if not isinstance(name, str) or not isinstance(tensors, dict):
        raise ModelError(
            f"the student in {model_dir} was built before adapted voices existed; "
            f"{BUILD_HINT.format(dir=model_dir)} --vocoder student --force"
        )
    weights = model_dir / name
    if not weights.exists() or _sha256(weights) != digest:
        raise ModelError(f"{weights} is missing or does not match {RECORD_FILE}; {BUILD_HINT.format(dir=model_dir)}")
    return StudentBuild(graph=graph, weights=weights, tensors=tensors, head_sha256=str(source["head_sha256"]))


def installed_student(model_dir: Path) -> StudentBuild | None:
    """The student build when there is one (an adapted voice needs it), else None."""
    try:
        return student_build(model_dir)
    except ModelError:
        return None
