"""Reference models trained by genaccel itself and shipped in the package (no hub download needed).

- `image` (`demo_dit/`): a small class-conditional DiTTransformer2DModel in pixel space (32x32 RGB,
  patch 2, i.e. a 16x16 token grid) trained with `genaccel train` on the generated shapes dataset
  (genaccel.data.shapes); a ClassConditionalPipeline.
- `emoji` (`emoji_dit/`): a class-conditional DiTTransformer2DModel in pixel space (32x32 RGB, patch
  2, a 16x16 token grid) trained with `genaccel train` on the Noto Color Emoji glyphs
  (genaccel.data.emoji, 10 Unicode groups) on a 2-core CPU; under-trained (docs/training.md). The
  default `image` stays the shapes model until an emoji model trained long enough replaces it.
- `video` (`emoji_video/`): a small class-conditional WanTransformer3DModel in pixel space trained
  with `genaccel train --arch wan` on moving-emoji clips (genaccel.data.emoji_videos); a
  ClassConditionalVideoPipeline whose output is a list of clips under `.frames`.

Each folder's manifest.json records the weights' sha256 (checked before loading) and how it was trained.
"""

from __future__ import annotations

from pathlib import Path

import torch

REFERENCE_ROOT = Path(__file__).parent
REFERENCE_DIRS = {"image": REFERENCE_ROOT / "demo_dit", "emoji": REFERENCE_ROOT / "emoji_dit",
                  "video": REFERENCE_ROOT / "emoji_video"}
REFERENCE_DIR = REFERENCE_DIRS["image"]


def load_reference_pipeline(kind: str = "image", *, device: str | torch.device = "cpu",
                            dtype: torch.dtype = torch.float32):
    """The bundled reference model of `kind` ('image', 'emoji' or 'video') as a pipeline (its sha256 verified
    first)."""
    from genaccel.train.bundle import load_bundled_pipeline

    if kind not in REFERENCE_DIRS:
        raise ValueError(f"kind must be one of {sorted(REFERENCE_DIRS)}, got {kind!r} (device and dtype are "
                         "keyword arguments: load_reference_pipeline(device='cuda'))")
    return load_bundled_pipeline(REFERENCE_DIRS[kind], device=device, dtype=dtype)
