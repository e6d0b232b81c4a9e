"""Prompt sets for benchmarks: a built-in set, or a file with one prompt per line.

Class-conditional pipelines (DiT) take ImageNet class ids instead of text: a prompt line is then
an integer id or a label name the pipeline knows (`pipe.get_label_ids`).
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_PROMPTS = (
    "a red fox sitting in fresh snow, golden hour, detailed fur",
    "an astronaut riding a horse on the moon, photorealistic",
    "a bowl of ramen with a soft-boiled egg, top-down food photography",
    "a lighthouse on a rocky coast during a storm, dramatic clouds",
    "a watercolor painting of a quiet canal in Venice",
    "a close-up of a hummingbird drinking from a flower",
    "a futuristic city skyline at night with neon reflections on wet streets",
    "a cozy reading nook with a cat asleep on a pile of books",
)
# ImageNet ids used in DiT's examples and papers' grids: golden retriever, husky, cliff, ...
BUILTIN_CLASS_LABELS = (207, 250, 972, 88, 279, 360, 387, 974)  # ImageNet ids, for 1000-class DiTs


def builtin_class_labels(pipe) -> list[int]:
    """The built-in ImageNet ids for 1000-class models; every class (up to 8) for smaller ones."""
    num_classes = _num_classes(pipe)
    if num_classes is None or num_classes > max(BUILTIN_CLASS_LABELS):
        return list(BUILTIN_CLASS_LABELS)
    return list(range(min(num_classes, len(BUILTIN_CLASS_LABELS))))


def _num_classes(pipe) -> int | None:
    return getattr(getattr(getattr(pipe, "transformer", None), "config", None), "num_embeds_ada_norm", None)


def load_prompts(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt file {path} has no prompts (expected one prompt per line)")
    return prompts


def class_labels(prompts: list[str], pipe) -> list[int]:
    """Class ids for a class-conditional pipeline: integers as is, names via `pipe.get_label_ids`."""
    labels = []
    for prompt in prompts:
        if prompt.lstrip("-").isdigit():
            labels.append(int(prompt))
            continue
        try:
            labels.extend(pipe.get_label_ids(prompt))
        except (AttributeError, KeyError, ValueError, TypeError):
            raise ValueError(f"{type(pipe).__name__} is class-conditional: prompt {prompt!r} must be a class id "
                             "(integer) or a label name the pipeline knows") from None
    num_classes = _num_classes(pipe)
    bad = [label for label in labels if num_classes is not None and not 0 <= label < num_classes]
    if bad:
        raise ValueError(f"class ids {bad} are outside the pipeline's {num_classes} classes (0..{num_classes - 1})")
    return labels
