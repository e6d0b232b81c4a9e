"""Speculative decoding through `model.generate(custom_generate=...)`.

`speculative_decoding` is a decoding method with the signature transformers 5.x calls for a
callable `custom_generate`: `generate` prepares the GenerationConfig, the logits processors and
stopping criteria, the attention mask and (multimodal) position ids exactly as for its own
decoding, then hands them here. So the processors that shape p are transformers' own, built from
the same config, and stopping (EOS, max_length, stop strings) is decided by the same criteria,
token by token. What differs between transformers releases (the cache's name, how inputs are
sliced and extended, `crop`) lives in `transformers_compat`.

Acceptance length = tokens emitted per target forward, including the bonus token; the prefill
forward (which emits the first token) counts, so vanilla decoding is exactly 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList

from genaccel.speculative.drafter import Draft, Drafter, Prefill
from genaccel.speculative.target import LastHiddenStateRecorder, check_target_supported, text_decoder, visual_mask
from genaccel.speculative.transformers_compat import (
    TransformersIncompatibilityError, check_per_token_inputs, check_rope_supported, croppable_cache, drop_last_tokens,
    exact_draft_limit, extend_per_token_inputs, pop_cache, prepare_inputs, returned_cache, use_given_cache)
from genaccel.speculative.verification import TokenChooser, verify


@dataclass
class SpeculativeOutput:
    """Result of speculative decoding; `sequences` is what `model.generate` returns."""

    sequences: torch.LongTensor  # (1, prompt + new tokens)
    num_new_tokens: int
    num_target_forwards: int
    num_drafted: int  # draft tokens sent to verification
    num_accepted: int  # draft tokens the target accepted and that were emitted (none after a stop)

    @property
    def acceptance_length(self) -> float:
        """Tokens emitted per target forward, including the bonus token (vanilla = 1.0)."""
        return self.num_new_tokens / max(self.num_target_forwards, 1)

    @property
    def acceptance_rate(self) -> float:
        """Share of draft tokens accepted (and emitted: drafts after a stopping token are not counted)."""
        return self.num_accepted / self.num_drafted if self.num_drafted else 0.0


def _check_supported(model: PreTrainedModel, input_ids: torch.Tensor, generation_config: GenerationConfig,
                     drafter: Drafter | None, model_kwargs: dict[str, Any]) -> None:
    if not isinstance(drafter, Drafter):
        raise TypeError(f"speculative decoding needs `drafter=` a genaccel Drafter (SelfDrafter, FlashDrafter), "
                        f"got {type(drafter).__name__}")
    if generation_config.num_beams != 1 or generation_config.num_return_sequences != 1:
        raise ValueError("speculative decoding supports num_beams=1 and num_return_sequences=1 only, got "
                         f"{generation_config.num_beams} and {generation_config.num_return_sequences}")
    if input_ids.shape[0] != 1:
        raise ValueError(f"speculative decoding supports batch size 1 only, got batch size {input_ids.shape[0]}; "
                         "call it once per prompt.")
    requested = [name for name in ("output_scores", "output_logits", "output_attentions", "output_hidden_states")
                 if getattr(generation_config, name, False)]
    if requested:
        raise ValueError(f"speculative decoding returns sequences and acceptance statistics only; "
                         f"{', '.join(requested)} is not supported")
    check_target_supported(model)
    check_rope_supported(model, generation_config.max_length)
    if generation_config.use_cache is False or model_kwargs.get("use_cache") is False:
        raise ValueError("use_cache=False is not supported: speculative decoding keeps the target's KV cache and crops "
                         "it after rejected drafts; pass use_cache=True (also where the model's generation config "
                         "sets use_cache=False)")
    if model_kwargs.get("inputs_embeds") is not None:
        raise ValueError("speculative decoding needs input_ids (drafters read token ids); got inputs_embeds")
    drafter.check_target(model)


def _kept_positions(model: PreTrainedModel, hidden_length: int, prompt_length: int) -> torch.Tensor | None:
    """(L',) the prompt positions behind a visual-token-pruned target's shorter hidden states; None if unpruned."""
    if hidden_length == prompt_length:
        return None
    from genaccel.token_pruning import last_kept_positions

    try:
        kept = last_kept_positions(model)
    except ValueError:
        kept = None
    if kept is None or kept[0].shape[1] != hidden_length:
        raise TransformersIncompatibilityError(
            f"{type(model).__name__}'s prefill returned {hidden_length} hidden states for a "
            f"{prompt_length}-token prompt")
    return kept[0][0]


def speculative_decoding(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    drafter: Drafter | None = None,
    **model_kwargs: Any,
) -> SpeculativeOutput:
    """Decoding method for `model.generate(custom_generate=speculative_decoding, drafter=...)`."""
    _check_supported(model, input_ids, generation_config, drafter, model_kwargs)
    chooser = TokenChooser(logits_processor, generation_config.do_sample)
    cache = croppable_cache(pop_cache(model_kwargs))
    prompt_length = input_ids.shape[1]
    check_per_token_inputs(model_kwargs, prompt_length)

    # The drafters read the target's last hidden states (the text decoder's `last_hidden_state`, 3-D
    # also where `output_hidden_states` holds several streams per layer, as in Gemma3n) from a hook on
    # the text decoder instance, cheaper than output_hidden_states=True, which keeps every layer; the
    # hook is removed when decoding ends.
    recorder = LastHiddenStateRecorder(text_decoder(model))
    try:
        # Prefill: one target forward over the prompt, emitting the first token.
        model_inputs = prepare_inputs(model, input_ids, model_kwargs, cache, new_tokens=None)
        cache = use_given_cache(model, model_inputs, cache, input_ids.shape[1])
        outputs = model(**model_inputs, output_hidden_states=True, return_dict=True)
        if returned_cache(outputs) is not cache:
            raise TransformersIncompatibilityError(f"{type(model).__name__} did not fill the cache it was given")
        model_kwargs = extend_per_token_inputs(model_kwargs, 1)
        drafter.start(Prefill(input_ids=input_ids, input_embeds=outputs.hidden_states[0],
                              hidden_states=recorder.value, visual_mask=visual_mask(model, input_ids),
                              kept_positions=_kept_positions(model, recorder.value.shape[1], prompt_length)))
        first_token, _ = chooser.choose(input_ids, outputs.logits[:, -1])
        input_ids = torch.cat([input_ids, first_token[:, None]], dim=1)
        num_forwards, num_drafted, num_accepted = 1, 0, 0
        finished = bool(stopping_criteria(input_ids, None).any())
        del outputs
        if not drafter.needs_hidden_states:
            recorder.close()
            recorder = None

        while not finished:
            budget = generation_config.max_length - input_ids.shape[1]  # tokens still allowed
            # at most as many drafts as keep the verification forward equal to one-token steps (long-rope switch)
            limit = exact_draft_limit(model, input_ids.shape[1])
            num_draft = max(0, min(drafter.draft_length.current, budget - 1, limit))
            if num_draft > 0:
                draft = drafter.propose(input_ids, num_draft, chooser)
            else:
                draft = Draft(tokens=input_ids.new_zeros((1, 0)), probs=None)
            num_draft = draft.tokens.shape[1]
            candidate_ids = torch.cat([input_ids, draft.tokens.to(input_ids)], dim=1)
            # attention mask / position ids extended over the drafts
            candidate_kwargs = extend_per_token_inputs(model_kwargs, num_draft)
            model_inputs = prepare_inputs(model, candidate_ids, candidate_kwargs, cache, new_tokens=num_draft + 1)
            if "logits_to_keep" in model_inputs:
                model_inputs["logits_to_keep"] = num_draft + 1
            # A model may recompute the whole sequence into a new cache (Phi-3 at its long-rope switch):
            # that cache is then a fresh full-layer one of ours, and decoding continues with it.
            cache = use_given_cache(model, model_inputs, cache, candidate_ids.shape[1])
            outputs = model(**model_inputs, return_dict=True)
            if returned_cache(outputs) is not cache:
                raise TransformersIncompatibilityError(f"{type(model).__name__} did not fill the cache it was given")
            num_forwards += 1

            emitted = verify(chooser, input_ids, draft.tokens.to(input_ids), draft.probs,
                             outputs.logits[:, -(num_draft + 1):])
            num_drafted += num_draft
            kept = 0
            for token in emitted[0]:
                input_ids = torch.cat([input_ids, token.view(1, 1)], dim=1)
                kept += 1
                if stopping_criteria(input_ids, None).any():
                    finished = True
                    break
            # emitted = accepted drafts + the target's own token; drafts after a stop are not emitted
            num_accepted += min(emitted.shape[1] - 1, kept)
            # The cache now holds every candidate; keep the positions whose tokens were emitted, except
            # the newest token, which the next forward feeds (as after any decoding step).
            drop_last_tokens(cache, num_draft + 1 - kept)
            model_kwargs = extend_per_token_inputs(model_kwargs, kept)
            if not finished:
                # the forward's last num_draft + 1 positions are the candidates (a recomputing forward has more)
                hidden = recorder.value[:, -(num_draft + 1):][:, :kept] if recorder is not None else None
                drafter.observe(input_ids, hidden)
                drafter.draft_length.update(num_draft, emitted.shape[1] - 1)
            del outputs
    finally:
        if recorder is not None:
            recorder.close()

    return SpeculativeOutput(sequences=input_ids, num_new_tokens=input_ids.shape[1] - prompt_length,
                             num_target_forwards=num_forwards, num_drafted=num_drafted, num_accepted=num_accepted)


def speculative_generate(model: PreTrainedModel, drafter: Drafter, **generate_kwargs: Any) -> SpeculativeOutput:
    """`model.generate(**generate_kwargs)` with the drafter's tokens verified by the target.

    Accepts what `generate` accepts (input_ids, attention_mask, pixel_values, max_new_tokens,
    do_sample, temperature, top_k, top_p, generation_config, ...); batch size 1. The output's
    `sequences` equal `model.generate`'s for greedy decoding, and follow the same distribution
    when sampling.
    """
    if "custom_generate" in generate_kwargs:
        raise ValueError("speculative_generate sets custom_generate itself; do not pass it")
    return model.generate(custom_generate=speculative_decoding, drafter=drafter, **generate_kwargs)
