"""Sampled tokens follow the target's own distribution (chi-square tests with fixed seeds)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

from genaccel.speculative import SelfDrafter, speculative_generate
from genaccel.speculative.verification import TokenChooser, verify

from tiny_targets import text_inputs, tiny_llama



def _counts(tokens: list[int], size: int) -> torch.Tensor:
    return torch.bincount(torch.tensor(tokens), minlength=size).double()


@pytest.mark.parametrize("deterministic_draft", [False, True])
def test_rejection_sampling_reproduces_p(deterministic_draft):
    """First emitted token of `verify` ~ p, for a draft distribution q far from p."""
    torch.manual_seed(0)
    vocab = 6
    p = torch.tensor([0.05, 0.4, 0.1, 0.25, 0.15, 0.05])
    q = torch.tensor([0.5, 0.05, 0.3, 0.05, 0.05, 0.05])
    target_logits = torch.stack([p.log(), torch.zeros(vocab)])[None]  # (1, 2, V): draft position + bonus
    chooser = TokenChooser(LogitsProcessorList(), do_sample=True)
    input_ids = torch.zeros(1, 3, dtype=torch.long)
    samples = 20_000
    first = []
    for _ in range(samples):
        draft = torch.multinomial(q, 1)[None] if not deterministic_draft else torch.tensor([[0]])
        emitted = verify(chooser, input_ids, draft, None if deterministic_draft else q[None, None], target_logits)
        first.append(emitted[0, 0].item())
    result = chisquare(_counts(first, vocab).numpy(), (p * samples).numpy())
    assert result.pvalue > 1e-3, result


def test_sampled_tokens_follow_the_target_distribution():
    """Joint law of the first two sampled tokens (the second goes through rejection sampling) equals
    p(t1) p(t2 | t1) under generate's own temperature and top-k processing."""
    model = tiny_llama(seed=2)
    inputs = text_inputs(4)
    temperature, top_k = 1.5, 3
    processors = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k)])
    prompt = inputs["input_ids"]
    with torch.no_grad():
        first_probs = processors(prompt, model(prompt).logits[:, -1]).softmax(-1)[0]
        expected = {}
        for t1 in first_probs.nonzero().flatten().tolist():
            ids = torch.cat([prompt, torch.tensor([[t1]])], dim=1)
            second = processors(ids, model(ids).logits[:, -1]).softmax(-1)[0]
            for t2 in second.nonzero().flatten().tolist():
                expected[(t1, t2)] = (first_probs[t1] * second[t2]).item()
    drafter = SelfDrafter.from_target(model, num_layers=1, draft_len=1, adaptive=False)
    torch.manual_seed(0)
    samples = 800
    observed = dict.fromkeys(expected, 0)
    for _ in range(samples):
        # 3 new tokens: t1 from the prefill, t2 drafted and verified, t3 the bonus token
        out = speculative_generate(model, drafter, **inputs, max_new_tokens=3, do_sample=True,
                                   temperature=temperature, top_k=top_k)
        assert out.num_drafted == 1  # t2 went through verification (accepted or resampled)
        pair = tuple(out.sequences[0, prompt.shape[1]:prompt.shape[1] + 2].tolist())
        assert pair in observed, f"{pair} has probability 0 under the target"
        observed[pair] += 1
    keys = sorted(expected)
    result = chisquare([observed[k] for k in keys], [expected[k] * samples for k in keys])
    assert result.pvalue > 1e-3, result


def test_sampling_with_top_k_1_reproduces_greedy_for_every_drafter():
    """top_k=1 makes p one-hot: rejection sampling must then emit exactly the greedy tokens."""
    from genaccel.speculative import FlashDrafter

    from tiny_targets import llava_inputs, tiny_llava

    model = tiny_llava()
    inputs = llava_inputs(3)
    greedy = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    torch.manual_seed(0)
    for drafter in (SelfDrafter.from_target(model, num_layers=2, visual_tokens=4),
                    FlashDrafter.from_target(model, num_queries=4, draft_len=4, context_window=4)):
        out = speculative_generate(model, drafter, **inputs, max_new_tokens=20, do_sample=True, top_k=1,
                                   temperature=0.7)
        assert torch.equal(out.sequences, greedy)
