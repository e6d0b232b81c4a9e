"""`apply_token_pruning(model, config)` / `remove_token_pruning(model)`: the hooks on one instance.

What is hooked (all on the instance; `remove` takes every one of them off):
- `model.model.get_image_features` is shadowed by an instance attribute (the bound method is kept
  and restored): it records each image's number of LM tokens and, for methods that read them, the
  vision tower's attention scores, taken by hooks on the tower's q / k projections while it runs.
- a forward pre-hook / hook on `model.model` notes the prompt's input_ids for the forward;
- a forward pre-hook / hook on the text decoder (`model.get_decoder()`): in the prefill it gathers
  the LM inputs at the kept positions (methods of stage "before_lm"), or sets up the in-LM scoring
  (fastv, see `in_lm`); in later decode steps of the same generation (same cache object) it gathers
  the 2-D attention mask's prompt columns the same way and, where the caller passes no position
  ids, continues them from the unpruned length, so every kept token keeps its original position.

A prefill is a forward that is given images (pixel values or encoded image features). The decoder
hooks act only when the decoder runs inside the model's own forward, so drafters that call views of
the decoder (such as `SelfDrafter`) see the decoder as it is.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genaccel.token_pruning.config import VisualTokenPruningConfig
from genaccel.token_pruning.families import Family, ImageRecord, family_of, is_supported
from genaccel.token_pruning.in_lm import InLanguageModelPruning, Scoring
from genaccel.token_pruning.methods import ImageTokens, Selection, method_class
from genaccel.token_pruning.sequence import (gather_positions, gather_tokens, image_positions, kept_index,
                                             scatter_features)

PATCH_ATTRIBUTE = "_genaccel_token_pruning"


@dataclass
class Session:
    """One generation's pruning: what its prefill kept, so that its decode steps line up with it."""

    stage: str  # "before_lm" or "in_lm"
    prompt_length: int  # L, the unpruned prompt
    kept: torch.Tensor | None = None  # (B, L') kept prompt positions, sorted (in_lm: set at layer k)
    real: torch.Tensor | None = None  # (B, L') False at filler positions (masked out); None if none
    cache: Any = None  # the cache this generation fills

    @property
    def dropped(self) -> int:
        """How many positions the language model's cache lacks (0 for in_lm: layer 0 keeps them all)."""
        return 0 if self.stage == "in_lm" else self.prompt_length - self.kept.shape[1]


@dataclass
class ForwardState:
    """What one forward of `model.model` carries from hook to hook."""

    input_ids: torch.Tensor | None
    has_images: bool  # pixel values or encoded images reach the model in this forward (a prefill)
    images: list[ImageRecord] | None = None
    in_decoder: bool = False
    phase: str | None = None  # "prefill", "decode" or None (a forward pruning leaves alone)
    scoring: Scoring | None = None
    decode_mask: torch.Tensor | None = None


def _cache_of(kwargs: dict[str, Any]) -> Any:
    return kwargs.get("cache", kwargs.get("past_key_values"))


