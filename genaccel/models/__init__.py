"""Diffusers models built from genaccel.blocks: PT-DiT and LaMamba-DiT (ModelMixin + ConfigMixin)."""

from .lamamba_dit import LaMambaDiTModel
from .ptdit import PTDiTTransformer2DModel

__all__ = ["PTDiTTransformer2DModel", "LaMambaDiTModel"]
