"""Lossless verification of draft tokens against the target's logits.

Greedy: keep the longest prefix of draft tokens equal to the target's argmax, then emit the
target's own token at the first mismatch (or after the last draft: the bonus token).
Sampling: speculative rejection sampling (Leviathan et al. 2023, Chen et al. 2023): accept draft
token d with probability min(1, p(d) / q(d)), else emit a token drawn from norm(max(0, p - q)) and
stop; when every draft is accepted, draw the bonus token from p. Emitted tokens then follow the
target's distribution p exactly, whatever q is.

p is built by `TokenChooser` with the same `LogitsProcessorList` that `model.generate` builds from
the GenerationConfig (temperature, top-k, top-p, repetition penalty, ...), applied position by
position to the same prefix `generate` would have seen.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessorList


class TokenChooser:
    """Turns raw logits into processed scores and picks a token, like `generate`'s sampling step."""

    def __init__(self, logits_processor: LogitsProcessorList | None, do_sample: bool):
        self.logits_processor = logits_processor if logits_processor is not None else LogitsProcessorList()
        self.do_sample = do_sample

    def scores(self, prefix_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """(1, V) processed scores for the token after `prefix_ids` (1, L)."""
        logits = logits.to(dtype=torch.float32, copy=True)
        if len(self.logits_processor) == 0:
            return logits
        return self.logits_processor(prefix_ids, logits)

    def choose(self, prefix_ids: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next token (1,) and, when sampling, the distribution (1, V) it was drawn from."""
        scores = self.scores(prefix_ids, logits)
        if not self.do_sample:
            return scores.argmax(dim=-1), None
        probs = scores.softmax(dim=-1)
        return torch.multinomial(probs, num_samples=1).squeeze(1), probs


def verify(chooser: TokenChooser, input_ids: torch.Tensor, draft_tokens: torch.Tensor,
           draft_probs: torch.Tensor | None, target_logits: torch.Tensor) -> torch.Tensor:
    """Tokens to emit (1, n + 1) given n accepted drafts.

    input_ids (1, L): the sequence before the drafts; draft_tokens (1, k); draft_probs (1, k, V) or
    None (a deterministic draft: q is one-hot); target_logits (1, k + 1, V): the target's logits
    after input_ids and after each draft token.
    """
    num_draft = draft_tokens.shape[1]
    if not chooser.do_sample and len(chooser.logits_processor) == 0:  # plain argmax: all positions at once
        target_tokens = target_logits.argmax(dim=-1)  # (1, k + 1)
        mismatches = (target_tokens[:, :num_draft] != draft_tokens).flatten().nonzero()
        accepted = int(mismatches[0]) if mismatches.numel() else num_draft
        return torch.cat([draft_tokens[:, :accepted], target_tokens[:, accepted:accepted + 1]], dim=1)
    candidate_ids = torch.cat([input_ids, draft_tokens], dim=1)
    prefix_length = input_ids.shape[1]
    for position in range(num_draft + 1):
        prefix = candidate_ids[:, : prefix_length + position]
        scores = chooser.scores(prefix, target_logits[:, position])
        if position == num_draft:  # every draft accepted: the bonus token
            bonus = scores.argmax(dim=-1) if not chooser.do_sample else _sample(scores.softmax(dim=-1))
            return torch.cat([draft_tokens, bonus[:, None]], dim=1)
        draft_token = draft_tokens[:, position]
        if not chooser.do_sample:
            target_token = scores.argmax(dim=-1)
            if target_token.item() != draft_token.item():
                return torch.cat([draft_tokens[:, :position], target_token[:, None]], dim=1)
            continue
        target_probs = scores.softmax(dim=-1)
        if draft_probs is None:
            q = torch.zeros_like(target_probs).scatter_(1, draft_token[:, None], 1.0)
        else:
            q = draft_probs[:, position].to(target_probs)
        p_token = target_probs.gather(1, draft_token[:, None]).squeeze(1)
        q_token = q.gather(1, draft_token[:, None]).squeeze(1)
        accept_probability = torch.clamp(p_token / q_token.clamp_min(torch.finfo(q.dtype).tiny), max=1.0)
        if torch.rand_like(accept_probability).item() < accept_probability.item():
            continue
        residual = (target_probs - q).clamp_min(0.0)
        if residual.sum().item() <= 0.0:  # only when p == q: rejection has probability 0 then
            residual = target_probs
        replacement = _sample(residual / residual.sum(dim=-1, keepdim=True))
        return torch.cat([draft_tokens[:, :position], replacement[:, None]], dim=1)
    raise AssertionError("unreachable")


def _sample(probs: torch.Tensor) -> torch.Tensor:
    return torch.multinomial(probs, num_samples=1).squeeze(1)
