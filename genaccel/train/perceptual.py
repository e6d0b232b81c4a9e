"""A perceptual loss for tokenizer training from weights the project has offline.

No VGG / LPIPS weights are reachable here, so the feature network is the NVlabs Inception that FID
already uses (registry weights, sha256-verified; `genaccel.eval.weights`). The distance is LPIPS's
form without its learned per-channel weights: at each tap, unit-normalise the feature vector of
every position over channels, then take the squared difference, summed over channels and averaged
over positions and taps. Taps: the stem's 64-channel map (after Conv2d_2b) and 192-channel map
(after Conv2d_4a); images are upsampled to `resize` pixels first (the stem has stride 2 and no padding).

Caveat, stated wherever it is measured: rFID is computed with the same network's pool3 features, so
a loss on its stem can lower rFID more than a person would see; read PSNR / SSIM beside it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genaccel.eval.inception import InceptionV3Features, load_inception

STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")


class InceptionPerceptualLoss(nn.Module):
    """Frozen Inception stem -> LPIPS-style distance between two image batches in [-1, 1]."""

    def __init__(self, network: InceptionV3Features, resize: int = 128) -> None:
        super().__init__()
        if resize < 32:
            raise ValueError(f"resize must be >= 32 pixels (the Inception stem needs room), got {resize}")
        self.stem = nn.ModuleDict({name: getattr(network, name) for name in STEM})
        self.resize = resize
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_registry(cls, weights: str | Path | None = None, resize: int = 128) -> "InceptionPerceptualLoss":
        """With the verified registry Inception (raises WeightsNotFoundError naming where it looked)."""
        return cls(load_inception(weights), resize=resize)

    def train(self, mode: bool = True) -> "InceptionPerceptualLoss":
        return super().train(False)  # always frozen, whatever the training loop asks

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(images.float(), size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = x * (127.5 / 128) - 0.5 / 128  # [-1, 1] pixels -> the network's (p - 128) / 128 scaling
        stem = self.stem
        x = stem["Conv2d_2b_3x3"](stem["Conv2d_2a_3x3"](stem["Conv2d_1a_3x3"](x)))
        first = x
        x = F.max_pool2d(x, 3, stride=2)
        second = stem["Conv2d_4a_3x3"](stem["Conv2d_3b_1x1"](x))
        return [first, second]

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if reconstruction.shape != target.shape:
            raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ")
        with torch.no_grad():
            wanted = self.features(target)
        distances = []
        for ours, theirs in zip(self.features(reconstruction), wanted):
            ours, theirs = F.normalize(ours, dim=1, eps=1e-10), F.normalize(theirs, dim=1, eps=1e-10)
            distances.append((ours - theirs).pow(2).sum(dim=1).mean())
        return torch.stack(distances).mean()
