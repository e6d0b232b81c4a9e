"""`genaccel.apply(target, config)`, `genaccel.remove(target)` and `with genaccel.applied(target, config)`.

One verb for every kind of patch: `apply` finds the handler registered for the config's type
(`register_handler`), `remove` / `is_applied` the handler that takes the target. Two handlers:
diffusers sparse attention (below) and visual-token pruning of transformers LMMs
(`genaccel.token_pruning`).

Sparse attention: only instances are patched: each supported attention module gets a sparse processor (the original is
kept and restored by `remove`), each transformer one forward pre-hook that records the token grid,
and, where the config needs it, the pipeline's scheduler (step counting for `dense_steps` and plan phases) and a
Flux pipeline's `prepare_latents` (the token grid, so compiled Flux needs no host sync).
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from genaccel.attention.families import ModelFamily, SparseProcessor, family_of, supported_classes
from genaccel.attention.ulysses import RING_REFUSED
from genaccel.attention.layout import LayoutHook, LayoutState
from genaccel.attention.steps import SchedulerStepCounter, TimestepStepCounter
from genaccel.config import SparseAttentionConfig
from genaccel.plans.plan import SparsityPlan

_PATCH_ATTRIBUTE = "_genaccel_patch"


@dataclass
class Patch:
    """What `apply` changed on one transformer instance, so that `remove` can undo exactly that."""

    config: SparseAttentionConfig | SparsityPlan
    state: LayoutState
    hook_handle: torch.utils.hooks.RemovableHandle
    originals: list[tuple[torch.nn.Module, object, SparseProcessor]] = field(default_factory=list)
    pipeline_patches: list[Any] = field(default_factory=list)  # scheduler counter, grid recorder (restore())
    via_pipeline: bool = False


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module a `torch.compile`d wrapper (OptimizedModule) runs; patches go on it."""
    return getattr(model, "_orig_mod", model)


def _transformers_of(target) -> list[torch.nn.Module]:
    """The transformer(s) of a pipeline (`transformer`, and `transformer_2` for Wan 2.2), or the model itself."""
    if isinstance(target, torch.nn.Module):
        models = [target]
    else:
        models = [getattr(target, name, None) for name in ("transformer", "transformer_2")]
        models = [m for m in models if m is not None]
        if not models:
            raise TypeError(f"genaccel.apply takes a diffusers pipeline with a `transformer` or the transformer "
                            f"itself; got {type(target).__name__}. Supported transformers: {supported_classes()}")
    models = [_unwrap(m) for m in models]
    for model in models:
        family_of(model)  # raises for unsupported classes
    return models


def _attention_modules(model: torch.nn.Module, family: ModelFamily) -> list[tuple[int, str, torch.nn.Module]]:
    """(global block index, name, attention module) triples; stacks are numbered one after another."""
    found: list[tuple[int, str, torch.nn.Module]] = []
    offset = 0
    for pattern in family.attention_patterns:
        regex = re.compile(pattern + r"$")
        stack = [(int(m.group(1)), name, module) for name, module in model.named_modules()
                 if (m := regex.match(name)) is not None]
        found += [(offset + index, name, module) for index, name, module in stack]
        offset += max((index for index, _, _ in stack), default=-1) + 1
    return found


class ProcessorGuard:
    """Observer on each (eager) transformer call: the sparse processors are still the ones apply set.

    diffusers replaces processors wholesale (`fuse_qkv_projections`, `set_attn_processor`, loaders);
    after that the model would silently run dense, so the next call raises instead."""

    def __init__(self, patch: Patch):
        self.patch = patch

    def __call__(self, inputs: dict) -> None:
        if torch.compiler.is_compiling():
            return
        replaced = [type(module.processor).__name__ for module, _, processor in self.patch.originals
                    if module.processor is not processor]
        if replaced:
            raise RuntimeError(f"genaccel: {len(replaced)} sparse attention processors were replaced after "
                               f"genaccel.apply (by {', '.join(sorted(set(replaced)))}), e.g. by fuse_qkv_projections, "
                               "set_attn_processor or load_ip_adapter; call genaccel.remove first, make the change, "
                               "then genaccel.apply again")


def _parallel_config(model: torch.nn.Module):
    """The model's diffusers ParallelConfig if it runs under context parallelism (Ulysses only), else None."""
    config = getattr(model, "_parallel_config", None)
    if getattr(config, "tensor_parallel_config", None) is not None:
        raise NotImplementedError("genaccel sparse attention does not run under diffusers tensor parallelism "
                                  "(its processors would see sharded heads); use Ulysses context parallelism")
    context_parallel = getattr(config, "context_parallel_config", None)
    if context_parallel is None:
        return None
    if (getattr(context_parallel, "ring_degree", 1) or 1) > 1:
        raise NotImplementedError(RING_REFUSED)
    return config


