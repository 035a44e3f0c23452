"""Building what the speaker runs, where there is memory: base models, `qdq`, the student.

Why here and not on the speaker: splitting Kokoro, calibrating the static-int8 vocoder and
merging the student head with Kokoro's front need `onnx` and up to 1.6 GB of memory; a Pi has
1-8 GB and a story to tell. `voicelab build` runs at set-up, in the image build and in the
studio; it records each vocoder's sha256 (`hearmylove.engine.vocoders`), and the speaker only
verifies and loads.

The student head ships in the repository (`models/weights/`) without its fixed DFT matrices
(11.5 MB of numbers `dft_matrices` computes); they are put back here, at merge time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import compose, helper, numpy_helper
from onnx.utils import Extractor

from hearmylove import basemodel
from hearmylove.basemodel import _sha256
from hearmylove.durable import fsync
from hearmylove.engine import vocoders
from hearmylove.errors import ModelError

Progress = Callable[[str], None]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
"""The weights we train, versioned with the code (models/weights/README.md)."""
HEAD_FILE = "student-head.onnx"
HEAD_MANIFEST = "student-head.json"
HOP = 300  # samples per 80 Hz frame at 24 kHz
N_FFT = 4 * HOP
FRONT_FEATURES = "/decoder/decoder/decode.3/Div_4_output_0"  # [1, 512, 2T]: the generator's input
FRONT_SOURCE = "/decoder/decoder/generator/m_source/l_tanh/Tanh_output_0"  # [1, 600T, 1]: harmonic source
VOCODER_INPUTS = ["asr", "F0_pred", "N_pred", "style_timbre"]
ALL_VOCODERS = ("qdq", "student")
STUDENT_RECIPE = 2
"""2: the head's tensors carry their torch names in the graph, and its weights are saved beside it
(a parent's adapted vocoder is merged into them at install: `hearmylove.engine.adapted`)."""


def dft_matrices() -> tuple[np.ndarray, np.ndarray]:
    """Windowed forward DFT [N, 2K] (real|imag) and inverse DFT with the synthesis window [2K, N]."""
    bins = N_FFT // 2 + 1
    n = np.arange(N_FFT, dtype=np.float64)
    k = np.arange(bins, dtype=np.float64)
    angle = 2 * math.pi * n[:, None] * k[None, :] / N_FFT
    window = 0.5 - 0.5 * np.cos(2 * math.pi * n / N_FFT)  # periodic Hann
    forward = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1) * window[:, None]
    scale = np.full(bins, 2.0)
    scale[0] = scale[-1] = 1.0
    inverse = np.concatenate([np.cos(angle).T * scale[:, None], -np.sin(angle).T * scale[:, None]], 0) / N_FFT
    return forward.astype(np.float32), (inverse * window[None, :]).astype(np.float32)


def strip_dft(model: onnx.ModelProto) -> dict[str, str]:
    """Remove the DFT matrices from an exported head (torch writes them as constants, once per use);
    every use now reads one named input the build fills. Returns {name: "dft"|"idft"}."""
    matrices = dict(zip(("dft", "idft"), dft_matrices(), strict=True))
    renames: dict[str, str] = {}
    for node in list(model.graph.node):
        if node.op_type != "Constant" or not node.attribute or not node.attribute[0].HasField("t"):
            continue
        value = numpy_helper.to_array(node.attribute[0].t)
        for kind, matrix in matrices.items():
            if value.shape == matrix.shape and np.allclose(value, matrix, atol=1e-5):
                renames[node.output[0]] = f"student_{kind}"
                model.graph.node.remove(node)
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    computed = {name: name.removeprefix("student_") for name in sorted(set(renames.values()))}
    if sorted(computed.values()) != ["dft", "idft"]:
        raise ModelError(f"the exported head does not hold a DFT and an inverse DFT matrix: {computed}")
    return computed


def restore_dft(model: onnx.ModelProto, names: dict[str, str]) -> None:
    forward, inverse = dft_matrices()
    matrices = {"dft": forward, "idft": inverse}
    model.graph.initializer.extend(numpy_helper.from_array(matrices[kind], name) for name, kind in names.items())


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
        graph.output.append(helper.make_value_info(new, outputs[old].type))
    style = next(i for i in graph.input if i.name == "style_timbre")
    graph.output.append(helper.make_value_info("timbre", style.type))
    return front


