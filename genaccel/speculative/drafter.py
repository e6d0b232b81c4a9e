"""The drafter interface: propose k tokens, then learn what the target accepted.

The decoding loop (`genaccel.speculative.generate`) calls, per generation:
`start(prefill)` once after the target's prefill, then repeatedly `propose(input_ids, k, chooser)`
and `observe(input_ids, hidden_states)` with the target's last hidden states of the positions
that were kept. Drafters never change what is emitted, only how many target passes it takes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from genaccel.speculative.draft_length import DraftLength
from genaccel.speculative.target import TargetSpec, check_target_supported, target_spec


@dataclass
class Prefill:
    """What the target computed over the prompt (batch size 1)."""

    input_ids: torch.Tensor  # (1, L) prompt ids
    input_embeds: torch.Tensor  # (1, L or L', D) the target's input embeddings (visual features merged in)
    hidden_states: torch.Tensor  # (1, L or L', D) the target's last-layer hidden states
    visual_mask: torch.Tensor  # (1, L) bool, True on image/video placeholder positions
    # (L',) the prompt positions a visual-token-pruned target kept (the columns of its shorter
    # hidden states, and of its input embeddings when it pruned before the language model); None: all
    kept_positions: torch.Tensor | None = None

    def positions_of(self, states: torch.Tensor) -> torch.Tensor:
        """(n,) the prompt position of each column of `states` (input_embeds or hidden_states)."""
        length = states.shape[1]
        if length == self.input_ids.shape[1]:
            return torch.arange(length, device=states.device)
        if self.kept_positions is None or self.kept_positions.shape[0] != length:
            raise ValueError(f"prefill states of {length} positions line up neither with the "
                             f"{self.input_ids.shape[1]}-token prompt nor with the positions a pruned target kept")
        return self.kept_positions.to(states.device)

    def visual_mask_of(self, states: torch.Tensor) -> torch.Tensor:
        """(1, n) the visual mask lined up with `states`' columns."""
        return self.visual_mask[:, self.positions_of(states)]


@dataclass
class Draft:
    """k proposed tokens and, when sampling, the distribution each was drawn from."""

    tokens: torch.Tensor  # (1, k)
    probs: torch.Tensor | None  # (1, k, V) draft distributions q; None for greedy drafts


class Drafter(ABC):
    """A source of draft tokens for one target model."""

    #: the drafter reads the target's last hidden states in `observe` (costs nothing extra to return)
    needs_hidden_states: bool = True

    def __init__(self, spec: TargetSpec, draft_len: int, adaptive: bool = True):
        self.spec = spec
        self.draft_length = DraftLength(max_length=draft_len, adaptive=adaptive)

    def check_target(self, model: PreTrainedModel) -> None:
        """Raise ValueError when `model` is not the kind of target this drafter was built for, or
        cannot be decoded speculatively at all (`UnsupportedTargetError`)."""
        check_target_supported(model)
        self.spec.check_matches(target_spec(model), type(self).__name__)

    def start(self, prefill: Prefill) -> None:
        """Reset per-generation state from the target's prefill (subclasses call super().start)."""
        self.draft_length.reset()

    @abstractmethod
    def propose(self, input_ids: torch.Tensor, num_tokens: int, chooser) -> Draft:
        """Propose `num_tokens` tokens to follow `input_ids` (1, L), chosen with `chooser`."""

    @abstractmethod
    def observe(self, input_ids: torch.Tensor, hidden_states: torch.Tensor | None) -> None:
        """After verification: `input_ids` (1, L') now ends with the emitted tokens;
        `hidden_states` (1, n, D) are the target's last hidden states of the n positions
        that entered the target cache this round (their tokens are input_ids[:, -n-1:-1]),
        or None when `needs_hidden_states` is False."""
