"""Draft length that follows the acceptance seen so far.

After a round where every draft was accepted the next draft is one token longer; after a round
with a rejection it is the number accepted plus one (never below `min_length`, never above
`max_length`). Long drafts are then only paid for where the drafter has been right.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DraftLength:
    max_length: int
    min_length: int = 1
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"need 1 <= min_length <= max_length, got {self.min_length}, {self.max_length}")
        self.current = self.max_length

    def reset(self) -> None:
        self.current = self.max_length

    def update(self, proposed: int, accepted: int) -> None:
        if not self.adaptive:
            return
        wanted = proposed + 1 if accepted == proposed else accepted + 1
        self.current = max(self.min_length, min(self.max_length, wanted))