def read_head_manifest(weights_dir: Path) -> dict:
    """The head's manifest, with the head file checked against its sha256."""
    manifest_path, head = weights_dir / HEAD_MANIFEST, weights_dir / HEAD_FILE
    if not manifest_path.exists() or not head.exists():
        raise ModelError(f"no student head in {weights_dir}: it needs {HEAD_FILE} and {HEAD_MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["files"][HEAD_FILE]["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{manifest_path} is not a student-head manifest: {exc}") from exc
    if _sha256(head) != expected:
        raise ModelError(f"{head} does not match the sha256 in {manifest_path}: the file is damaged or replaced")
    return manifest


def build_student(model_dir: Path, weights_dir: Path, progress: Progress) -> Path:
    """Kokoro's front + the shipped head -> `vocoder-student-<sha16>.onnx` in the model folder."""
    manifest = read_head_manifest(weights_dir)
    digest = manifest["files"][HEAD_FILE]["sha256"]
    out = model_dir / f"vocoder-student-{digest[:16]}.onnx"
    progress(f"building {out.name}: Kokoro's front + the student head from {weights_dir}")
    front = compose.add_prefix(extract_front(model_dir / basemodel.VOCODER_FILE), "front/")
    _rename_io(front.graph.input, front.graph.node, "front/", "input")
    head = onnx.load(str(weights_dir / HEAD_FILE))
    weights = name_head_tensors(head)
    restore_dft(head, manifest["computed"])
    head = compose.add_prefix(head, "head/")
    _rename_io(head.graph.output, head.graph.node, "head/", "output")
    opset = _opset(front)
    if _opset(head) != opset:
        head = onnx.version_converter.convert_version(head, opset)
    head.ir_version = front.ir_version
    io_map = [(f"front/{name}", f"head/{name}") for name in ("features", "source", "timbre")]
    merged = compose.merge_models(front, head, io_map=io_map)
    tmp = out.with_name(out.name + ".partial")
    onnx.save(merged, str(tmp))
    fsync(tmp)
    tmp.replace(out)
    weights_file = out.with_suffix(".head.npz")
    with weights_file.open("wb") as f:
        arrays: dict[str, Any] = {name: value for name, (_, value) in weights.items()}
        np.savez(f, **arrays)
    fsync(weights_file)
    training = {k: manifest.get(k) for k in ("steps", "training_minutes", "data_minutes")}
    source = {
        "head_sha256": digest,
        "recipe": STUDENT_RECIPE,
        "weights_file": weights_file.name,
        "weights_sha256": _sha256(weights_file),
        "tensors": {name: f"head/{graph_name}" for name, (graph_name, _) in weights.items()},
        **training,
    }
    vocoders.record(model_dir, "student", out, source)
    return out


def name_head_tensors(head: onnx.ModelProto) -> dict[str, tuple[str, np.ndarray]]:
    """Give the head's anonymous MatMul weights their torch names (`blocks.0.up.weight.T`, stored
    [in, out]) and return torch name -> (graph name, value in torch's layout) for every weight."""
    graph_names: dict[str, str] = {}
    for node in head.graph.node:
        if node.op_type == "MatMul" and node.input[1].startswith("onnx::MatMul"):
            module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
            graph_names[node.input[1]] = f"{module}.weight.T"
            node.input[1] = graph_names[node.input[1]]
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    for init in head.graph.initializer:
        if init.name in graph_names:
            init.name = graph_names[init.name]
        if init.name.startswith(("onnx::", "student_")):
            continue
        value = numpy_helper.to_array(init)
        name = init.name.removesuffix(".T")
        tensors[name] = (init.name, value.T.copy() if init.name.endswith(".T") else value)
    return tensors


def _rename_io(values: Iterable, nodes: Iterable, prefix: str, side: str) -> None:
    """Keep the teacher's input and output names, so the engine feeds the student like the teacher."""
    for value in values:
        old, value.name = value.name, value.name.removeprefix(prefix)
        for node in nodes:
            ports = node.input if side == "input" else node.output
            ports[:] = [value.name if p == old else p for p in ports]


def _opset(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def build_qdq(model_dir: Path, progress: Progress) -> Path:
    """Static int8 vocoder, calibrated on the stock voices (docs/vocoder.md)."""
    import onnxruntime as ort

    from hearmylove.engine.config import EngineConfig
    from hearmylove.engine.engine import Engine, session_options

    from . import quantize

    config = EngineConfig(model_dir=model_dir, vocoder="int8")
    synthesizer = ort.InferenceSession(
        str(model_dir / basemodel.SYNTH_FILE), session_options(config), providers=["CPUExecutionProvider"]
    )
    out = quantize.build_qdq(model_dir, Engine(config, synthesizer, None), progress)  # type: ignore[arg-type]
    vocoders.record(model_dir, "qdq", out, {"recipe": quantize.QDQ_FILE})
    return out


def _current(model_dir: Path, name: str, weights_dir: Path) -> bool:
    """Built, intact, and (for the student) from the head that ships now."""
    try:
        vocoders.vocoder_file(model_dir, name)  # type: ignore[arg-type]
    except ModelError:
        return False
    if name != "student":
        return True
    head = read_head_manifest(weights_dir)["files"][HEAD_FILE]["sha256"]
    source = vocoders.built(model_dir)["student"].source
    return source.get("head_sha256") == head and source.get("recipe") == STUDENT_RECIPE


def build(
    model_dir: Path,
    weights_dir: Path = WEIGHTS_DIR,
    which: Iterable[str] = ALL_VOCODERS,
    force: bool = False,
    keep_whole: bool = True,
    progress: Progress = print,
) -> dict[str, Path]:
    """Everything the speaker may run, in `model_dir`; what is already built and intact is kept.
    `keep_whole=False` drops Kokoro's unsplit graph (the image has no use for it)."""
    if not (model_dir / basemodel.MANIFEST_FILE).exists():
        basemodel.export_base(model_dir, progress=progress, keep_whole=keep_whole)
    done = {"int8": model_dir / basemodel.VOCODER_FILE}
    for name in which:
        if not force and _current(model_dir, name, weights_dir):
            done[name] = vocoders.vocoder_file(model_dir, name)  # type: ignore[arg-type]
            progress(f"{name} vocoder already built: {done[name].name}")
            continue
        if name == "qdq":
            done[name] = build_qdq(model_dir, progress)
        elif name == "student":
            done[name] = build_student(model_dir, weights_dir, progress)
        else:
            raise ModelError(f"unknown vocoder {name!r}; choose from {', '.join(ALL_VOCODERS)}")
    return done
