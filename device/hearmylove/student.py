"""The distilled vocoder: Kokoro's own frame-rate front, then a small student head.

Kokoro's decoder spends 93% of its time in the generator, which works at 4,800 frames a
second. The student keeps the part before it (the AdaIN decoder at 80 frames a second,
which carries the voice's timbre, and the harmonic source built from F0) and replaces the
generator with a head trained by distillation (`voicelab distill`): it predicts, per 80 Hz
frame, a complex filter for the source's spectrum and a spectrum of its own, and an
inverse STFT makes the samples. The front comes from the installed base model; only the
head's weights ship as a release artefact (`student-head.onnx` + its sha256), so the
merged `vocoder-student-<sha>.onnx` has the teacher's inputs and outputs and the engine runs it
like any other vocoder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import compose, helper
from onnx.utils import Extractor

from .basemodel import _sha256
from .durable import fsync
from .errors import ModelError

FRONT_FEATURES = "/decoder/decoder/decode.3/Div_4_output_0"  # [1, 512, 2T]: the generator's input
FRONT_SOURCE = "/decoder/decoder/generator/m_source/l_tanh/Tanh_output_0"  # [1, 600T, 1]: harmonic source
VOCODER_INPUTS = ["asr", "F0_pred", "N_pred", "style_timbre"]
HEAD_FILE = "student-head.onnx"
HEAD_MANIFEST = "student-head.json"


def extract_front(vocoder: Path) -> onnx.ModelProto:
    """The teacher up to the generator: outputs `features`, `source` and passes `style_timbre` on."""
    model = onnx.load(str(vocoder))
    front = Extractor(model).extract_model(VOCODER_INPUTS, [FRONT_FEATURES, FRONT_SOURCE])
    graph = front.graph
    renames = {FRONT_FEATURES: "features", FRONT_SOURCE: "source"}
    graph.node.extend(helper.make_node("Identity", [old], [new], name=f"front_{new}") for old, new in renames.items())
    graph.node.append(helper.make_node("Identity", ["style_timbre"], ["timbre"], name="front_timbre"))
    outputs = {o.name: o for o in graph.output}
    del graph.output[:]
    for old, new in renames.items():
        info = outputs[old]
        graph.output.append(helper.make_value_info(new, info.type))
    style = next(i for i in graph.input if i.name == "style_timbre")
    graph.output.append(helper.make_value_info("timbre", style.type))
    return front


def verify_head(head_dir: Path) -> tuple[Path, str]:
    """The head artefact as released: its manifest holds its sha256 (returned with the path)."""
    manifest_path = head_dir / HEAD_MANIFEST
    head = head_dir / HEAD_FILE
    if not manifest_path.exists() or not head.exists():
        raise ModelError(
            f"no student vocoder in {head_dir}: it needs {HEAD_FILE} and {HEAD_MANIFEST} "
            "(the release artefact, or `voicelab distill export`)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{manifest_path} is not a student-head manifest: {exc}") from exc
    if _sha256(head) != expected:
        raise ModelError(f"{head} does not match the sha256 in {manifest_path}: the file is damaged or replaced")
    return head, expected


def ensure_student(model_dir: Path, head_dir: Path, progress: Callable[[str], None]) -> Path:
    """The merged student for this head, built once (named by the head's sha256, so a new head rebuilds)."""
    head_path, digest = verify_head(head_dir)
    out = model_dir / f"vocoder-student-{digest[:16]}.onnx"
    if out.exists():
        return out
    progress(f"building {out.name}: Kokoro's front + the student head from {head_dir} (once)")
    front = extract_front(model_dir / "vocoder.onnx")
    head = onnx.load(str(head_path))
    front = compose.add_prefix(front, "front/")
    _unprefix_inputs(front, "front/")
    head = compose.add_prefix(head, "head/")
    _unprefix_outputs(head, "head/")
    io_map = [("front/features", "head/features"), ("front/source", "head/source"), ("front/timbre", "head/timbre")]
    opset = max(o.version for o in front.opset_import if o.domain in ("", "ai.onnx"))
    head = onnx.version_converter.convert_version(head, opset) if _opset(head) != opset else head
    head.ir_version = front.ir_version
    merged = compose.merge_models(front, head, io_map=io_map)
    tmp = out.with_name(out.name + ".partial")
    onnx.save(merged, str(tmp))
    fsync(tmp)
    tmp.replace(out)
    fsync(model_dir)
    return out


def _unprefix_inputs(model: onnx.ModelProto, prefix: str) -> None:
    """Keep the teacher's input names, so the engine feeds the student like the teacher."""
    for graph_input in model.graph.input:
        old, graph_input.name = graph_input.name, graph_input.name.removeprefix(prefix)
        for node in model.graph.node:
            node.input[:] = [graph_input.name if i == old else i for i in node.input]


def _unprefix_outputs(model: onnx.ModelProto, prefix: str) -> None:
    for graph_output in model.graph.output:
        old, graph_output.name = graph_output.name, graph_output.name.removeprefix(prefix)
        for node in model.graph.node:
            node.output[:] = [graph_output.name if o == old else o for o in node.output]


def _opset(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
