"""Removing visual-token positions from a batch of sequences, keeping the rest in order.

Every per-token tensor the language model reads (embeddings, 2-D attention mask, 2-D or 3-D / 4-D
position ids, rotary cos / sin, 4-D masks) is gathered with the same (B, L') index of kept
positions, so a kept token keeps its original position id (and, for Qwen2-VL's M-RoPE, its place
in the image grid).
"""

from __future__ import annotations

import torch

from genaccel.token_pruning.config import PruningInputError
from genaccel.token_pruning.methods.base import Selection


def image_positions(input_ids: torch.Tensor, image_token_id: int, lengths: list[int]) -> list[list[torch.Tensor]]:
    """Per row, the positions (n_i,) of each image's placeholder tokens.

    Images fill the placeholders in row-major order (as the model's `masked_scatter` does), image i
    taking the next `lengths[i]` of them, so adjacent images need no separator."""
    placeholders = input_ids == image_token_id
    rows: list[list[torch.Tensor]] = []
    image = 0
    for row in range(input_ids.shape[0]):
        positions = placeholders[row].nonzero().squeeze(1)
        images, start = [], 0
        while start < positions.numel():
            if image >= len(lengths):
                raise PruningInputError(f"the prompt holds {int(placeholders.sum())} image tokens but the images have "
                                 f"{sum(lengths)} features")
            span = positions[start:start + lengths[image]]
            if span.numel() < lengths[image]:
                raise PruningInputError(f"image {image} has {lengths[image]} features but row {row} holds only "
                                 f"{span.numel()} of its image tokens (an image's tokens must stay in one row)")
            images.append(span)
            start += lengths[image]
            image += 1
        rows.append(images)
    if image != len(lengths):
        raise PruningInputError(f"the prompt holds {int(placeholders.sum())} image tokens but the images have "
                         f"{sum(lengths)} features")
    return rows


def kept_index(length: int, rows: list[list[torch.Tensor]], selections: list[list[Selection]],
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, L') kept positions, sorted per row, and a (B, L') bool of real (not filler) positions or None.

    Rows that drop fewer tokens than others would be longer: the shortest ones are filled with some
    of their own dropped positions, masked out (attention 0), so the batch stays rectangular."""
    keep_rows, drop_rows = [], []
    for images, chosen in zip(rows, selections):
        keep = torch.ones(length, dtype=torch.bool, device=device)
        for positions, selection in zip(images, chosen):
            keep[positions] = False
            keep[positions[selection.kept]] = True
        keep_rows.append(keep)
        drop_rows.append((~keep).nonzero().squeeze(1))
    longest = max(int(keep.sum()) for keep in keep_rows)
    indices, reals = [], []
    for keep, dropped in zip(keep_rows, drop_rows):
        real = keep.clone()
        missing = longest - int(keep.sum())
        keep[dropped[:missing]] = True  # fillers
        index = keep.nonzero().squeeze(1)
        indices.append(index)
        reals.append(real[index])
    real = torch.stack(reals)
    return torch.stack(indices), (None if bool(real.all()) else real)


def gather_tokens(values: torch.Tensor, index: torch.Tensor, dim: int, batch_dim: int = 0) -> torch.Tensor:
    """`values` gathered along its sequence dim `dim` at `index` (B, L'); a batch of 1 is broadcast.

    batch_dim is 0, or 1 for position ids shaped (r, B, L) (Qwen2-VL's M-RoPE)."""
    batch = index.shape[0]
    if values.shape[batch_dim] != batch:
        shape = list(values.shape)
        shape[batch_dim] = batch
        values = values.expand(*shape)
    view = [1] * values.dim()
    view[batch_dim], view[dim] = batch, index.shape[1]
    shape = list(values.shape)
    shape[dim] = index.shape[1]
    return values.gather(dim, index.view(view).expand(*shape))


def gather_positions(position_ids: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Position ids (B, L) or (r, B, L) at the kept positions."""
    return gather_tokens(position_ids, index, dim=-1 % position_ids.dim(), batch_dim=position_ids.dim() - 2)


def scatter_features(embeds: torch.Tensor, index: torch.Tensor, rows: list[list[torch.Tensor]],
                     selections: list[list[Selection]]) -> torch.Tensor:
    """Write the methods' replacement features (merged tokens) into the gathered (B, L', D) embeddings."""
    replaced = None
    for row, (images, chosen) in enumerate(zip(rows, selections)):
        for positions, selection in zip(images, chosen):
            if selection.features is None:
                continue
            if replaced is None:
                replaced = embeds.clone()
            slots = torch.searchsorted(index[row], positions[selection.kept])
            replaced[row, slots] = selection.features.to(embeds.dtype)
    return embeds if replaced is None else replaced
