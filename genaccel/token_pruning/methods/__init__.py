"""Pruning methods by name: one class per method, all behind `PruningMethod`."""

from __future__ import annotations

from genaccel.token_pruning.methods.base import ImageTokens, PruningMethod, Selection
from genaccel.token_pruning.methods.cls import ClsAttentionPruning
from genaccel.token_pruning.methods.divprune import DivPrune
from genaccel.token_pruning.methods.fastv import FastV
from genaccel.token_pruning.methods.random import RandomPruning
from genaccel.token_pruning.methods.visionzip import VisionZip

METHODS: dict[str, type[PruningMethod]] = {}


def register_method(method: type[PruningMethod]) -> type[PruningMethod]:
    """Add a method under `method.name` (usable as a decorator); names are unique."""
    if method.stage not in ("before_lm", "in_lm"):
        raise ValueError(f"{method.__name__}.stage must be 'before_lm' or 'in_lm', got {method.stage!r}")
    if method.name in METHODS and METHODS[method.name] is not method:
        raise ValueError(f"a pruning method named {method.name!r} is already registered "
                         f"({METHODS[method.name].__name__})")
    METHODS[method.name] = method
    return method


def method_class(name: str) -> type[PruningMethod]:
    """The class registered under `name`; raises naming the accepted methods."""
    if name not in METHODS:
        raise ValueError(f"unknown visual-token pruning method {name!r}; accepted: {', '.join(sorted(METHODS))}")
    return METHODS[name]


for _method in (FastV, VisionZip, DivPrune, RandomPruning, ClsAttentionPruning):
    register_method(_method)

__all__ = ["METHODS", "ImageTokens", "PruningMethod", "Selection", "method_class", "register_method"]
