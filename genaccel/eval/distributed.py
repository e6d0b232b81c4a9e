"""Sharding work over `accelerate launch` processes and gathering the results on every process.

Without a launcher this is a single process and every helper is a no-op, so the same code runs
under `genaccel ...` and `accelerate launch -m genaccel ...`.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from genaccel.eval.frechet import FeatureStats

T = TypeVar("T")


def _state():
    from accelerate import PartialState

    return PartialState()


def rank_and_world() -> tuple[int, int]:
    state = _state()
    return state.process_index, state.num_processes


def shard(items: Sequence[T]) -> list[T]:
    """This process's share: items[rank::world] (interleaved, so slow items spread evenly)."""
    rank, world = rank_and_world()
    return list(items[rank::world])


def gather_objects(local: list) -> list:
    """Concatenation of every process's list (in rank order), on every process."""
    state = _state()
    if state.num_processes == 1:
        return list(local)
    from accelerate.utils import gather_object

    return list(gather_object(local))


def gather_stats(stats: FeatureStats) -> FeatureStats:
    """Merge every process's feature statistics (sums and raw features) into one, on every process."""
    _, world = rank_and_world()
    if world == 1:
        return stats
    merged = FeatureStats(stats.dim, keep_features=stats.keep_features)
    for part in gather_objects([stats]):
        merged.merge(part)
    return merged


def wait_for_everyone() -> None:
    _state().wait_for_everyone()


def is_main_process() -> bool:
    return _state().is_main_process
