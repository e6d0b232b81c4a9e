"""`genaccel.apply(target, config)` and `genaccel.remove(target)`: patch a diffusers transformer's
attention on the instance (processors and one forward pre-hook), and restore it exactly."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from genaccel.attention.layout import LayoutHook, LayoutState
from genaccel.attention.processors import (CogVideoXProcessor, FluxProcessor, SD3JointProcessor,
                                           SelfAttentionProcessor, SparseProcessor, WanProcessor)
from genaccel.config import SparseAttentionConfig

_PATCH_ATTRIBUTE = "_genaccel_patch"


@dataclass(frozen=True)
class Family:
    """How one diffusers transformer class lays out its attention."""

    name: str
    processor: type[SparseProcessor]
    patterns: tuple[str, ...]  # module-name regexes; group 1 is the block index within that stack


FAMILIES: dict[str, Family] = {
    "PixArtTransformer2DModel": Family("pixart", SelfAttentionProcessor, (r"transformer_blocks\.(\d+)\.attn1",)),
    "DiTTransformer2DModel": Family("dit", SelfAttentionProcessor, (r"transformer_blocks\.(\d+)\.attn1",)),
    "SD3Transformer2DModel": Family("sd3", SD3JointProcessor, (r"transformer_blocks\.(\d+)\.attn2?",)),
    "FluxTransformer2DModel": Family("flux", FluxProcessor, (r"transformer_blocks\.(\d+)\.attn",
                                                            r"single_transformer_blocks\.(\d+)\.attn")),
    "CogVideoXTransformer3DModel": Family("cogvideox", CogVideoXProcessor, (r"transformer_blocks\.(\d+)\.attn1",)),
    "WanTransformer3DModel": Family("wan", WanProcessor, (r"blocks\.(\d+)\.attn1",)),
}


@dataclass
class Patch:
    """What `apply` changed on one transformer instance, so that `remove` can undo exactly that."""

    config: SparseAttentionConfig
    state: LayoutState
    hook_handle: torch.utils.hooks.RemovableHandle
    originals: list[tuple[torch.nn.Module, object]] = field(default_factory=list)


def _transformers_of(target) -> list[torch.nn.Module]:
    """The transformer(s) of a pipeline (`transformer`, and `transformer_2` for Wan 2.2), or the model itself."""
    if isinstance(target, torch.nn.Module):
        models = [target]
    else:
        models = [getattr(target, name, None) for name in ("transformer", "transformer_2")]
        models = [m for m in models if m is not None]
        if not models:
            raise TypeError(f"genaccel.apply takes a diffusers pipeline with a `transformer` or the transformer "
                            f"itself; got {type(target).__name__}. Supported transformers: {', '.join(FAMILIES)}")
    for model in models:
        if type(model).__name__ not in FAMILIES:
            raise TypeError(f"{type(model).__name__} is not supported by genaccel sparse attention; "
                            f"supported transformer classes: {', '.join(FAMILIES)}")
    return models


def _attention_modules(model: torch.nn.Module, family: Family) -> list[tuple[int, torch.nn.Module]]:
    """(global block index, attention module) pairs; stacks are numbered one after another."""
    found: list[tuple[int, torch.nn.Module]] = []
    offset = 0
    for pattern in family.patterns:
        regex = re.compile(pattern + r"$")
        stack = [(int(m.group(1)), module) for name, module in model.named_modules()
                 if (m := regex.match(name)) is not None]
        found += [(offset + index, module) for index, module in stack]
        offset += max((index for index, _ in stack), default=-1) + 1
    return found


def apply(target, config: SparseAttentionConfig):
    """Replace the self-attention of `target` (a diffusers pipeline or its transformer) by the sparse
    attention `config` describes. Returns `target`. Undo with `genaccel.remove(target)`."""
    if not isinstance(config, SparseAttentionConfig):
        raise TypeError(f"config must be genaccel.ProxyAttentionConfig or genaccel.WindowAttentionConfig, "
                        f"got {type(config).__name__}")
    models = _transformers_of(target)
    for model in models:
        if getattr(model, _PATCH_ATTRIBUTE, None) is not None:
            raise ValueError(f"this {type(model).__name__} already has genaccel attention; call genaccel.remove first")
    for model in models:
        family = FAMILIES[type(model).__name__]
        state = LayoutState()
        hook = LayoutHook(model, family.name, state, needs_timestep=config.dense_steps > 0)
        patch = Patch(config, state, model.register_forward_pre_hook(hook, with_kwargs=True))
        for block_index, module in _attention_modules(model, family):
            if block_index in config.dense_blocks:
                continue
            original = module.processor
            patch.originals.append((module, original))
            module.set_processor(family.processor(original, config, state, block_index))
        setattr(model, _PATCH_ATTRIBUTE, patch)
    return target


def remove(target):
    """Restore every original attention processor and remove the layout hook. Returns `target`."""
    models = _transformers_of(target)
    patched = [m for m in models if getattr(m, _PATCH_ATTRIBUTE, None) is not None]
    if not patched:
        raise ValueError("genaccel.remove: this target has no genaccel attention applied")
    for model in patched:
        patch: Patch = getattr(model, _PATCH_ATTRIBUTE)
        for module, original in patch.originals:
            module.set_processor(original)
        patch.hook_handle.remove()
        delattr(model, _PATCH_ATTRIBUTE)
    return target


def is_applied(target) -> bool:
    """Whether genaccel attention is currently applied to `target`."""
    return any(getattr(m, _PATCH_ATTRIBUTE, None) is not None for m in _transformers_of(target))
