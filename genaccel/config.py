"""What `genaccel.apply` does: one config object per kind of attention patch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Union

from genaccel.attention.backends import BACKENDS

ShiftMode = Union[bool, Literal["alternate"]]


@dataclass(frozen=True)
class SparseAttentionConfig:
    """Shared options. `window` counts tokens of the transformer's token grid (after patchify):
    (h, w) for images, (t, h, w) for video; an (h, w) window on a video model means one frame.

    shift: False, True (Swin-shifted windows everywhere) or "alternate" (odd blocks shifted,
        PT-DiT / Swin style, so information crosses window borders from block to block).
    dense_steps: the first k denoising steps of every pipeline call keep dense attention.
    dense_blocks: indices of attention blocks that keep dense attention (Flux counts the double-stream
        blocks first, then the single-stream ones).
    backend: "auto", "split", "concat", "flex", "xformers" or "reference" (see genaccel.attention.backends).
    """

    method: ClassVar[str]
    window: tuple[int, ...]
    shift: ShiftMode = False
    dense_steps: int = 0
    dense_blocks: tuple[int, ...] = field(default_factory=tuple)
    backend: str = "auto"

    def __post_init__(self) -> None:
        window = (self.window,) * 2 if isinstance(self.window, int) else tuple(self.window)
        if len(window) not in (2, 3):
            raise ValueError(f"window must be (h, w) or (t, h, w) in tokens, got {self.window!r}")
        if any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in window):
            raise ValueError(f"window sizes must be positive integers, got {self.window!r}")
        object.__setattr__(self, "window", window)
        if self.shift not in (False, True, "alternate"):
            raise ValueError(f"shift must be False, True or 'alternate', got {self.shift!r}")
        if not isinstance(self.dense_steps, int) or self.dense_steps < 0:
            raise ValueError(f"dense_steps must be an integer >= 0, got {self.dense_steps!r}")
        blocks = tuple(self.dense_blocks)
        if any(not isinstance(b, int) or b < 0 for b in blocks):
            raise ValueError(f"dense_blocks must be block indices >= 0, got {self.dense_blocks!r}")
        object.__setattr__(self, "dense_blocks", blocks)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    def window_for(self, grid: tuple[int, ...]) -> tuple[int, ...]:
        """The window in the grid's own rank: a 2-D window on a video grid covers one frame."""
        if len(self.window) == len(grid):
            return self.window
        if len(self.window) == 2 and len(grid) == 3:
            return (1, *self.window)
        raise ValueError(f"a {len(self.window)}-D window {self.window} does not fit the {len(grid)}-D token grid {grid}")

    def shifted(self, block_index: int) -> bool:
        return self.shift is True or (self.shift == "alternate" and block_index % 2 == 1)


@dataclass(frozen=True)
class ProxyAttentionConfig(SparseAttentionConfig):
    """Training-free proxy-token attention: own window exact, other windows through mean proxies."""

    method: ClassVar[str] = "proxy"


@dataclass(frozen=True)
class WindowAttentionConfig(SparseAttentionConfig):
    """Local window attention: each token attends only its own window (optionally shifted)."""

    method: ClassVar[str] = "window"