def _block_choices(config: SparseAttentionConfig | SparsityPlan, modules: list, model: torch.nn.Module):
    """block index -> what its processor gets (a config, or a plan's per-phase choices; None: keep dense)."""
    if isinstance(config, SparsityPlan):
        if config.num_blocks != len(modules):
            raise ValueError(f"this plan has {config.num_blocks} attention blocks but this {type(model).__name__} "
                             f"has {len(modules)}; calibrate a plan for this model (genaccel.calibrate)")
        if config.model and config.model != type(model).__name__:
            warnings.warn(f"this plan was calibrated on a {config.model}, applied to a {type(model).__name__}",
                          stacklevel=3)
        return lambda block: None if all(c is None for c in config.block_choices(block)) \
            else config.block_choices(block)
    out_of_range = sorted(set(config.dense_blocks) - {index for index, _, _ in modules})
    if out_of_range:
        raise ValueError(f"dense_blocks {out_of_range} do not exist in this {type(model).__name__}: its attention "
                         f"blocks are 0..{len(modules) - 1}")
    return lambda block: None if block in config.dense_blocks else config


def _apply_sparse_attention(target, config: SparseAttentionConfig | SparsityPlan):
    """Replace the self-attention of `target` (a diffusers pipeline or its transformer) by the sparse
    attention `config` (or `SparsityPlan`) describes. Returns `target`. Undo with `genaccel.remove(target)`.

    Attention modules whose processor genaccel does not reimplement (IP-Adapter, PAG, your own) keep
    it and stay dense; a warning names them.
    """
    if not isinstance(config, (SparseAttentionConfig, SparsityPlan)):
        raise TypeError(f"config must be genaccel.ProxyAttentionConfig, genaccel.WindowAttentionConfig or a "
                        f"genaccel.SparsityPlan, got {type(config).__name__}")
    models = _transformers_of(target)
    pipeline = None if isinstance(target, torch.nn.Module) else target
    is_plan = isinstance(config, SparsityPlan)
    if is_plan and len(models) > 1:
        raise NotImplementedError("a SparsityPlan covers one transformer; this pipeline has two (transformer_2): "
                                  "apply a ProxyAttentionConfig / WindowAttentionConfig instead")
    phased = is_plan and (len(config.phase_starts) > 1 or config.reuses_steps())
    if phased and pipeline is None:
        raise ValueError("this plan changes choices between step ranges or reuses outputs on odd steps, which "
                         "genaccel counts on the pipeline's scheduler: apply it to the pipeline "
                         "(genaccel.apply(pipe, plan)), not to its transformer")
    dense_steps = 0 if is_plan else config.dense_steps
    plans = []
    for model in models:
        if getattr(model, _PATCH_ATTRIBUTE, None) is not None:
            raise ValueError(f"this {type(model).__name__} already has genaccel attention; call genaccel.remove first")
        _parallel_config(model)  # raises for ring attention
        family = family_of(model)
        modules = _attention_modules(model, family)
        plans.append((model, family, modules, _block_choices(config, modules, model)))

    states = [LayoutState(count_passes=is_plan and config.reuses_steps()) for _ in models]
    pipeline_patches: list[Any] = []
    counter = None
    if (dense_steps > 0 or phased) and pipeline is not None:
        counter = SchedulerStepCounter(pipeline, states, dense_steps,
                                       *((config.phase_starts, config.num_inference_steps) if phased else ()))
        pipeline_patches.append(counter)
    if pipeline is not None:
        for family in {family.name: family for _, family, _, _ in plans}.values():
            if family.record_grid is not None and (recorder := family.record_grid(pipeline, states)) is not None:
                pipeline_patches.append(recorder)

    skipped: list[str] = []
    for (model, family, modules, choices_of), state in zip(plans, states):
        observers = []
        if counter is not None:
            observers.append(counter.check_scheduler)
        elif dense_steps > 0:
            observers.append(TimestepStepCounter(state, dense_steps).observe)
        hook = LayoutHook(model, family, state)
        patch = Patch(config, state, model.register_forward_pre_hook(hook, with_kwargs=True),
                      pipeline_patches=pipeline_patches, via_pipeline=pipeline is not None)
        hook.observers = (ProcessorGuard(patch), *observers)
        for block_index, name, module in modules:
            choices = choices_of(block_index)
            if choices is None:
                continue
            original = module.processor
            if type(original).__name__ not in family.replaces:
                skipped.append(f"{name} ({type(original).__name__})")
                continue
            processor = family.processor(original, choices, state, block_index)
            processor._parallel_config = _parallel_config(model)  # enable_parallelism called before apply
            patch.originals.append((module, original, processor))
            module.set_processor(processor)
        setattr(model, _PATCH_ATTRIBUTE, patch)
    if skipped:
        warnings.warn("genaccel left these attention processors in place (dense), as it does not know how to "
                      f"make them sparse: {', '.join(skipped)}", stacklevel=2)
    return target


