"""Kokoro's frame-rate front (the vocoder up to its generator) as a trainable torch module.

Why hand-written and not converted: the front is small (an AdaIN decoder of five residual
blocks and the harmonic source) and its layers must be addressable by name, so that speaker
adaptation can choose what to train (`decode.3`, the source's mixing weights) and ship a
delta on exactly those tensors. The weights are read from the installed `vocoder.onnx`
(Kokoro's dynamic-int8 export, dequantized to float by `voicelab.quantize.dequantize`), so
the module is what the speaker runs up to int8 rounding of the activations.

The ONNX export has no random parts (no noise, no random initial phase), so the source is
deterministic and the module matches the ONNX front's `source` too.
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

from hearmylove.errors import ModelError

from ..build import extract_front
from ..quantize import dequantize

TIMBRE = 128
ASR = 512
SAMPLE_RATE = 24_000
UPSAMPLE = 300  # samples per 80 Hz frame: the source runs at the sample rate
HARMONICS = 9  # the fundamental and 8 overtones
SINE_AMP = 0.1
VOICED_HZ = 10.0  # the source's voiced/unvoiced threshold on F0
ONNX_PREFIX = "/decoder/decoder/"


class AdaIN(nn.Module):
    """Instance norm over time whose scale and shift come from the voice's timbre: where the timbre lives."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(TIMBRE, 2 * channels)

    def forward(self, x: torch.Tensor, timbre: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(timbre).unsqueeze(2).chunk(2, dim=1)
        centred = x - x.mean(dim=2, keepdim=True)
        normed = centred / torch.sqrt((centred * centred).mean(dim=2, keepdim=True) + 1e-5)
        return (1 + gamma) * normed + beta


class ResBlock(nn.Module):
    """StyleTTS 2's AdainResBlk1d; `upsample` doubles the frame rate (40 -> 80 Hz)."""

    def __init__(self, dim_in: int, dim_out: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.norm1 = AdaIN(dim_in)
        self.norm2 = AdaIN(dim_out)
        self.conv1 = nn.Conv1d(dim_in, dim_out, 3, padding=1)
        self.conv2 = nn.Conv1d(dim_out, dim_out, 3, padding=1)
        self.conv1x1 = nn.Conv1d(dim_in, dim_out, 1, bias=False)
        if upsample:
            self.pool = nn.ConvTranspose1d(dim_in, dim_in, 3, stride=2, padding=1, output_padding=1, groups=dim_in)

    def forward(self, x: torch.Tensor, timbre: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.norm1(x, timbre), 0.2)
        if self.upsample:
            y = self.pool(y)
            x = x.repeat_interleave(2, dim=2)  # nearest x2, as the export's Resize
        y = self.conv2(F.leaky_relu(self.norm2(self.conv1(y), timbre), 0.2))
        return (y + self.conv1x1(x)) / math.sqrt(2.0)


class HarmonicSource(nn.Module):
    """The generator's sine source: 9 harmonics of F0, phase integrated at 80 Hz, mixed and squashed.

    Written op for op like the export (downsample the per-sample phase increments, integrate,
    upsample the phase linearly) so that float rounding matches onnxruntime's."""

    harmonics: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(HARMONICS, 1)
        self.register_buffer(
            "harmonics", torch.arange(1, HARMONICS + 1, dtype=torch.float32).view(1, HARMONICS, 1), persistent=False
        )

    def forward(self, f0: torch.Tensor) -> torch.Tensor:
        """f0 [B, 2T] in Hz -> source [B, 600T, 1]."""
        per_sample = f0.unsqueeze(1).repeat_interleave(UPSAMPLE, dim=2)  # [B, 1, 600T]
        increments = per_sample * self.harmonics / SAMPLE_RATE
        increments = increments - torch.floor(increments)
        frames = F.interpolate(increments, scale_factor=1 / UPSAMPLE, mode="linear", align_corners=False)
        phase = torch.cumsum(frames.transpose(1, 2), dim=1) * 2.0 * math.pi * UPSAMPLE
        phase = F.interpolate(phase.transpose(1, 2), scale_factor=UPSAMPLE, mode="linear", align_corners=False)
        voiced = (per_sample.transpose(1, 2) > VOICED_HZ).float()
        sines = torch.sin(phase.transpose(1, 2)) * SINE_AMP * voiced  # [B, 600T, 9]
        return torch.tanh(self.linear(sines))


class KokoroFront(nn.Module):
    """asr [B, 512, T] (40 Hz), F0 [B, 2T] in Hz, energy [B, 2T], timbre [B, 128]
    -> features [B, 512, 2T] (80 Hz) and the harmonic source [B, 600T, 1]: the student head's inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.f0_conv = nn.Conv1d(1, 1, 3, stride=2, padding=1)
        self.n_conv = nn.Conv1d(1, 1, 3, stride=2, padding=1)
        self.asr_res = nn.Conv1d(ASR, 64, 1)
        self.encode = ResBlock(ASR + 2, 1024)
        side = 64 + 2  # asr_res, F0 and energy join every decode block's input
        self.decode = nn.ModuleList(
            [ResBlock(1024 + side, 1024), ResBlock(1024 + side, 1024), ResBlock(1024 + side, 1024)]
            + [ResBlock(1024 + side, 512, upsample=True)]
        )
        self.source = HarmonicSource()

    def forward(
        self, asr: torch.Tensor, f0: torch.Tensor, energy: torch.Tensor, timbre: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        f0_40 = self.f0_conv(f0.unsqueeze(1))
        n_40 = self.n_conv(energy.unsqueeze(1))
        x = self.encode(torch.cat([asr, f0_40, n_40], dim=1), timbre)
        side = torch.cat([self.asr_res(asr), f0_40, n_40], dim=1)
        for block in self.decode:
            x = block(torch.cat([x, side], dim=1), timbre)
        return x, self.source(f0)


def _module_path(node_name: str) -> str:
    """'/decoder/decoder/decode.3/norm1/fc/Gemm_MatMul' -> 'decode.3.norm1.fc' (this module's names)."""
    parts = node_name.removeprefix(ONNX_PREFIX).split("/")[:-1]
    path = ".".join(parts)
    renames = {
        "asr_res.asr_res.0": "asr_res",
        "F0_conv": "f0_conv",
        "N_conv": "n_conv",
        "generator.m_source.l_linear": "source.linear",
    }
    return renames.get(path, path)


def onnx_state_dict(front: onnx.ModelProto) -> dict[str, torch.Tensor]:
    """The float front's weights under this module's parameter names (Conv, ConvTranspose, MatMul + bias Add)."""
    graph = front.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    state: dict[str, torch.Tensor] = {}
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            path = _module_path(node.name)
            state[f"{path}.weight"] = torch.from_numpy(inits[node.input[1]].copy())
            if len(node.input) > 2 and node.input[2]:
                state[f"{path}.bias"] = torch.from_numpy(inits[node.input[2]].copy())
        elif node.op_type == "MatMul" and node.input[1] in inits:
            path = _module_path(node.name)
            state[f"{path}.weight"] = torch.from_numpy(inits[node.input[1]].T.copy())
            (add,) = [n for n in consumers[node.output[0]] if n.op_type == "Add"]
            bias = next(inits[i] for i in add.input if i in inits)
            state[f"{path}.bias"] = torch.from_numpy(bias.reshape(-1).copy())
    return state


def float_front(vocoder: Path) -> onnx.ModelProto:
    """The installed vocoder's front with float Conv/MatMul: the reference the torch module must match."""
    return dequantize(extract_front(vocoder))


def load_front(vocoder: Path) -> KokoroFront:
    """A `KokoroFront` holding the weights of `vocoder` (Kokoro's `vocoder.onnx`), in eval mode, frozen."""
    module = KokoroFront()
    state = onnx_state_dict(float_front(vocoder))
    missing, unexpected = set(module.state_dict()) - set(state), set(state) - set(module.state_dict())
    if missing or unexpected:
        raise ModelError(f"{vocoder} is not Kokoro's vocoder: missing {sorted(missing)}, unknown {sorted(unexpected)}")
    module.load_state_dict(state)
    module.requires_grad_(False)
    return module.eval()
