"""A small multi-resolution spectrogram discriminator for the student's adversarial phase.

Why: spectral losses alone leave a vocoder's output a little smeared between harmonics (the
"grey floor" above 4 kHz that cost the student DNSMOS points); a discriminator that looks at
log spectrograms at several resolutions, as UnivNet and Vocos train, pushes the fine structure
back. It is kept small (a few 2-D convolutions per resolution) so a CPU can afford it, and it
never ships: only the head's weights do.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


class SpectrogramCritic(nn.Module):
    """One resolution: log magnitude [B, 1, F, T] -> per-patch scores and the features on the way."""

    window: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, n_fft: int, hop: int, channels: int = 8) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        norm = nn.utils.parametrizations.weight_norm
        self.convs = nn.ModuleList(
            [
                norm(nn.Conv2d(1, channels, (7, 5), stride=(2, 1), padding=(3, 2))),
                norm(nn.Conv2d(channels, channels, (7, 5), stride=(2, 1), padding=(3, 2))),
                norm(nn.Conv2d(channels, channels, (7, 5), stride=(2, 1), padding=(3, 2))),
                norm(nn.Conv2d(channels, channels, (5, 3), stride=(2, 1), padding=(2, 1))),
            ]
        )
        self.score = norm(nn.Conv2d(channels, 1, (3, 3), padding=1))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, return_complex=True).abs()
        x = torch.log(spec + 1e-5).unsqueeze(1)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.score(x), features


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.critics = nn.ModuleList(SpectrogramCritic(n, h) for n, h in RESOLUTIONS)

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [critic(audio) for critic in self.critics]


def critic_loss(disc: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: real patches towards 1, the student's towards 0."""
    total = real.new_zeros(())
    for (r, _), (f, _) in zip(disc(real), disc(fake.detach()), strict=True):
        total = total + ((r - 1) ** 2).mean() + (f**2).mean()
    return total


def generator_terms(disc: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial, feature matching): fool the critic, and match its inner features on real audio."""
    adversarial = real.new_zeros(())
    matching = real.new_zeros(())
    with torch.no_grad():
        real_out = disc(real)
    for (score, fake_feats), (_, real_feats) in zip(disc(fake), real_out, strict=True):
        adversarial = adversarial + ((score - 1) ** 2).mean()
        for a, b in zip(fake_feats, real_feats, strict=True):
            matching = matching + (a - b).abs().mean() / len(fake_feats)
    return adversarial, matching
