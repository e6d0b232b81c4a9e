"""The diffusers transformer families genaccel patches: one file per family, listed here."""

from __future__ import annotations

import torch

from genaccel.attention.families.base import ModelFamily, SparseProcessor
from genaccel.attention.families.cogvideox import COGVIDEOX
from genaccel.attention.families.dit import DIT, PIXART
from genaccel.attention.families.flux import FLUX
from genaccel.attention.families.sd3 import SD3
from genaccel.attention.families.wan import WAN

FAMILIES: tuple[ModelFamily, ...] = (PIXART, DIT, SD3, FLUX, COGVIDEOX, WAN)


def supported_classes() -> str:
    return ", ".join(name for family in FAMILIES for name in family.class_names)


def family_of(model: torch.nn.Module) -> ModelFamily:
    """The family of `model` (an instance of a supported class or of a subclass); TypeError otherwise."""
    for family in FAMILIES:
        if isinstance(model, family.classes()):
            return family
    raise TypeError(f"{type(model).__name__} is not supported by genaccel sparse attention; supported transformer "
                    f"classes (and their subclasses): {supported_classes()}")


__all__ = ["FAMILIES", "ModelFamily", "SparseProcessor", "family_of", "supported_classes"]
