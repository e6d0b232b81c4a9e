"""FlashDrafter: the FLASH head as a drafter, with safetensors save/load.

The head (`FlashHead`) is the only trainable part; the target's token embeddings and LM head are
used frozen and never saved. Per generation the drafter pools the visual span once (from the
target's prefill hidden states), keeps the target's last hidden states of every position that
entered the target cache, and proposes up to `draft_len` tokens with one head pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from genaccel.speculative.drafter import Draft, Drafter, Prefill
from genaccel.speculative.flash_head import FlashConfig, FlashHead
from genaccel.speculative.target import TargetSpec, output_head, target_spec
from genaccel.speculative.verification import TokenChooser

CONFIG_NAME = "flash_config.json"
WEIGHTS_NAME = "model.safetensors"


class FlashDrafter(Drafter):
    """FLASH: a trained draft head on the target's hidden states, lossless under verification."""

    def __init__(self, head: FlashHead, model: PreTrainedModel, adaptive: bool = True):
        config = head.config
        super().__init__(TargetSpec(config.target_model_type, config.vocab_size, config.hidden_size),
                         draft_len=config.draft_len, adaptive=adaptive)
        self.check_target(model)
        self.head = head
        self.lm_head = output_head(model)
        self.embed_tokens = model.get_input_embeddings()

    @classmethod
    def from_target(cls, model: PreTrainedModel, num_queries: int = 64, draft_len: int = 4,
                    context_window: int = 16, num_heads: int | None = None, seed: int | None = 0,
                    adaptive: bool = True) -> "FlashDrafter":
        """A new, untrained head sized for `model` (drafts are poor until trained, output is still exact)."""
        spec = target_spec(model)
        if num_heads is None:
            num_heads = max(1, spec.hidden_size // 128) if spec.hidden_size >= 128 else 1
        config = FlashConfig(hidden_size=spec.hidden_size, vocab_size=spec.vocab_size,
                             target_model_type=spec.model_type, num_queries=num_queries, draft_len=draft_len,
                             context_window=context_window, num_heads=num_heads)
        if seed is not None:
            torch.manual_seed(seed)
        lm_head = output_head(model)
        head = FlashHead(config).to(device=lm_head.weight.device, dtype=lm_head.weight.dtype).eval()
        return cls(head, model, adaptive=adaptive)

    @classmethod
    def from_pretrained(cls, path: str | Path, model: PreTrainedModel, adaptive: bool = True) -> "FlashDrafter":
        """Load a head saved with `save_pretrained`; ValueError if it was trained for another target."""
        path = Path(path)
        config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not config_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"no FLASH drafter at {path}: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
                                    "(written by FlashDrafter.save_pretrained or `genaccel train-drafter`)")
        config = FlashConfig(**json.loads(config_path.read_text()))
        TargetSpec(config.target_model_type, config.vocab_size, config.hidden_size).check_matches(
            target_spec(model), f"FLASH drafter at {path}")
        head = FlashHead(config)
        head.load_state_dict(load_file(weights_path))
        lm_head = output_head(model)
        head = head.to(device=lm_head.weight.device, dtype=lm_head.weight.dtype).eval()
        return cls(head, model, adaptive=adaptive)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.head.config.to_dict(), indent=2))
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.head.state_dict().items()}
        save_file(state, path / WEIGHTS_NAME)

    def start(self, prefill: Prefill) -> None:
        super().start(prefill)
        head_dtype = self.head.fuse.weight.dtype
        with torch.no_grad():
            visual = prefill.hidden_states[prefill.visual_mask_of(prefill.hidden_states)][None].to(head_dtype)
            self._pooled_visual = self.head.pool_visual(visual)  # from (1, Nv, D)
        self._hidden = prefill.hidden_states.to(head_dtype)  # (1, positions in target cache, D)
        # the sequence position of each hidden state: a pruned target's prompt has gaps
        self._positions = prefill.positions_of(prefill.hidden_states)

    def context(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Last-window context for the newest hidden state: (hidden, next-token embeds, valid)."""
        window = self.head.config.context_window
        newest = hidden.shape[1] - 1
        start = max(0, newest - window + 1)
        context_hidden = hidden[:, start:newest + 1]
        next_positions = self._positions[start:newest + 1] + 1  # the token after each context position
        context_embeds = self.embed_tokens(input_ids[:, next_positions]).to(context_hidden.dtype)
        pad = window - context_hidden.shape[1]
        valid = torch.ones(1, window, dtype=torch.bool, device=hidden.device)
        if pad:
            zeros = context_hidden.new_zeros(1, pad, context_hidden.shape[2])
            context_hidden = torch.cat([zeros, context_hidden], dim=1)
            context_embeds = torch.cat([zeros, context_embeds], dim=1)
            valid[:, :pad] = False
        return context_hidden, context_embeds, valid

    @torch.no_grad()
    def propose(self, input_ids: torch.Tensor, num_tokens: int, chooser: TokenChooser) -> Draft:
        if self._hidden.shape[1] != self._positions.shape[0] or int(self._positions[-1]) != input_ids.shape[1] - 2:
            raise RuntimeError("FlashDrafter is out of sync with the target (start/observe not called in order)")
        slots = self.head(self._pooled_visual, *self.context(input_ids, self._hidden))
        logits = self.lm_head(slots[:, :num_tokens].to(self.lm_head.weight.dtype))  # (1, k, V)
        if not chooser.do_sample and len(chooser.logits_processor) == 0:  # plain argmax: all slots at once
            return Draft(tokens=logits.argmax(dim=-1), probs=None)
        tokens, probs, prefix = [], [], input_ids
        for position in range(logits.shape[1]):
            token, q = chooser.choose(prefix, logits[:, position])
            tokens.append(token)
            probs.append(q)
            prefix = torch.cat([prefix, token[:, None]], dim=1)
        draft_probs = torch.stack(probs, dim=1) if chooser.do_sample else None
        return Draft(tokens=torch.stack(tokens, dim=1), probs=draft_probs)

    def observe(self, input_ids: torch.Tensor, hidden_states: torch.Tensor | None) -> None:
        self._hidden = torch.cat([self._hidden, hidden_states.to(self._hidden.dtype)], dim=1)
        after = int(self._positions[-1]) + 1
        self._positions = torch.cat([self._positions, torch.arange(after, after + hidden_states.shape[1],
                                                                   device=self._positions.device)])
