"""Sparse attention for diffusion transformers: functional ops, token layout, diffusers processors."""

from genaccel.attention.ops import joint_attention, proxy_attention, window_attention

__all__ = ["window_attention", "proxy_attention", "joint_attention"]
