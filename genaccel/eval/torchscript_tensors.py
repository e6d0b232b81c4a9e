"""Read the named tensors of a TorchScript archive without compiling or running its code.

A TorchScript `.pt` is a zip whose `data.pkl` pickles the module tree. We unpickle it with a
restricted unpickler that only knows tensor rebuilding, storages and plain containers; every
scripted class (`__torch__.*`) becomes an inert attribute bag. The result is a flat
`{dotted.name: tensor}` dict plus the plain (int / list) attributes, e.g. conv strides.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


# TorchScript pickles typed lists (e.g. a conv's padding) through these; they are plain lists.
_PLAIN_LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist")


class _ScriptObject:
    """Stands in for a scripted module class: keeps only its pickled attributes."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple,
                    requires_grad: bool = False, hooks: object = None,
                    metadata: object = None) -> torch.Tensor:
    return torch.as_strided(storage, size, stride, offset).clone()


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, prefix: str, file) -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return type(name, (_ScriptObject,), {})
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in _PLAIN_LIST_BUILDERS:
            return list
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a TorchScript archive")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = bytearray(self._archive.read(f"{self._prefix}/data/{key}"))
        flat = torch.frombuffer(raw, dtype=storage_type.dtype) if raw else torch.empty(0, dtype=storage_type.dtype)
        if flat.numel() != numel:
            raise pickle.UnpicklingError(f"storage {key}: expected {numel} elements, found {flat.numel()}")
        return flat


def _flatten(obj: object, prefix: str, tensors: dict[str, torch.Tensor], attributes: dict[str, object]) -> None:
    for name, value in vars(obj).items():
        if name in ("training", "_is_full_backward_hook"):
            continue
        key = f"{prefix}{name}"
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        elif isinstance(value, _ScriptObject):
            _flatten(value, key + ".", tensors, attributes)
        else:
            attributes[key] = value


def read_torchscript_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Return `(tensors, attributes)` of the module pickled in the TorchScript archive at `path`."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a TorchScript archive (no single top-level data.pkl)")
        prefix = pickles[0].split("/")[0]
        with archive.open(pickles[0]) as file:
            root = _ArchiveUnpickler(archive, prefix, file).load()
    if not isinstance(root, _ScriptObject):
        raise ValueError(f"{path}: data.pkl does not hold a scripted module")
    tensors: dict[str, torch.Tensor] = {}
    attributes: dict[str, object] = {}
    _flatten(root, "", tensors, attributes)
    return tensors, attributes
