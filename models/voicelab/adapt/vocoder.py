"""The student vocoder end to end in torch: Kokoro's front, then our head; what adaptation trains.

Why one module: fine-tuning on a parent's recordings needs gradients from the waveform back
into the head (and, where it helps the likeness, into the front's last block, which sets the
timbre the head sees). `trainable` picks those parts by name, so a delta pack can later hold
exactly the tensors that moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hearmylove import basemodel
from hearmylove.engine.vocoders import student_build
from hearmylove.errors import ModelError

from ..build import HEAD_FILE, WEIGHTS_DIR, read_head_manifest
from ..student import StudentHead
from .front import KokoroFront, load_front

HEAD_WEIGHTS = WEIGHTS_DIR / "student-head.pt"


def load_head(path: Path = HEAD_WEIGHTS) -> StudentHead:
    """The shipped head ({"config", "model"}, fp16 state dict) in float32."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    head = StudentHead(**saved["config"])
    head.load_state_dict({k: v.float() for k, v in saved["model"].items()})
    return head.eval()


class StudentVocoder(nn.Module):
    """Synthesizer outputs (asr, F0, energy, timbre) -> 24 kHz samples [B, 600T]."""

    def __init__(self, front: KokoroFront, head: StudentHead) -> None:
        super().__init__()
        self.front = front
        self.head = head

    def forward(self, asr: torch.Tensor, f0: torch.Tensor, energy: torch.Tensor, timbre: torch.Tensor) -> torch.Tensor:
        features, source = self.front(asr, f0, energy, timbre)
        return self.head(features, source, timbre)

    def trainable(self, parts: Iterable[str] = ("head",)) -> list[nn.Parameter]:
        """Unfreeze the named submodules (e.g. "head", "front.decode.3", "front.source") and freeze
        everything else; returns the parameters to hand to an optimizer."""
        self.requires_grad_(False)
        params: list[nn.Parameter] = []
        for name in parts:
            module = self.get_submodule(name)
            module.requires_grad_(True)
            params += list(module.parameters())
        return params


def load_built_head(model_dir: Path, weights_dir: Path = WEIGHTS_DIR) -> tuple[StudentHead, str]:
    """The head exactly as the speaker runs it (the build's float32 weights, which a pack's delta
    is merged into), and its sha256; it must be the head that ships in `weights_dir`."""
    build = student_build(model_dir)
    manifest = read_head_manifest(weights_dir)
    if manifest["files"][HEAD_FILE]["sha256"] != build.head_sha256:
        raise ModelError(f"the student built in {model_dir} is not the head in {weights_dir}; run: voicelab build")
    head = StudentHead(**manifest["config"])
    with np.load(build.weights, allow_pickle=False) as npz:
        head.load_state_dict({name: torch.from_numpy(npz[name]) for name in npz.files})
    return head.eval(), build.head_sha256


def load_vocoder(model_dir: Path, head: Path | None = None) -> StudentVocoder:
    """The front of the installed base model (`model_dir`/vocoder.onnx) with a head, frozen: the
    built one (what the speaker runs) by default, or the weights in `head` (a .pt checkpoint)."""
    weights = load_head(head) if head is not None else load_built_head(model_dir)[0]
    vocoder = StudentVocoder(load_front(model_dir / basemodel.VOCODER_FILE), weights)
    vocoder.requires_grad_(False)
    return vocoder.eval()
