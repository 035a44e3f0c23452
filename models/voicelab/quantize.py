"""Vocoder variants without training: the same weights, other arithmetic (docs/vocoder.md).

The shipped Kokoro vocoder is dynamically quantized: every convolution quantizes its input
at run time (DynamicQuantizeLinear + ConvInteger), which costs more than it saves here.
`dequantize` rebuilds plain float Conv/MatMul nodes from the int8 weights; `quantize_static`
then quantizes the generator's convolutions with scales calibrated once (QDQ, per channel),
keeping in float the layers that turn to noise when quantized (the noise convolutions, the
last conv, every MatMul); the frame-rate front stays as shipped (it carries the timbre).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hearmylove.durable import fsync

# Quantizing these turns speech to noise: the noise convolutions and the last conv.
KEEP_FLOAT = ("noise_convs", "conv_post")
STATIC_SCOPE = "/generator/"
"""Only the generator (93% of the cost) is requantized. The frame-rate front before it carries
the voice's timbre: statically quantized it took GE2E similarity to the teacher down to 0.87,
in float it holds 0.94 but weighs 100 MB more, so it stays exactly as Kokoro ships it."""
QDQ_FILE = "vocoder-qdq-v3.onnx"  # the recipe's version: a changed recipe builds a new file
# Calibration speech: never the texts the quality gates are measured on (bench/vocoder_variants.py).
CALIBRATION_TEXTS = {
    "en": [
        "In the morning the baker opened his shop, and the smell of bread filled the street.",
        "Children laughed as the kite climbed higher and higher into the windy sky!",
        "Quiet now: the owl is watching the moon over the dark forest. Can you hear it?",
    ],
    "zh": ["小猫在花园里追蝴蝶，跑得满头大汗。", "我们明天一起去公园看大熊猫吧！"],
}
CALIBRATION_WINDOW = 100  # frames, as the engine's streaming windows


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.inits = {i.name: i for i in self.graph.initializer}

    def array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[name])

    def only_consumer(self, name: str, op: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def float_init_above(self, name: str, size: int, depth: int = 6) -> np.ndarray | None:
        """The float initializer of `size` values feeding `name` (the bias behind its quantization)."""
        if name in self.inits:
            value = self.array(name)
            return value if value.dtype == np.float32 and value.size == size else None
        node = self.producer.get(name)
        if node is None or depth == 0:
            return None
        for parent in node.input:
            found = self.float_init_above(parent, size, depth - 1)
            if found is not None:
                return found
        return None


def _weight_scale(g: _Graph, scale_mul: str) -> np.ndarray:
    """The weight's own scale: the initializer input of the Mul that makes the combined scale."""
    node = g.producer[scale_mul]
    return next(g.array(i) for i in node.input if i in g.inits)


def _rewrite_conv(g: _Graph, conv: onnx.NodeProto, new: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> None:
    x = g.producer[conv.input[0]].input[0]
    weight = g.array(conv.input[1]).astype(np.float32) - g.array(conv.input[3]).astype(np.float32)
    node = g.only_consumer(conv.output[0], "Add")
    bias = None
    if node is not None:
        other = next(i for i in node.input if i != conv.output[0])
        bias = g.float_init_above(other, weight.shape[0])
        node = g.only_consumer(node.output[0], "Cast")
    else:
        node = g.only_consumer(conv.output[0], "Cast")
    mul = g.only_consumer(node.output[0], "Mul") if node is not None else None
    if node is None or mul is None or (g.only_consumer(conv.output[0], "Add") and bias is None):
        raise ValueError(f"unexpected pattern after {conv.name}")
    scale_name = next(i for i in mul.input if i != node.output[0])
    weight *= _weight_scale(g, scale_name)
    stem = conv.name.replace("_quant", "")
    inits.append(numpy_helper.from_array(weight.astype(np.float32), stem + ".W"))
    inputs = [x, stem + ".W"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), stem + ".B"))
        inputs.append(stem + ".B")
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    new.append(helper.make_node("Conv", inputs, [mul.output[0]], name=stem, **attrs))


