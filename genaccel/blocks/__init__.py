"""Trainable linear-time building blocks: selective scan, SS2D / SS3D, LaMamba block, PT-DiT block."""

from .relative_position_bias import RelativePositionBias
from .lamamba_block import LaMambaBlock
from .ptdit_block import PTDiTBlock
from .scan_paths import scan_paths, snake_path
from .selective_scan import linear_recurrence, mamba_ssm_available, selective_scan
from .ss2d import SS2D, SS3D

__all__ = ["selective_scan", "linear_recurrence", "mamba_ssm_available", "snake_path", "scan_paths", "SS2D",
           "SS3D", "RelativePositionBias", "LaMambaBlock", "PTDiTBlock"]
