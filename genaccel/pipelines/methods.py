"""Parse benchmark method strings: `dense`, `proxy:HxW`, `window:HxW` or `window:TxHxW`, with
options after `+`: `shift`, `alternate`, `dense-steps=N`, `dense-blocks=0,3`, `backend=NAME`;
or `plan:PATH`, a `SparsityPlan` JSON file (`genaccel calibrate`).

Example: `proxy:4x4+shift+dense-steps=2`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from genaccel.config import ProxyAttentionConfig, SparseAttentionConfig, WindowAttentionConfig
from genaccel.plans.plan import SparsityPlan

KINDS = {"proxy": ProxyAttentionConfig, "window": WindowAttentionConfig}
SYNTAX = ("dense | proxy:HxW | window:HxW | window:TxHxW, optionally followed by +shift, +alternate, "
          "+dense-steps=N, +dense-blocks=I,J, +backend=NAME | plan:PATH (a SparsityPlan JSON file)")


@dataclass(frozen=True)
class Method:
    """One benchmark arm: its spelling and the sparse-attention config or plan (None = dense)."""

    spec: str
    config: SparseAttentionConfig | SparsityPlan | None

    @property
    def slug(self) -> str:
        """A folder-safe name: `proxy:4x4+shift` -> `proxy-4x4-shift`."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.spec).strip("-")

    @property
    def is_dense(self) -> bool:
        return self.config is None


def parse_method(spec: str) -> Method:
    """`Method` for one string; ValueError naming the accepted syntax otherwise."""
    text = spec.strip()
    if text == "dense":
        return Method(text, None)
    if text.startswith("plan:"):
        if not text[5:]:
            raise ValueError(f"bad method {spec!r}; plan:PATH names a plan JSON file (genaccel calibrate --out)")
        return Method(text, SparsityPlan.load(text[5:]))
    head, *options = text.split("+")
    kind, _, window_text = head.partition(":")
    if kind not in KINDS or not re.fullmatch(r"\d+(x\d+){1,2}", window_text):
        raise ValueError(f"bad method {spec!r}; accepted: {SYNTAX}")
    kwargs: dict[str, object] = {"window": tuple(int(v) for v in window_text.split("x"))}
    for option in options:
        name, _, value = option.partition("=")
        if name == "shift" and not value:
            kwargs["shift"] = True
        elif name == "alternate" and not value:
            kwargs["shift"] = "alternate"
        elif name == "dense-steps" and value.isdigit():
            kwargs["dense_steps"] = int(value)
        elif name == "dense-blocks" and re.fullmatch(r"\d+(,\d+)*", value):
            kwargs["dense_blocks"] = tuple(int(v) for v in value.split(","))
        elif name == "backend" and value:
            kwargs["backend"] = value
        else:
            raise ValueError(f"bad option {option!r} in method {spec!r}; accepted: {SYNTAX}")
    return Method(text, KINDS[kind](**kwargs))


def parse_methods(specs: list[str]) -> list[Method]:
    """Methods in order, `dense` first (added if missing: fidelity is measured against it).

    Each item may hold several comma-separated methods (`dense,proxy:4x4,window:8x8`); a comma
    followed by a digit stays inside a method (`+dense-blocks=0,3`)."""
    methods = [parse_method(s) for spec in specs for s in re.split(r",(?=[A-Za-z])", spec) if s.strip()]
    slugs = [m.slug for m in methods]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"methods repeat: {specs}")
    dense = [m for m in methods if m.is_dense]
    return (dense or [Method("dense", None)]) + [m for m in methods if not m.is_dense]
