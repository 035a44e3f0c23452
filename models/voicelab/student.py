"""The student head, in PyTorch (studio extra): frame-rate network, inverse STFT at the end.

Why this shape: the teacher's generator is a source-filter network. It builds a harmonic
source from F0 (phase locked to the pitch) and shapes it at sample rate. The head keeps the
source (the front computes it) and does the shaping per 80 Hz frame in the STFT domain:
each frame's spectrum is `filter x source + filter2 x saturated source + residual`, where
the filters and the residual (breath, fricatives) come from a small ConvNeXt over the
front's features, with the voice's timbre vector modulating every block (adaptive layer norm). Phase comes
from the source, so voiced speech needs no phase prediction, which is what a Vocos-style
head trained without a GAN gets wrong. All sample-rate work is two fixed matrix products
(DFT, inverse DFT) and an overlap-add written as slices, so it exports to plain ONNX.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .build import HOP, N_FFT, dft_matrices

BINS = N_FFT // 2 + 1
FEATURES = 512
TIMBRE = 128
SATURATE = 20.0  # the source peaks near 0.15: x20 drives tanh close to a square wave


def _dft_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    forward, inverse = dft_matrices()  # the same numbers the build puts back into the shipped head
    return torch.from_numpy(forward), torch.from_numpy(inverse)


def frames_of(signal: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, HOP*L] -> [B, L, N_FFT]: frame i is centred on the middle of hop i."""
    pad_left = (N_FFT - HOP) // 2
    padded = F.pad(signal, (pad_left, N_FFT - HOP - pad_left + HOP))  # -> HOP * (L + 4)
    blocks = padded.reshape(signal.shape[0], frames + 4, HOP)
    return torch.cat([blocks[:, i : i + frames] for i in range(N_FFT // HOP)], dim=2)


def overlap_add(frames: torch.Tensor) -> torch.Tensor:
    """[B, L, N_FFT] -> [B, HOP*L], the inverse of `frames_of` (before window normalisation)."""
    b, length, _ = frames.shape
    parts = N_FFT // HOP
    total = F.pad(frames[:, :, :HOP], (0, 0, 0, parts - 1))  # [B, L+3, HOP]
    for i in range(1, parts):
        total = total + F.pad(frames[:, :, i * HOP : (i + 1) * HOP], (0, 0, i, parts - 1 - i))
    flat = total.reshape(b, (length + parts - 1) * HOP)
    pad_left = (N_FFT - HOP) // 2
    return flat[:, pad_left : pad_left + length * HOP]


class Block(nn.Module):
    """ConvNeXt block whose layer norm is scaled and shifted by the voice's timbre."""

    def __init__(self, dim: int, kernel: int, mult: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.style = nn.Linear(TIMBRE, 2 * dim)
        self.up = nn.Linear(dim, mult * dim)
        self.down = nn.Linear(mult * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))
        nn.init.zeros_(self.style.weight)
        nn.init.zeros_(self.style.bias)

    def forward(self, x: torch.Tensor, timbre: torch.Tensor) -> torch.Tensor:  # x [B, L, D]
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        scale, shift = self.style(timbre).unsqueeze(1).chunk(2, dim=-1)
        y = self.norm(y) * (1 + scale) + shift
        y = self.down(F.gelu(self.up(y)))
        return x + self.gamma * y


class StudentHead(nn.Module):
    # Buffers, registered in __init__; declared here so that type checkers know them as tensors.
    dft: torch.Tensor
    idft: torch.Tensor
    window: torch.Tensor
    envelope: torch.Tensor

    def __init__(self, dim: int = 256, layers: int = 6, kernel: int = 5, mult: int = 3) -> None:
        super().__init__()
        self.config = {"dim": dim, "layers": layers, "kernel": kernel, "mult": mult}
        self.conv_in = nn.Conv1d(FEATURES, dim, kernel, padding=kernel // 2)
        self.blocks = nn.ModuleList(Block(dim, kernel, mult) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 6 * BINS)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            self.out.bias[4 * BINS : 5 * BINS] = -6.0  # the residual starts quiet
        self.matrices = False
        """Fixed DFT matrix products instead of torch.fft: the same numbers, for ONNX export only
        (training with FFTs is several times faster)."""
        forward, inverse = _dft_matrices()
        self.register_buffer("dft", forward, persistent=False)
        self.register_buffer("idft", inverse, persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        envelope = overlap_add(torch.hann_window(N_FFT, periodic=True).pow(2).expand(1, 8, N_FFT))[0]
        self.register_buffer("envelope", envelope[3 * HOP : 4 * HOP].clone(), persistent=False)

    def spectrum(self, features: torch.Tensor, source: torch.Tensor, timbre: torch.Tensor) -> torch.Tensor:
        """[B, L, 2K] real|imag of the predicted STFT."""
        frames = features.shape[2]
        x = self.conv_in(features).transpose(1, 2)
        for block in self.blocks:
            x = block(x, timbre)
        h_re, h_im, g_re, g_im, log_mag, phase = self.out(self.norm(x)).chunk(6, dim=-1)
        mag = torch.exp(torch.clamp(log_mag, max=6.0))
        re, im = mag * torch.cos(phase), mag * torch.sin(phase)
        # The source holds harmonics up to about 4 kHz; its saturated copy carries the same
        # phases up to Nyquist, so bright voices keep coherent upper harmonics.
        for (a, b), excitation in (((h_re, h_im), source), ((g_re, g_im), torch.tanh(SATURATE * source))):
            e_re, e_im = self.analyse(frames_of(excitation, frames)).chunk(2, dim=-1)
            re = re + a * e_re - b * e_im
            im = im + a * e_im + b * e_re
        return torch.cat([re, im], dim=-1)

    def analyse(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, L, N_FFT] frames -> [B, L, 2K] real|imag of their windowed DFT."""
        if self.matrices:
            return frames @ self.dft
        spec = torch.fft.rfft(frames * self.window, dim=-1)
        return torch.cat([spec.real, spec.imag], dim=-1)

    def synthesise(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, L, 2K] -> [B, L, N_FFT] windowed inverse DFT of each frame."""
        if self.matrices:
            return spec @ self.idft
        re, im = spec.chunk(2, dim=-1)
        return torch.fft.irfft(torch.complex(re, im), n=N_FFT, dim=-1) * self.window

    def waveform(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, L, 2K] spectrum -> [B, HOP*L] samples (inverse STFT)."""
        steady = self.envelope.repeat(spec.shape[1])  # the window overlap sums to a constant
        return overlap_add(self.synthesise(spec)) / steady

    def forward(self, features: torch.Tensor, source: torch.Tensor, timbre: torch.Tensor) -> torch.Tensor:
        """features [B, 512, L] at 80 Hz, source [B, HOP*L] (or [B, HOP*L, 1]), timbre [B, 128] -> [B, HOP*L]."""
        source = source.reshape(source.shape[0], -1)
        return self.waveform(self.spectrum(features, source, timbre))
