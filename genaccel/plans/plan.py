"""`SparsityPlan`: one attention choice per (block, step range), saved as JSON a person can read and edit.

A plan splits a call's denoising steps into phases (contiguous step ranges, in steps of the
calibration; a call with another number of steps is mapped proportionally) and gives every
attention block one choice per phase, written as text:

    "dense" | "proxy HxW" | "window HxW" (or TxHxW for video), optionally followed by " shifted",
    optionally followed by " +reuse": odd steps return the block's output of the step before
    (`genaccel.attention.reuse`), even steps compute the choice

`genaccel.apply(pipe, plan)` / `genaccel.remove(pipe)` patch it like a config. Under torch.compile
there is at most one graph per phase.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genaccel.attention.reuse import StepReuse, unwrap
from genaccel.config import ProxyAttentionConfig, SparseAttentionConfig, WindowAttentionConfig
from genaccel.plans.cost import CostModel

FORMAT = "genaccel.SparsityPlan"
VERSION = 1
CHOICE_SYNTAX = ("'dense', 'proxy HxW', 'window HxW' or TxHxW windows, optionally followed by ' shifted', "
                 "then optionally ' +reuse'")
REUSE = "+reuse"
_KINDS = {"proxy": ProxyAttentionConfig, "window": WindowAttentionConfig}
Choice = SparseAttentionConfig | StepReuse | None


def parse_choice(text: str, backend: str = "auto") -> Choice:
    """'proxy 4x4 shifted' -> ProxyAttentionConfig(window=(4, 4), shift=True); 'dense' -> None;
    'dense +reuse' -> StepReuse(None)."""
    words = str(text).split()
    if len(words) > 1 and words[-1] == REUSE and REUSE not in words[:-1]:
        return StepReuse(parse_choice(" ".join(words[:-1]), backend))
    if words == ["dense"]:
        return None
    if len(words) in (2, 3) and words[0] in _KINDS and re.fullmatch(r"\d+(x\d+){1,2}", words[1]) \
            and (len(words) == 2 or words[2] == "shifted"):
        window = tuple(int(v) for v in words[1].split("x"))
        return _KINDS[words[0]](window=window, shift=len(words) == 3, backend=backend)
    raise ValueError(f"bad plan choice {text!r}; accepted: {CHOICE_SYNTAX}")


def format_choice(choice: Choice) -> str:
    if isinstance(choice, StepReuse):
        return f"{format_choice(choice.inner)} {REUSE}"
    if choice is None:
        return "dense"
    if choice.shift not in (False, True):
        raise ValueError("a plan choice is shifted or not (shift=True / False); 'alternate' is a per-block "
                         "pattern a plan writes out block by block")
    return f"{choice.method} {'x'.join(map(str, choice.window))}" + (" shifted" if choice.shift else "")


@dataclass
class SparsityPlan:
    """Per-block, per-phase attention choices for one transformer, with the cost model they were chosen by.

    choices[b][p]: block b's config in phase p (None = dense; a StepReuse reuses odd steps). phase_starts:
    the first calibrated step of each phase (starts at 0). calibration: what `genaccel.calibrate` measured (free-form, for readers).
    """

    choices: list[list[Choice]]
    phase_starts: tuple[int, ...]
    num_inference_steps: int
    cost_model: CostModel
    model: str = ""
    backend: str = "auto"
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.phase_starts = tuple(int(s) for s in self.phase_starts)
        starts = self.phase_starts
        if not starts or starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])) \
                or starts[-1] >= self.num_inference_steps:
            raise ValueError(f"phase starts must be increasing step indices from 0 below num_inference_steps "
                             f"({self.num_inference_steps}), got {list(starts)}")
        if len(self.choices) != len(self.cost_model.attention_widths):
            raise ValueError(f"the plan has {len(self.choices)} blocks but its cost model "
                             f"{len(self.cost_model.attention_widths)}")
        for block, row in enumerate(self.choices):
            if len(row) != len(starts):
                raise ValueError(f"block {block} has {len(row)} choices for {len(starts)} phases")
            for choice in row:
                format_choice(choice)  # raises for shift="alternate"

    @property
    def num_blocks(self) -> int:
        return len(self.choices)

    @property
    def phases(self) -> list[tuple[int, int]]:
        """(first, end) calibrated step of each phase."""
        ends = (*self.phase_starts[1:], self.num_inference_steps)
        return list(zip(self.phase_starts, ends))

    def block_choices(self, block: int) -> tuple[Choice, ...]:
        return tuple(self.choices[block])

    def is_dense(self) -> bool:
        return all(choice is None for row in self.choices for choice in row)

    def reuses_steps(self) -> bool:
        return any(isinstance(choice, StepReuse) for row in self.choices for choice in row)

    @property
    def expected_speedup(self) -> float:
        """Modelled dense / plan time of a whole call (every step costed; reused blocks cost nothing)."""
        dense = self.cost_model.call_flops([None] * self.num_blocks)
        sparse = 0.0
        for p, (start, end) in enumerate(self.phases):
            choices = [row[p] for row in self.choices]
            computed = [unwrap(c) for c in choices]
            reused = {b for b, c in enumerate(choices) if isinstance(c, StepReuse)}
            odd = sum(step % 2 for step in range(start, end))
            sparse += (end - start - odd) * self.cost_model.call_flops(computed) \
                + odd * self.cost_model.call_flops(computed, skipped=reused)
        return dense * self.num_inference_steps / sparse

    @classmethod
    def uniform(cls, choice: Choice, cost_model: CostModel, num_inference_steps: int, model: str = "",
                backend: str = "auto") -> "SparsityPlan":
        """The same choice in every block and step (one phase)."""
        return cls([[choice] for _ in cost_model.attention_widths], (0,), num_inference_steps, cost_model,
                   model, backend)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "model": self.model, "num_inference_steps":
                self.num_inference_steps, "phases": [list(p) for p in self.phases], "backend": self.backend,
                "expected_speedup": round(self.expected_speedup, 4),
                "blocks": [[format_choice(c) for c in row] for row in self.choices],
                "cost_model": self.cost_model.to_dict(), "calibration": self.calibration}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SparsityPlan":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a SparsityPlan (expected \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise ValueError(f"SparsityPlan version {data.get('version')!r} is not supported (this genaccel reads "
                             f"version {VERSION})")
        missing = [k for k in ("num_inference_steps", "phases", "blocks", "cost_model") if k not in data]
        if missing:
            raise ValueError(f"SparsityPlan is missing {', '.join(missing)}")
        backend = data.get("backend", "auto")
        phases = data["phases"]
        if not isinstance(phases, list) or not phases or any(not isinstance(p, list) or len(p) != 2 for p in phases):
            raise ValueError(f"phases must be a list of [first, end] step ranges, got {phases!r}")
        if any(a[1] != b[0] for a, b in zip(phases, phases[1:])) or phases[-1][1] != data["num_inference_steps"]:
            raise ValueError(f"phases must be contiguous and end at num_inference_steps "
                             f"({data['num_inference_steps']}), got {phases}")
        choices = [[parse_choice(text, backend) for text in row] for row in data["blocks"]]
        return cls(choices, tuple(p[0] for p in phases), int(data["num_inference_steps"]),
                   CostModel.from_dict(data["cost_model"]), data.get("model", ""), backend,
                   dict(data.get("calibration", {})))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plan_json(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SparsityPlan":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no plan file at {path} (write one with genaccel.calibrate(...).save(path) "
                                    "or `genaccel calibrate MODEL --out plan.json`)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON: {error}") from None
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    def summary(self) -> str:
        """One line per phase: how many blocks take each choice."""
        lines = []
        for p, (start, end) in enumerate(self.phases):
            counts: dict[str, int] = {}
            for row in self.choices:
                counts[format_choice(row[p])] = counts.get(format_choice(row[p]), 0) + 1
            lines.append(f"steps {start}-{end - 1}: " + ", ".join(f"{n} x {c}" for c, n in sorted(counts.items())))
        return "\n".join(lines)


def plan_json(data: dict[str, Any]) -> str:
    """JSON with one line per top-level key, per block row and per list of numbers: easy to read and edit."""
    def value(item: Any, indent: str) -> str:
        if isinstance(item, list) and item and all(isinstance(row, list) for row in item):
            rows = f",\n{indent} ".join(json.dumps(row) for row in item)
            return f"[\n{indent} {rows}\n{indent}]"
        if isinstance(item, dict) and item:
            inner = f",\n{indent} ".join(f"{json.dumps(k)}: {value(v, indent + ' ')}" for k, v in item.items())
            return f"{{\n{indent} {inner}\n{indent}}}"
        return json.dumps(item)

    return value(data, "") + "\n"
