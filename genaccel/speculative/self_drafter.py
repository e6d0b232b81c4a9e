"""SelfDrafter: training-free layer-skip self-speculation for multimodal targets.

The draft model is the target itself cut after its first `num_layers` decoder layers, followed by
the target's final norm and LM head (shared modules, no copies of weights). It reads a compressed
view of the visual tokens (M pooled or selected tokens instead of all of them), so its prefill and
KV cache are short, and it keeps its own DynamicCache, resynchronised to the emitted tokens before
each proposal.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from genaccel.speculative.drafter import Draft, Drafter, Prefill
from genaccel.speculative.target import (check_layer_skip_supported, check_target_supported, decoder_layers,
                                         output_head, target_spec, text_decoder)
from genaccel.speculative.transformers_compat import cache_keyword, drop_last_tokens
from genaccel.speculative.verification import TokenChooser
from genaccel.speculative.visual_compression import compress_visual_tokens


def truncated_decoder(decoder: nn.Module, num_layers: int) -> nn.Module:
    """A view of `decoder` running only its first `num_layers` layers (modules are shared)."""
    if not isinstance(getattr(decoder, "layers", None), nn.ModuleList):
        raise TypeError(f"SelfDrafter needs a text decoder with `layers` to truncate; "
                        f"{type(decoder).__name__} has none")
    total = len(decoder.layers)
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers must be in 1..{total} for this target, got {num_layers}")
    view = copy.copy(decoder)
    for name, value in vars(decoder).items():  # own module/parameter/hook dicts: hooks on the target stay its own
        if isinstance(value, dict):
            setattr(view, name, type(value)(value))
    view.layers = nn.ModuleList(list(decoder.layers)[:num_layers])
    config = copy.deepcopy(decoder.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:
        try:
            config.layer_types = list(config.layer_types)[:num_layers]
        except AttributeError:  # a read-only property derived from other fields (recurrent configs, refused before)
            raise TypeError(f"cannot truncate {type(config).__name__}.layer_types (read-only) "
                            "for a layer-skip draft") from None
    view.config = config
    return view


class SelfDrafter(Drafter):
    """Drafts with the target's early layers and LM head over a compressed visual context."""

    needs_hidden_states = False

    def __init__(self, model: PreTrainedModel, num_layers: int, visual_tokens: int, visual_compression: str,
                 draft_len: int, adaptive: bool):
        check_target_supported(model)
        check_layer_skip_supported(model)
        decoder_layers(model)  # TypeError naming the model class when there are none
        super().__init__(target_spec(model), draft_len=draft_len, adaptive=adaptive)
        self.decoder = truncated_decoder(text_decoder(model), num_layers)
        self.lm_head = output_head(model)
        self.embed_tokens = model.get_input_embeddings()
        self.visual_tokens = visual_tokens
        self.visual_compression = visual_compression
        self._cache: DynamicCache | None = None
        self._cache_keyword = cache_keyword(self.decoder)

    @classmethod
    def from_target(cls, model: PreTrainedModel, num_layers: int | None = None, visual_tokens: int = 64,
                    visual_compression: str = "pool", draft_len: int = 4, adaptive: bool = True) -> "SelfDrafter":
        """Training-free drafter; `num_layers` defaults to a quarter of the target's layers.

        Raises UnsupportedTargetError for targets speculative decoding cannot roll back (recurrent,
        hybrid, cross-attention) or whose first layers cannot draft alone (Gemma3n), and TypeError
        for decoders without `layers` (GPT-2 style).
        """
        check_target_supported(model)
        check_layer_skip_supported(model)
        total = len(decoder_layers(model))
        num_layers = num_layers if num_layers is not None else max(1, total // 4)
        return cls(model, num_layers, visual_tokens, visual_compression, draft_len, adaptive)

    @torch.no_grad()
    def _forward(self, embeds: torch.Tensor) -> torch.Tensor:
        """Run the truncated decoder on new embeddings (1, n, D); logits (1, V) after the last one."""
        past = self._cache.get_seq_length()
        positions = torch.arange(past, past + embeds.shape[1], device=embeds.device)[None]
        hidden = self.decoder(inputs_embeds=embeds, position_ids=positions, use_cache=True,
                              **{self._cache_keyword: self._cache}).last_hidden_state
        return self.lm_head(hidden[:, -1])

    def start(self, prefill: Prefill) -> None:
        super().start(prefill)
        # saliency per input position; positions a pruned target dropped inside its LM (no last hidden state) never win
        scores = prefill.hidden_states.new_full(prefill.input_embeds.shape[:2], float("-inf"))
        columns = torch.searchsorted(prefill.positions_of(prefill.input_embeds),
                                     prefill.positions_of(prefill.hidden_states))
        scores[:, columns] = prefill.hidden_states.norm(dim=-1)
        prompt = compress_visual_tokens(prefill.input_embeds, prefill.visual_mask_of(prefill.input_embeds),
                                        self.visual_tokens, self.visual_compression, scores)
        self._cache = DynamicCache()
        self._prompt_ids_length = prefill.input_ids.shape[1]
        # The last prompt position is fed together with the first generated token on the first proposal.
        if prompt.shape[1] > 1:
            self._forward(prompt[:, :-1])
        self._last_prompt_embed = prompt[:, -1:]
        self._cached_tokens: list[int] = []  # generated tokens whose keys/values are in the cache

    @torch.no_grad()
    def propose(self, input_ids: torch.Tensor, num_tokens: int, chooser: TokenChooser) -> Draft:
        generated = input_ids[0, self._prompt_ids_length:].tolist()
        common = 0
        while common < min(len(self._cached_tokens), len(generated) - 1) and \
                self._cached_tokens[common] == generated[common]:
            common += 1
        drop_last_tokens(self._cache, len(self._cached_tokens) - common)
        pending = torch.tensor([generated[common:]], device=input_ids.device)
        embeds = self.embed_tokens(pending)
        if self._last_prompt_embed is not None:
            embeds = torch.cat([self._last_prompt_embed, embeds], dim=1)
            self._last_prompt_embed = None
        tokens, probs = [], []
        prefix = input_ids
        logits = self._forward(embeds)
        for step in range(num_tokens):
            token, q = chooser.choose(prefix, logits)
            tokens.append(token)
            probs.append(q)
            prefix = torch.cat([prefix, token[:, None]], dim=1)
            if step + 1 < num_tokens:
                logits = self._forward(self.embed_tokens(token[:, None]))
        self._cached_tokens = generated + [t.item() for t in tokens[:-1]]
        draft_probs = torch.stack(probs, dim=1) if chooser.do_sample else None
        return Draft(tokens=torch.stack(tokens, dim=1), probs=draft_probs)

    def observe(self, input_ids: torch.Tensor, hidden_states: torch.Tensor | None) -> None:
        """Nothing to learn: the cache is resynchronised lazily in `propose`."""
