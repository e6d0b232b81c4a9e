"""Training the FLASH head on self-distillation records (accelerate; checkpoints and resume).

An example is a record and a position i of its response: the head reads the target's hidden
states and next-token embeddings of positions i - W + 1..i and the pooled visual span, and learns
to predict tokens i + 2 .. i + 1 + k (cross-entropy through the frozen LM head). Batches are drawn
from a generator seeded by (seed, step), so a resumed run sees the batches an unbroken run would.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file
from tqdm import tqdm

from genaccel.speculative.distillation import DistillationRecord
from genaccel.speculative.flash_drafter import CONFIG_NAME, WEIGHTS_NAME, FlashDrafter

IGNORE = -100


@dataclass
class TrainingOptions:
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    save_every: int = 200
    seed: int = 0


def training_positions(records: list[DistillationRecord]) -> torch.Tensor:
    """(N, 2) (record index, newest position i) for every i with at least one target token."""
    pairs = [(index, position) for index, record in enumerate(records)
             for position in range(record.prompt_length - 1, record.input_ids.shape[0] - 2)]
    if not pairs:
        raise ValueError("no training positions: every response is shorter than two tokens")
    return torch.tensor(pairs)


def make_batch(drafter: FlashDrafter, records: list[DistillationRecord], pairs: torch.Tensor,
               device: torch.device) -> dict[str, torch.Tensor]:
    """Context windows, padded visual spans and k target tokens for each (record, position) pair."""
    config = drafter.head.config
    window, draft_len, dim = config.context_window, config.draft_len, config.hidden_size
    batch = len(pairs)
    context_hidden = torch.zeros(batch, window, dim)
    context_ids = torch.zeros(batch, window, dtype=torch.long)
    valid = torch.zeros(batch, window, dtype=torch.bool)
    targets = torch.full((batch, draft_len), IGNORE, dtype=torch.long)
    max_visual = max(records[int(index)].visual.shape[0] for index, _ in pairs)
    visual = torch.zeros(batch, max_visual, dim)
    for row, (index, position) in enumerate(pairs.tolist()):
        record = records[index]
        start = max(0, position - window + 1)
        length = position + 1 - start
        context_hidden[row, window - length:] = record.hidden[start:position + 1].float()
        context_ids[row, window - length:] = record.input_ids[start + 1:position + 2]
        valid[row, window - length:] = True
        future = record.input_ids[position + 2:position + 2 + draft_len]
        targets[row, : future.shape[0]] = future
        visual[row, : record.visual.shape[0]] = record.visual.float()
    return {"context_hidden": context_hidden.to(device), "context_ids": context_ids.to(device),
            "valid": valid.to(device), "targets": targets.to(device), "visual": visual.to(device)}


def learning_rate_factor(step: int, total_steps: int, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to zero."""
    return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def flash_loss(drafter: FlashDrafter, head: torch.nn.Module, unwrapped_head: torch.nn.Module,
               batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the k slot predictions (positions past the response are ignored)."""
    with torch.no_grad():
        context_embeds = drafter.embed_tokens(batch["context_ids"]).float()
    pooled = unwrapped_head.pool_visual(batch["visual"])
    slots = head(pooled, batch["context_hidden"], context_embeds, batch["valid"])
    logits = F.linear(slots, drafter.lm_head.weight.float(),
                      None if drafter.lm_head.bias is None else drafter.lm_head.bias.float())
    return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE)


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def train_flash_head(drafter: FlashDrafter, records: list[DistillationRecord], output_dir: str | Path,
                     options: TrainingOptions, resume: bool = False) -> list[dict]:
    """Train `drafter.head` in place; saves checkpoints and the final drafter in `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator()
    head = drafter.head.float().train()
    for parameter in list(drafter.lm_head.parameters()) + list(drafter.embed_tokens.parameters()):
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(head.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    head, optimizer = accelerator.prepare(head, optimizer)
    first_step, log = 0, []
    checkpoint = latest_checkpoint(output_dir) if resume else None
    if checkpoint is not None:
        saved_config = json.loads((checkpoint / CONFIG_NAME).read_text())
        if saved_config != drafter.head.config.to_dict():
            raise ValueError(f"cannot resume from {checkpoint}: it was trained with {saved_config}, "
                             f"this run uses {drafter.head.config.to_dict()}")
        accelerator.unwrap_model(head).load_state_dict(load_file(checkpoint / WEIGHTS_NAME))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        first_step, log = state["step"], state["log"]
    pairs = training_positions(records)
    progress = tqdm(range(first_step, options.steps), initial=first_step, total=options.steps,
                    desc="train FLASH head", disable=not accelerator.is_local_main_process)
    for step in progress:
        generator = torch.Generator().manual_seed(options.seed * 1_000_003 + step)
        chosen = pairs[torch.randint(len(pairs), (options.batch_size,), generator=generator)]
        batch = make_batch(drafter, records, chosen, accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = options.learning_rate * learning_rate_factor(step, options.steps)
        loss = flash_loss(drafter, head, accelerator.unwrap_model(head), batch)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % 10 == 0:
            log.append({"step": step + 1, "loss": round(loss.item(), 5)})
        if (step + 1) % options.save_every == 0 or step + 1 == options.steps:
            _save_checkpoint(drafter, optimizer, output_dir / f"checkpoint-{step + 1}", step + 1, log)
    drafter.head.eval()
    drafter.save_pretrained(output_dir)
    return log


def _save_checkpoint(drafter: FlashDrafter, optimizer, path: Path, step: int, log: list[dict]) -> None:
    drafter.save_pretrained(path)
    torch.save(optimizer.state_dict(), path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"step": step, "log": log}))
