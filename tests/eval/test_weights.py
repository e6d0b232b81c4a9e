"""Weights lookup: verification, explicit paths, and the error when nothing is found."""

from __future__ import annotations

import importlib.util

import pytest

from genaccel.eval import weights as weights_module
from genaccel.eval.weights import INCEPTION, WeightsNotFoundError, resolve_weights


def test_installed_weights_are_found_and_verified(inception_weights) -> None:
    assert inception_weights.stat().st_size == INCEPTION.size
    assert weights_module.sha256_of(inception_weights) == INCEPTION.sha256


def test_explicit_path_with_wrong_content_is_rejected(tmp_path) -> None:
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"x" * 10)
    with pytest.raises(ValueError, match="expected 87335461"):
        resolve_weights(INCEPTION, fake)


def test_env_var_pointing_nowhere_is_an_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(INCEPTION.env_var, str(tmp_path / "missing.pt"))
    with pytest.raises(WeightsNotFoundError, match="missing.pt does not exist"):
        resolve_weights(INCEPTION)


def test_missing_weights_error_lists_places_and_fetch_command(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(INCEPTION.env_var, raising=False)
    monkeypatch.setenv("GENACCEL_CACHE", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == INCEPTION.module else real_find_spec(name, *a))
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(INCEPTION)
    message = str(info.value)
    assert "GENACCEL_INCEPTION_WEIGHTS (not set)" in message
    assert str(tmp_path) in message and "genaccel weights fetch" in message


def test_cached_copy_is_used_when_package_is_absent(monkeypatch, tmp_path, inception_weights) -> None:
    monkeypatch.delenv(INCEPTION.env_var, raising=False)
    monkeypatch.setenv("GENACCEL_CACHE", str(tmp_path))
    cached = weights_module.cached_path(INCEPTION)
    cached.parent.mkdir(parents=True)
    cached.symlink_to(inception_weights)
    monkeypatch.setattr(weights_module, "_installed_path", lambda spec: None)
    assert resolve_weights(INCEPTION) == cached
