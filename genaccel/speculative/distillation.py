"""Self-distillation data for the FLASH head: the target's own greedy responses and hidden states.

For each (image, prompt) the target generates its response greedily (what speculative decoding
will have to reproduce) and `generate` returns the last hidden state of every position it fed,
computed incrementally exactly as during decoding. Records are saved as one safetensors file so
that resuming training does not regenerate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import PreTrainedModel

from genaccel.speculative.target import visual_mask


@dataclass
class DistillationRecord:
    input_ids: torch.Tensor  # (T,) prompt + the target's greedy response
    hidden: torch.Tensor  # (T - 1, D) last hidden state of positions 0..T-2
    visual: torch.Tensor  # (Nv, D) last hidden states of the visual span (Nv may be 0)
    prompt_length: int


@torch.no_grad()
def distill(model: PreTrainedModel, inputs: Iterable[dict], max_new_tokens: int,
            total: int | None = None, storage_dtype: torch.dtype = torch.float16) -> list[DistillationRecord]:
    """One record per prompt (batch size 1 each) from the target's greedy generation."""
    records = []
    for sample in tqdm(inputs, total=total, desc="self-distillation", unit="prompt"):
        sample = {key: value.to(model.device) if torch.is_tensor(value) else value for key, value in sample.items()}
        prompt_length = sample["input_ids"].shape[1]
        out = model.generate(**sample, max_new_tokens=max_new_tokens, do_sample=False, output_hidden_states=True,
                             return_dict_in_generate=True)
        last_layer = torch.cat([step[-1] for step in out.hidden_states], dim=1)[0]  # (T - 1, D)
        sequence = out.sequences[0]
        mask = visual_mask(model, sequence[None, :prompt_length])[0]
        records.append(DistillationRecord(
            input_ids=sequence.cpu(), hidden=last_layer[: sequence.shape[0] - 1].to("cpu", storage_dtype),
            visual=last_layer[:prompt_length][mask].to("cpu", storage_dtype), prompt_length=prompt_length))
    return records


def save_records(records: list[DistillationRecord], path: str | Path) -> None:
    tensors = {}
    for index, record in enumerate(records):
        tensors[f"{index}.input_ids"] = record.input_ids.contiguous()
        tensors[f"{index}.hidden"] = record.hidden.contiguous()
        tensors[f"{index}.visual"] = record.visual.contiguous()
        tensors[f"{index}.prompt_length"] = torch.tensor([record.prompt_length])
    save_file(tensors, str(path))


def load_records(path: str | Path) -> list[DistillationRecord]:
    tensors = load_file(str(path))
    count = len({name.split(".")[0] for name in tensors})
    return [DistillationRecord(input_ids=tensors[f"{i}.input_ids"], hidden=tensors[f"{i}.hidden"],
                               visual=tensors[f"{i}.visual"], prompt_length=int(tensors[f"{i}.prompt_length"]))
            for i in range(count)]
