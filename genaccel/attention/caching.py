"""Per-process caches of derived tensors (window partitions, biases, block masks) that torch.compile can trace.

Eagerly, a derived tensor is built once per key and reused. While torch.compile traces, a global
dict would become a guard that changes as the cache fills (recompiles), so the builder runs in the
graph instead: the builders use static-shape tensor ops only, which the compiler folds or fuses.
"""

from __future__ import annotations

from typing import Callable, Hashable, TypeVar

import torch

T = TypeVar("T")
_MAX_ENTRIES = 256


def cached(cache: dict, key: Hashable, build: Callable[[], T]) -> T:
    """`cache[key]`, built by `build()` on first use; never cached while torch.compile traces."""
    if torch.compiler.is_compiling():
        return build()
    value = cache.get(key)
    if value is None:
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        value = cache[key] = build()
    return value