class TokenPruningPatch:
    """Everything `apply` put on one model instance."""

    def __init__(self, model: nn.Module, config: VisualTokenPruningConfig):
        self.model = model
        self.config = config
        self.family: Family = family_of(model)
        self.method = method_class(config.method)(config)
        self.base = self.family.base
        self.decoder = model.get_decoder()
        self.forward_state: ForwardState | None = None
        self.session: Session | None = None
        self._capturing = False
        self._last_output: Any = None
        self.image_records: list[ImageRecord] | None = None  # the last get_image_features call's (diagnostics)
        self.last_text_attention: torch.Tensor | None = None  # (B, L) fastv's last scores (diagnostics)
        self.handles: list[Any] = []
        self.recorder = None
        self.in_lm: InLanguageModelPruning | None = None
        self._original_attribute = self.base.__dict__.get("get_image_features")
        self._wrapper = None
        try:
            if self.method.stage == "in_lm":
                self.in_lm = InLanguageModelPruning(self, self.decoder, config.layer)
            if self.method.vision_layers:
                attentions = self.family.vision_attentions()[-self.method.vision_layers:]
                self.recorder = self.family.recorder(attentions, lambda: self._capturing)
            self.handles += [
                self.base.register_forward_pre_hook(self._model_inputs, with_kwargs=True),
                self.base.register_forward_hook(self._model_done, always_call=True),
                self.decoder.register_forward_pre_hook(self._decoder_inputs, with_kwargs=True),
                self.decoder.register_forward_hook(self._decoder_done, always_call=True),
            ]
            self._wrap_get_image_features()
        except BaseException:
            self.remove()  # nothing half-applied
            raise

    # --- image features ---------------------------------------------------------------------------
    def _wrap_get_image_features(self) -> None:
        original = self.base.get_image_features
        signature = inspect.signature(original)

        @functools.wraps(original)
        def get_image_features(*args, **kwargs):
            self._capturing = True
            try:
                output = original(*args, **kwargs)
            finally:
                self._capturing = False
            layer_scores = self.recorder.take() if self.recorder is not None else None
            if hasattr(output, "pooler_output"):
                arguments = signature.bind(*args, **kwargs).arguments
                self._last_output = output
                self.image_records = self.family.records(output, arguments, layer_scores)
                if self.forward_state is not None:
                    self.forward_state.images = self.image_records
            return output

        self.base.get_image_features = get_image_features
        self._wrapper = get_image_features

    # --- model.model ------------------------------------------------------------------------------
    def _model_inputs(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        encoded = kwargs.get("mm_encoder_outputs")
        encoded = encoded if isinstance(encoded, dict) else {}
        if kwargs.get("pixel_values_videos") is not None or encoded.get("video") is not None:
            raise NotImplementedError("visual-token pruning prunes image tokens; this forward has video inputs "
                                      "(call genaccel.remove for video)")
        image_output = encoded.get("image")
        state = ForwardState(input_ids=input_ids,
                             has_images=kwargs.get("pixel_values") is not None or image_output is not None)
        if image_output is not None:
            if image_output is self._last_output:
                state.images = self.image_records
            else:  # encoded before genaccel.apply or elsewhere: lengths only
                state.images = [ImageRecord(len(f), None) for f in image_output.pooler_output]
        self.forward_state = state
        cache = _cache_of(kwargs)
        if not state.has_images and self._continues(cache) and self.session.dropped:
            positions = self.family.decode_position_ids(kwargs, cache.get_seq_length() + self.session.dropped)
            if positions is not None:
                return args, {**kwargs, "position_ids": positions}
        return None

    def _model_done(self, module, args, output) -> None:
        self.forward_state = None

    def _continues(self, cache: Any) -> bool:
        """Whether a forward without images is a decode step of the pruned generation (same cache)."""
        return (self.session is not None and cache is not None and cache is self.session.cache
                and cache.get_seq_length() > 0)

    # --- text decoder -----------------------------------------------------------------------------
    def _decoder_inputs(self, module, args, kwargs):
        state = self.forward_state
        if module is not self.decoder or state is None:
            return None  # a view of the decoder (a drafter) or a call outside the model's forward
        state.in_decoder = True
        input_ids = state.input_ids
        cache = _cache_of(kwargs)
        if state.has_images:
            if input_ids is None:
                raise ValueError("visual-token pruning needs input_ids (it finds the image tokens there); got "
                                 "inputs_embeds with images")
            if cache is not None and cache.get_seq_length() > 0:
                raise NotImplementedError("visual-token pruning prunes images in the first forward of a generation; "
                                          f"this one holds images after {cache.get_seq_length()} cached tokens")
            self.session = None
            return self._prefill(state, args, kwargs, input_ids, cache)
        if self._continues(cache):
            state.phase = "decode"
            return self._decode(args, kwargs, cache) if self.session.stage == "before_lm" else None
        self.session = None  # a new image-free sequence
        return None

    def _decoder_done(self, module, args, output) -> None:
        state = self.forward_state
        if module is not self.decoder or state is None:
            return
        state.in_decoder = False
        if self.session is not None and self.session.cache is None and output is not None:
            for name in ("cache", "past_key_values"):  # transformers >= 5.24, before
                if name in output and output[name] is not None:
                    self.session.cache = output[name]
                    break

    def _images(self, state: ForwardState, input_ids: torch.Tensor) -> tuple[list[list[torch.Tensor]], list[list[int]]]:
        """Per row, each image's positions and the number of its tokens to keep."""
        if state.images is None:
            raise RuntimeError("the image features reached the language model without passing through "
                               "get_image_features while visual-token pruning was applied")
        rows = image_positions(input_ids, self.family.image_token_id, [image.length for image in state.images])
        keeps, image = [], 0
        for images in rows:
            keeps.append([])
            for positions in images:
                keeps[-1].append(self.config.tokens_to_keep(positions.numel(), image))
                image += 1
        return rows, keeps

    def _image_tokens(self, state: ForwardState, rows, features_of, text_attention=None) -> list[list[ImageTokens]]:
        tokens, image = [], 0
        for row, images in enumerate(rows):
            tokens.append([])
            for in_row, positions in enumerate(images):
                # seeded per image by its place in its row: a row draws the same tokens in any batch
                generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + in_row)
                scores = state.images[image].scores
                if self.method.vision_layers and scores is None:
                    raise RuntimeError(f"{self.config.method} reads the vision tower's attention, but these image "
                                       "features were computed before genaccel.apply or outside this model")
                tokens[-1].append(ImageTokens(
                    features=features_of(row, positions), vision_scores=scores,
                    text_attention=None if text_attention is None else text_attention[row, positions],
                    image_index=image, generator=generator))
                image += 1
        return tokens

    def _select(self, tokens: list[list[ImageTokens]], keeps: list[list[int]]) -> list[list[Selection]]:
        selections = []
        for row_tokens, row_keeps in zip(tokens, keeps):
            selections.append([])
            for image, keep in zip(row_tokens, row_keeps):
                n = image.features.shape[0]
                if keep == n:
                    selection = Selection(kept=torch.arange(n, device=image.features.device))
                else:
                    selection = self.method.select(image, keep)
                    if selection.kept.shape != (keep,):
                        raise RuntimeError(f"{type(self.method).__name__} kept {tuple(selection.kept.shape)} tokens "
                                           f"of image {image.image_index}, asked for {keep}")
                selections[-1].append(selection)
        return selections

    def _prefill(self, state: ForwardState, args, kwargs, input_ids: torch.Tensor, cache: Any):
        rows, keeps = self._images(state, input_ids)
        if all(keep == positions.numel() for images, row in zip(rows, keeps) for positions, keep in zip(images, row)):
            return None  # every image kept whole: the model as it is
        embeds = kwargs["inputs_embeds"]
        length = embeds.shape[1]
        mask = kwargs.get("attention_mask")
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dim() != 2):
            raise ValueError("visual-token pruning needs a 2-D attention mask (leave cache_implementation unset); got "
                             f"{type(mask).__name__}{tuple(mask.shape) if isinstance(mask, torch.Tensor) else ''}")
        state.phase = "prefill"
        if self.method.stage == "in_lm":
            last = (torch.full((embeds.shape[0],), length - 1, device=embeds.device) if mask is None else
                    length - 1 - mask.flip(1).long().argmax(dim=1))
            state.scoring = Scoring(images=rows, keeps=keeps, last=last, mask=mask)
            self.session = Session(stage="in_lm", prompt_length=length, cache=cache)
            return None
        tokens = self._image_tokens(state, rows, lambda row, positions: embeds[row, positions])
        selections = self._select(tokens, keeps)
        index, real = kept_index(length, rows, selections, embeds.device)
        self.session = Session(stage="before_lm", prompt_length=length, kept=index, real=real, cache=cache)

        new = dict(kwargs)
        new["inputs_embeds"] = scatter_features(gather_tokens(embeds, index, dim=1), index, rows, selections)
        kept_mask = (torch.ones_like(index) if mask is None else mask.gather(1, index))
        # explicit even when all ones: with no mask and no cache the model would read the gaps in the
        # position ids as packed sequences
        new["attention_mask"] = kept_mask if real is None else kept_mask * real.to(kept_mask.dtype)
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = torch.arange(length, device=embeds.device)[None]
        new["position_ids"] = gather_positions(positions, index)
        return args, new

    def select_in_lm(self, scoring: Scoring, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer k: the (B, L') positions fastv keeps, from the scores layer k - 1 left, and the
        (B, L') real-token flags (None without fillers)."""
        if scoring.scores is None:
            raise RuntimeError(f"layer {self.config.layer - 1}'s attention was not scored before layer "
                               f"{self.config.layer} ran")
        self.last_text_attention = scoring.scores
        tokens = self._image_tokens(self.forward_state, scoring.images,
                                    lambda row, positions: hidden[row, positions], text_attention=scoring.scores)
        selections = self._select(tokens, scoring.keeps)
        return kept_index(hidden.shape[1], scoring.images, selections, hidden.device)

    def _decode(self, args, kwargs: dict[str, Any], cache: Any):
        session = self.session
        new = dict(kwargs)
        mask = kwargs.get("attention_mask")
        length = session.prompt_length
        embeds = kwargs["inputs_embeds"]
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
                raise ValueError("visual-token pruning needs a 2-D attention mask in decode steps (leave "
                                 "cache_implementation unset)")
            prompt = mask[:, :length].gather(1, session.kept)
            if session.real is not None:
                prompt = prompt * session.real.to(prompt.dtype)
            new["attention_mask"] = torch.cat([prompt, mask[:, length:]], dim=1)
        elif session.real is not None:
            rest = cache.get_seq_length() + embeds.shape[1] - session.kept.shape[1]
            new["attention_mask"] = torch.cat([session.real.long(), session.real.new_ones(
                (session.real.shape[0], rest), dtype=torch.long)], dim=1)
        if kwargs.get("position_ids") is None:
            start = cache.get_seq_length() + session.dropped
            new["position_ids"] = torch.arange(start, start + embeds.shape[1], device=embeds.device)[None]
        return args, new

    # --- removal ----------------------------------------------------------------------------------
    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        if self.recorder is not None:
            self.recorder.close()
        if self.in_lm is not None:
            self.in_lm.close()
        if self._wrapper is not None:
            if self.base.__dict__.get("get_image_features") is self._wrapper:
                if self._original_attribute is None:
                    del self.base.get_image_features
                else:
                    self.base.get_image_features = self._original_attribute
            else:
                warnings.warn(f"genaccel.remove: {type(self.base).__name__}.get_image_features was replaced after "
                              "genaccel.apply; the replacement was left in place", stacklevel=3)
        self.forward_state = self.session = None


def apply_token_pruning(model: nn.Module, config: VisualTokenPruningConfig) -> nn.Module:
    """Prune `model`'s visual tokens as `config` says (instance hooks only). Returns `model`."""
    if not isinstance(config, VisualTokenPruningConfig):
        raise TypeError(f"config must be genaccel.VisualTokenPruningConfig, got {type(config).__name__}")
    family_of(model)  # raises for unsupported classes
    if getattr(model, PATCH_ATTRIBUTE, None) is not None:
        raise ValueError(f"this {type(model).__name__} already has visual-token pruning "
                         f"({getattr(model, PATCH_ATTRIBUTE).config.describe()}); call genaccel.remove first")
    setattr(model, PATCH_ATTRIBUTE, TokenPruningPatch(model, config))
    return model


def remove_token_pruning(model: nn.Module) -> nn.Module:
    """Take every hook and attribute `apply_token_pruning` added off `model`. Returns `model`."""
    patch = getattr(model, PATCH_ATTRIBUTE, None)
    if patch is None:
        raise ValueError(f"genaccel.remove: this {type(model).__name__} has no visual-token pruning applied")
    patch.remove()
    delattr(model, PATCH_ATTRIBUTE)
    return model


def is_pruned(model: Any) -> bool:
    """Whether visual-token pruning is applied to `model`."""
    return getattr(model, PATCH_ATTRIBUTE, None) is not None


def accepts(target: Any) -> bool:
    """Whether `target` is a model visual-token pruning handles (applied or not)."""
    return is_pruned(target) or is_supported(target)


def pruning_config(model: Any) -> VisualTokenPruningConfig | None:
    """The config applied to `model`, or None."""
    patch = getattr(model, PATCH_ATTRIBUTE, None)
    return None if patch is None else patch.config


def last_kept_positions(model: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """What the last pruned prefill kept (for in-LM methods: from layer k on): (B, L') prompt positions
    and (B, L') bool, False at fillers (dropped positions kept masked out so rows that drop fewer
    tokens line up); None when it kept everything. For drafters and tests that line positions up."""
    patch = getattr(model, PATCH_ATTRIBUTE, None)
    if patch is None:
        raise ValueError(f"this {type(model).__name__} has no visual-token pruning applied")
    session = patch.session
    if session is None or session.kept is None:
        return None
    real = session.real if session.real is not None else torch.ones_like(session.kept, dtype=torch.bool)
    return session.kept, real
