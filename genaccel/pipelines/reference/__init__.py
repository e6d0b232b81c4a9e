"""Reference models trained by genaccel itself and shipped in the package (no hub download needed).

`demo_dit`: a small class-conditional DiTTransformer2DModel in pixel space (32x32 RGB, patch 2,
i.e. a 16x16 token grid) trained with `genaccel train` on the generated shapes dataset
(genaccel.data.shapes). Its manifest.json records the weights' sha256 and how it was trained.
"""

from __future__ import annotations

from pathlib import Path

import torch

REFERENCE_DIR = Path(__file__).parent / "demo_dit"


def load_reference_pipeline(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The bundled demo DiT as a ClassConditionalPipeline (sha256 of its weights verified first)."""
    from genaccel.train.bundle import load_bundled_pipeline

    return load_bundled_pipeline(REFERENCE_DIR, device=device, dtype=dtype)