def _remove_sparse_attention(target):
    """Restore every original attention processor, the hook and any pipeline patch. Returns `target`."""
    models = _transformers_of(target)
    patched = [m for m in models if getattr(m, _PATCH_ATTRIBUTE, None) is not None]
    if not patched:
        raise ValueError("genaccel.remove: this target has no genaccel attention applied")
    if isinstance(target, torch.nn.Module) and getattr(target, _PATCH_ATTRIBUTE).via_pipeline:
        raise ValueError("genaccel attention was applied to this transformer's pipeline; call genaccel.remove(pipe)")
    replaced = []
    pipeline_patches: dict[int, Any] = {}
    for model in patched:
        patch: Patch = getattr(model, _PATCH_ATTRIBUTE)
        for module, original, processor in patch.originals:
            if module.processor is processor:
                module.set_processor(original)
            else:
                replaced.append(type(module.processor).__name__)
        patch.hook_handle.remove()
        for pipeline_patch in patch.pipeline_patches:
            pipeline_patches[id(pipeline_patch)] = pipeline_patch
        delattr(model, _PATCH_ATTRIBUTE)
    for pipeline_patch in pipeline_patches.values():
        pipeline_patch.restore()
    if replaced:
        warnings.warn(f"genaccel.remove: {len(replaced)} attention processors were replaced after genaccel.apply "
                      f"(by {', '.join(sorted(set(replaced)))}); they were left as they are", stacklevel=2)
    return target


def _sparse_attention_applied(target) -> bool:
    """Whether genaccel attention is currently applied to `target`."""
    return any(getattr(m, _PATCH_ATTRIBUTE, None) is not None for m in _transformers_of(target))


@dataclass(frozen=True)
class Handler:
    """How one kind of config is applied: `accepts(target)` says whether `remove` / `is_applied` of a
    target belong to this handler (checked in registration order, the last handler taking the rest)."""

    config_types: tuple[type, ...]
    apply: Callable[[Any, Any], Any]
    remove: Callable[[Any], Any]
    is_applied: Callable[[Any], bool]
    accepts: Callable[[Any], bool]


_HANDLERS: list[Handler] = []


def register_handler(handler: Handler) -> None:
    """Add a handler; the first one registered whose `accepts` is true answers for a target."""
    taken = [t.__name__ for h in _HANDLERS for t in h.config_types if t in handler.config_types]
    if taken:
        raise ValueError(f"a handler for {', '.join(taken)} is already registered")
    _HANDLERS.append(handler)


def _handler_for_config(config) -> Handler:
    for handler in _HANDLERS:
        if isinstance(config, handler.config_types):
            return handler
    accepted = ", ".join(f"genaccel.{kind.__name__}" for h in _HANDLERS for t in h.config_types
                         for kind in (t.__subclasses__() or [t]))
    raise TypeError(f"config must be one of {accepted}, got {type(config).__name__}")


def _handler_for_target(target) -> Handler:
    return next(handler for handler in _HANDLERS if handler.accepts(target))


def apply(target, config):
    """Apply `config` to `target`: sparse attention (ProxyAttentionConfig / WindowAttentionConfig, or a
    calibrated SparsityPlan) to a diffusers pipeline or its transformer, visual-token pruning (VisualTokenPruningConfig) to a
    transformers LMM. Returns `target`; undo with `genaccel.remove(target)`."""
    return _handler_for_config(config).apply(target, config)


def remove(target):
    """Undo what `genaccel.apply` did to `target`. Returns `target`."""
    return _handler_for_target(target).remove(target)


def is_applied(target) -> bool:
    """Whether a genaccel patch is currently applied to `target`."""
    return _handler_for_target(target).is_applied(target)


@contextmanager
def applied(target, config) -> Iterator[Any]:
    """`with genaccel.applied(target, config): ...`: patched inside the block, the original after it."""
    apply(target, config)
    try:
        yield target
    finally:
        remove(target)


def _register_builtin_handlers() -> None:
    from genaccel import token_pruning
    from genaccel.token_pruning import patch as pruning

    register_handler(Handler((token_pruning.VisualTokenPruningConfig,), pruning.apply_token_pruning,
                             pruning.remove_token_pruning, pruning.is_pruned, pruning.accepts))
    register_handler(Handler((SparseAttentionConfig, SparsityPlan), _apply_sparse_attention, _remove_sparse_attention,
                             _sparse_attention_applied, lambda target: True))


_register_builtin_handlers()
