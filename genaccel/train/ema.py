"""Exponential moving average of a model's parameters: the weights a diffusion model is sampled with.

The average is kept in float32 whatever the training precision, with the usual warm-up
(decay = min(decay, (1 + step) / (10 + step))) so early averages are not dominated by the
random initialisation.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """A float32 shadow copy of `model`'s floating-point parameters, updated with `update`."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {name: param.detach().float().clone()
                       for name, param in model.named_parameters() if param.dtype.is_floating_point}

    def current_decay(self) -> float:
        """The decay used by the next update, after warm-up."""
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards `model`'s current weights."""
        decay = self.current_decay()
        for name, param in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach().float(), 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the shadow weights into `model` (cast to its parameters' dtypes)."""
        params = dict(model.named_parameters())
        missing = sorted(set(self.shadow) - set(params))
        if missing:
            raise ValueError(f"model has no parameters named {missing[:3]} held by the EMA")
        for name, value in self.shadow.items():
            params[name].copy_(value.to(params[name].dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights plus the update count (as a 0-d tensor, so safetensors can hold it)."""
        return {**self.shadow, "__num_updates__": torch.tensor(self.num_updates, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state_dict` returned; the parameter names must match exactly."""
        state = dict(state)
        num_updates = state.pop("__num_updates__", None)
        if num_updates is None or set(state) != set(self.shadow):
            raise ValueError("EMA state does not match this model's parameters")
        self.shadow = {name: value.float().clone() for name, value in state.items()}
        self.num_updates = int(num_updates)
