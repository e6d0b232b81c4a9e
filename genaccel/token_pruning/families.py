"""What visual-token pruning needs to know about each supported model class.

Per family: where the vision tower's attention layers are (for methods that read vision
attention), how a tower's per-token scores map onto the language model's visual tokens of each
image, and (Qwen) how decode-step positions are made when the caller passes none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from genaccel.token_pruning.vision_attention import ProjectionAttentionRecorder, QwenVisionAttentionRecorder


@dataclass
class ImageRecord:
    """One image as `get_image_features` returned it: its number of LM tokens and vision scores."""

    length: int
    scores: torch.Tensor | None  # (layers, length), or None when no method reads them


class Family:
    """Shared behaviour; subclasses say what differs."""

    name: str
    class_name: str  # the transformers class (matched by name along the MRO, so importing genaccel
    # does not import transformers' model code)

    def __init__(self, model: nn.Module):
        self.model = model
        self.base = model.model  # LlavaModel / LlavaNextModel / Qwen2VLModel / Qwen2_5_VLModel
        self.config = model.config

    @property
    def image_token_id(self) -> int:
        return self.config.image_token_id

    @property
    def video_token_id(self) -> int | None:
        return getattr(self.config, "video_token_id", None)

    def vision_attentions(self) -> list[nn.Module]:
        """The tower's attention modules a method may read, in order, the last one producing the LM's features."""
        raise NotImplementedError

    def recorder(self, attentions: list[nn.Module], active: Callable[[], bool]):
        raise NotImplementedError

    def records(self, output: Any, arguments: dict[str, Any],
                layer_scores: list[torch.Tensor] | None) -> list[ImageRecord]:
        """Per image, from `get_image_features`' output and its call's arguments."""
        features = output.pooler_output
        if layer_scores is None:
            return [ImageRecord(len(f), None) for f in features]
        per_image = self.token_scores(arguments, layer_scores, [len(f) for f in features])
        return [ImageRecord(len(f), scores) for f, scores in zip(features, per_image)]

    def token_scores(self, arguments: dict[str, Any], layer_scores: list[torch.Tensor],
                     lengths: list[int]) -> list[torch.Tensor]:
        raise NotImplementedError

    def decode_position_ids(self, kwargs: dict[str, Any], past_full: int) -> torch.Tensor | None:
        """Position ids for a decode step the caller left without them, given the unpruned past length;
        None where the model's own default is already right."""
        return None


class LlavaFamily(Family):
    name = "llava"
    class_name = "LlavaForConditionalGeneration"

    @property
    def _tower(self) -> nn.Module:
        tower = self.base.vision_tower
        return getattr(tower, "vision_model", tower)

    def has_cls(self) -> bool:
        return hasattr(self._tower.embeddings, "class_embedding")

    def _feature_layer(self, value: Any) -> int:
        """How many encoder layers run before the selected hidden state (hidden_states[i] is layer i's input)."""
        layers = len(self._tower.encoder.layers)
        chosen = value if isinstance(value, int) else max(v % (layers + 1) for v in value)
        return chosen % (layers + 1)

    def vision_attentions(self) -> list[nn.Module]:
        depth = self._feature_layer(self.config.vision_feature_layer)
        if depth == 0:
            raise ValueError("vision_feature_layer selects the embeddings, which no attention layer produced; "
                             "methods reading vision attention need a layer >= 1")
        return [layer.self_attn for layer in self._tower.encoder.layers[:depth]]

    def recorder(self, attentions, active):
        return ProjectionAttentionRecorder(attentions, "cls" if self.has_cls() else "received", active)

    def _strategy(self, arguments: dict[str, Any]) -> str:
        value = arguments.get("vision_feature_select_strategy")
        return value if value is not None else self.config.vision_feature_select_strategy

    def _check_layer(self, arguments: dict[str, Any]) -> None:
        layer = arguments.get("vision_feature_layer")
        configured = self._feature_layer(self.config.vision_feature_layer)
        if layer is not None and self._feature_layer(layer) != configured:
            raise ValueError(f"get_image_features was called with vision_feature_layer={layer}, but pruning hooked "
                             f"the layers for the config's {self.config.vision_feature_layer}; call genaccel.remove, "
                             "set config.vision_feature_layer, then genaccel.apply")

    def _crop_scores(self, arguments, layer_scores) -> torch.Tensor:
        """(layers, crops, tokens) with the [CLS] column dropped when the features drop it."""
        self._check_layer(arguments)
        scores = torch.stack(layer_scores)
        if self._strategy(arguments) == "default":
            scores = scores[..., 1:]
        return scores

    def token_scores(self, arguments, layer_scores, lengths):
        scores = self._crop_scores(arguments, layer_scores)  # (layers, images, n)
        return [scores[:, image] for image in range(scores.shape[1])]