def _rewrite_matmul(g: _Graph, mm: onnx.NodeProto, new: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> None:
    x = g.producer[mm.input[0]].input[0]
    weight = g.array(mm.input[1]).astype(np.float32) - g.array(mm.input[3]).astype(np.float32)
    cast = g.only_consumer(mm.output[0], "Cast")
    mul = g.only_consumer(cast.output[0], "Mul") if cast is not None else None
    if mul is None or cast is None:
        raise ValueError(f"unexpected pattern after {mm.name}")
    weight *= _weight_scale(g, next(i for i in mul.input if i != cast.output[0]))
    stem = mm.name.replace("_quant", "")
    inits.append(numpy_helper.from_array(weight.astype(np.float32), stem + ".W"))
    new.append(helper.make_node("MatMul", [x, stem + ".W"], [mul.output[0]], name=stem))


def _prune(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers nothing needs any more."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def dequantize(model: onnx.ModelProto, scope: str = "") -> onnx.ModelProto:
    """Float Conv/MatMul in place of the dynamic-int8 ConvInteger/MatMulInteger patterns (those
    whose node name holds `scope`; all by default)."""
    g = _Graph(model)
    new: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for node in list(model.graph.node):
        if scope not in node.name:
            continue
        if node.op_type == "ConvInteger":
            _rewrite_conv(g, node, new, inits)
        elif node.op_type == "MatMulInteger":
            _rewrite_matmul(g, node, new, inits)
    replaced = {n.output[0] for n in new}
    nodes = [n for n in model.graph.node if not (set(n.output) & replaced)]
    # Topological order: put each new node right after the producer of its input.
    order: list[onnx.NodeProto] = []
    by_input = collections.defaultdict(list)
    for n in new:
        by_input[n.input[0]].append(n)
    graph_inputs = {i.name for i in model.graph.input}
    for name in graph_inputs:
        order.extend(by_input.pop(name, []))
    for n in nodes:
        order.append(n)
        for out in n.output:
            order.extend(by_input.pop(out, []))
    del model.graph.node[:]
    model.graph.node.extend(order)
    model.graph.initializer.extend(inits)
    _prune(model)
    return model


class _Reader:
    """Feeds the calibration windows to onnxruntime's static quantizer."""

    def __init__(self, feeds: Iterator[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _no_pre_processing_hint(record: logging.LogRecord) -> bool:
    """Drop onnxruntime's "consider to run pre-processing" advice, which it logs on the root logger
    for every model without its pre-processing tag. That step (shape inference, graph optimisation)
    is not used here: the static int8 vocoder is judged by what it sounds like against the float one
    (tests/test_vocoder_variants.py: the GE2E similarity gate and Whisper's WER)."""
    return not str(record.msg).startswith("Please consider to run pre-processing before quantization")


def quantize_static(
    float_model: Path, out: Path, calibration: Callable[[], Iterator[dict[str, np.ndarray]]], per_channel: bool = True
) -> Path:
    """QDQ int8 convolutions calibrated on real vocoder inputs; sensitive layers stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    names = [n.name for n in onnx.load(str(float_model), load_external_data=False).graph.node]
    exclude = [n for n in names if any(k in n for k in KEEP_FLOAT)]
    tmp = out.with_name(out.name + ".partial")
    root = logging.getLogger()
    root.addFilter(_no_pre_processing_hint)
    try:
        ort_quantize_static(
            str(float_model),
            str(tmp),
            _Reader(calibration()),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=exclude,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibMovingAverage": True},
        )
    finally:
        root.removeFilter(_no_pre_processing_hint)
    fsync(tmp)
    tmp.replace(out)
    return out


def calibration_feeds(engine: object) -> Iterator[dict[str, np.ndarray]]:
    """Vocoder inputs of real speech: every stock voice, both languages, windows as streamed."""
    voices = engine.voices.ids  # type: ignore[attr-defined]
    for lang, texts in CALIBRATION_TEXTS.items():
        for i, text in enumerate(texts):
            for vid in voices[i % 2 :: 2]:
                voice = engine.voice(vid, lang)  # type: ignore[attr-defined]
                for utterance in engine.frontend.utterances(text, lang):  # type: ignore[attr-defined]
                    f = engine.features(utterance.phonemes, voice)  # type: ignore[attr-defined]
                    for lo in range(0, max(1, f.frames - 20), CALIBRATION_WINDOW):
                        hi = min(f.frames, lo + CALIBRATION_WINDOW)
                        yield {
                            "asr": f.asr[:, :, lo:hi],
                            "F0_pred": f.f0[:, 2 * lo : 2 * hi],
                            "N_pred": f.energy[:, 2 * lo : 2 * hi],
                            "style_timbre": f.timbre,
                        }


def build_qdq(model_dir: Path, engine: object, progress: Callable[[str], None]) -> Path:
    """vocoder.onnx -> generator in float -> static QDQ int8, in the model folder (a few minutes, once)."""
    import tempfile

    out = model_dir / QDQ_FILE
    progress(f"building the fast vocoder {out.name} (static int8, calibrated on the stock voices; once)")
    with tempfile.TemporaryDirectory(prefix="vocoder-", dir=model_dir) as tmp:
        float_path = Path(tmp) / "vocoder-fp32.onnx"
        onnx.save(dequantize(onnx.load(str(model_dir / "vocoder.onnx")), STATIC_SCOPE), str(float_path))
        progress("calibrating on real speech")
        quantize_static(float_path, out, lambda: calibration_feeds(engine))
    fsync(model_dir)
    return out
