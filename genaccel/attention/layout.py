"""The token layout of each transformer call, recorded by a forward pre-hook on the instance.

Attention processors do not see the latent's shape, so a pre-hook on the transformer records the
token grid (frames, height, width after patchify) and the denoising step before every forward.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class LayoutState:
    """Shared by the hook (writer) and the processors (readers) of one patched transformer."""

    grid: tuple[int, ...] | None = None
    step: int = 0
    last_timestep: float | None = None

    def advance(self, timestep: float | None) -> None:
        """Count denoising steps: a lower timestep is the next step, a higher one starts a new call."""
        if timestep is None:
            return
        if self.last_timestep is None or timestep > self.last_timestep:
            self.step = 0
        elif timestep < self.last_timestep:
            self.step += 1
        self.last_timestep = timestep


def _image_grid(hidden_states: torch.Tensor, patch: int) -> tuple[int, int]:
    height, width = hidden_states.shape[-2:]
    return (height // patch, width // patch)


def _flux_grid(img_ids: torch.Tensor) -> tuple[int, int]:
    ids = img_ids[0] if img_ids.dim() == 3 else img_ids
    rows, cols = ids[:, 1].round().long(), ids[:, 2].round().long()
    height, width = int(rows.max()) + 1, int(cols.max()) + 1
    expected = torch.arange(ids.shape[0], device=ids.device)
    if (height * width != ids.shape[0] or not torch.equal(rows, expected // width)
            or not torch.equal(cols, expected % width) or not torch.all(ids[:, 0] == ids[0, 0])):
        raise ValueError("genaccel: Flux img_ids do not form one row-major image grid (several images, "
                         "e.g. Flux Kontext references, are not supported by sparse attention)")
    return (height, width)


def grid_reader(family: str, config) -> Callable[[dict], tuple[int, ...]]:
    """A function from the transformer's bound forward arguments to its token grid."""
    if family in ("pixart", "dit", "sd3"):
        return lambda args: _image_grid(args["hidden_states"], config.patch_size)
    if family == "flux":
        return lambda args: _flux_grid(args["img_ids"])
    if family == "cogvideox":
        temporal = config.patch_size_t or 1
        return lambda args: (args["hidden_states"].shape[1] // temporal,
                             *_image_grid(args["hidden_states"], config.patch_size))
    if family == "wan":
        pt, ph, pw = config.patch_size
        return lambda args: (args["hidden_states"].shape[2] // pt, args["hidden_states"].shape[3] // ph,
                             args["hidden_states"].shape[4] // pw)
    raise ValueError(f"no token layout known for model family {family!r}")


class LayoutHook:
    """Forward pre-hook (with kwargs) that updates a LayoutState before each transformer call."""

    def __init__(self, transformer: torch.nn.Module, family: str, state: LayoutState, needs_timestep: bool):
        self.signature = inspect.signature(transformer.forward)
        self.read_grid = grid_reader(family, transformer.config)
        self.state = state
        self.needs_timestep = needs_timestep

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        bound = self.signature.bind_partial(*args, **kwargs).arguments
        self.state.grid = tuple(int(g) for g in self.read_grid(bound))
        timestep = bound.get("timestep")
        if timestep is None and self.needs_timestep:
            raise ValueError("dense_steps needs the transformer's `timestep` argument to count denoising steps")
        if timestep is not None:
            value = timestep.float().max().item() if torch.is_tensor(timestep) else float(timestep)
            self.state.advance(value)