class LlavaNextFamily(LlavaFamily):
    """LLaVA-NeXT: each image is several crops (the resized image and an anyres grid), packed with
    unpadding and one `image_newline` token per row. Crop scores are carried through the model's own
    `pack_image_features` as a one-channel index map; newline tokens get score -inf."""

    name = "llava_next"
    class_name = "LlavaNextForConditionalGeneration"

    def packed_index(self, image_sizes: Any, strategy: str, crops: int, tokens: int,
                     device: torch.device) -> list[torch.Tensor]:
        """Per image, (n,) the flat index (crop * tokens + token) of each LM token in the towers' output,
        -1 for `image_newline` tokens: the model's own packing applied to an index map."""
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        crops_per_image = [image_size_to_num_patches(image_size=size, grid_pinpoints=self.config.image_grid_pinpoints,
                                                     patch_size=self.config.vision_config.image_size)
                           for size in image_sizes]
        index = torch.arange(crops * tokens, dtype=torch.float32, device=device).view(crops, tokens, 1)
        packed, _ = self.base.pack_image_features(list(torch.split(index, crops_per_image)), image_sizes,
                                                  vision_feature_select_strategy=strategy,
                                                  image_newline=torch.tensor([-1.0], device=device))
        return [mapping[:, 0].long() for mapping in packed]

    def token_scores(self, arguments, layer_scores, lengths):
        scores = self._crop_scores(arguments, layer_scores)  # (layers, crops, P)
        layers, crops, tokens = scores.shape
        mappings = self.packed_index(arguments["image_sizes"], self._strategy(arguments), crops, tokens, scores.device)
        flat = scores.reshape(layers, crops * tokens)
        return [flat[:, mapping.clamp(min=0)].masked_fill(mapping[None] < 0, float("-inf")) for mapping in mappings]


class Qwen2VLFamily(Family):
    """Qwen2-VL: no [CLS]; each LM token merges spatial_merge_size^2 consecutive patches."""

    name = "qwen2_vl"
    class_name = "Qwen2VLForConditionalGeneration"

    def vision_attentions(self) -> list[nn.Module]:
        return [block.attn for block in self.base.visual.blocks]

    def recorder(self, attentions, active):
        return QwenVisionAttentionRecorder(attentions, active)

    def patch_order(self, grid_thw: torch.Tensor) -> torch.Tensor | None:
        """For each LM token (original order), the index of its patch group in the blocks' order; None = same."""
        return None

    def token_scores(self, arguments, layer_scores, lengths):
        grid_thw = arguments["image_grid_thw"]
        unit = self.base.visual.spatial_merge_size ** 2
        scores = torch.stack([score.view(-1, unit).mean(dim=1) for score in layer_scores])  # (layers, tokens)
        order = self.patch_order(grid_thw)
        if order is not None:
            scores = scores[:, order.to(scores.device)]
        split = (grid_thw.prod(-1) // unit).tolist()
        return list(torch.split(scores, split, dim=1))

    def decode_position_ids(self, kwargs, past_full):
        """What Qwen2VLModel computes without position ids or mask (cache length + rope_deltas), with the
        unpruned cache length instead of the pruned one."""
        if kwargs.get("position_ids") is not None or kwargs.get("attention_mask") is not None:
            return None
        deltas = self.base.rope_deltas
        if deltas is None:
            return None
        tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        batch, length = tokens.shape[:2]
        positions = torch.arange(past_full, past_full + length, device=tokens.device).view(1, 1, -1)
        positions = positions.expand(3, batch, -1)
        return positions + deltas.repeat_interleave(batch // deltas.shape[0], dim=0).to(tokens.device)


class Qwen2_5_VLFamily(Qwen2VLFamily):
    """Qwen2.5-VL: blocks see patches in window order; only `fullatt_block_indexes` blocks see the whole image."""

    name = "qwen2_5_vl"
    class_name = "Qwen2_5_VLForConditionalGeneration"

    def vision_attentions(self) -> list[nn.Module]:
        visual = self.base.visual
        return [visual.blocks[index].attn for index in sorted(visual.fullatt_block_indexes)]

    def patch_order(self, grid_thw):
        visual = self.base.visual
        if hasattr(visual, "get_window_index"):  # older transformers releases (5.4): a method of the tower
            window_index, _ = visual.get_window_index(grid_thw)
        else:
            from transformers.vision_utils import get_vision_window_index

            window_index, _ = get_vision_window_index(grid_thw, spatial_merge_size=visual.spatial_merge_size,
                                                      window_size=visual.window_size, patch_size=visual.patch_size)
        return torch.argsort(window_index)  # the merger's `reverse_indices`


FAMILIES: tuple[type[Family], ...] = (LlavaNextFamily, LlavaFamily, Qwen2_5_VLFamily, Qwen2VLFamily)


def supported_classes() -> str:
    return ", ".join(family.class_name for family in FAMILIES)


def _family_class(model: Any) -> type[Family] | None:
    for cls in type(model).__mro__:
        if cls.__module__.startswith("transformers."):
            for family in FAMILIES:
                if cls.__name__ == family.class_name:
                    return family
    return None


def family_of(model: Any) -> Family:
    """The family of a supported model instance (subclasses accepted); TypeError otherwise."""
    family = _family_class(model)
    if family is None:
        raise TypeError(f"visual-token pruning supports {supported_classes()}; got {type(model).__name__}")
    return family(model)


def is_supported(model: Any) -> bool:
    return _family_class(model) is not None
