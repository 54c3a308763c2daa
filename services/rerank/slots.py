"""Positions reserved before the diversity picks: pinned items (when they are candidates) and exploration slots
(long-tail items), and the genre caps every pick counts against."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from services.rerank.rules import CompiledRules


def reserve_pins(rules: CompiledRules, rows: np.ndarray, open_: np.ndarray, target: int) -> dict[int, int]:
    """Position -> candidate for each pin whose item is an open candidate and whose position is in the list;
    the pinned candidates are cleared from `open_`."""
    if not rules.pins:
        return {}
    # A per-candidate dict, so only built when there are pins: no Python loop over candidates otherwise.
    candidate_of_row = {int(r): i for i, r in enumerate(rows)}
    pinned = {
        position: candidate_of_row[row]
        for row, position in rules.pins
        if position < target and row in candidate_of_row and open_[candidate_of_row[row]]
    }
    open_[list(pinned.values())] = False
    return pinned


def exploration_picks(
    rules: CompiledRules, rows: np.ndarray, rel: np.ndarray, available: np.ndarray, n: int
) -> np.ndarray:
    """The n most relevant long-tail candidates still available."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    pool = available & rules.long_tail[rows]
    return np.flatnonzero(pool)[np.argsort(-rel[pool], kind="stable")][:n]


class GenreCaps:
    """How many items of each capped genre the list holds; `on_pick` clears from the availability mask what
    would go over a cap."""

    def __init__(self, rules: CompiledRules, rows: np.ndarray, taken: Iterable[int]) -> None:
        """`taken`: candidates already in the list (the pinned ones)."""
        self.flags = rules.genre_flags[rows]
        self.caps = rules.caps
        self.taken = np.zeros(len(rules.caps), dtype=np.int64)
        for c in taken:
            self.taken += self.flags[c]

    def available(self, open_: np.ndarray) -> np.ndarray:
        """The open candidates that fit under the caps."""
        return open_ & ~self.flags[:, self.taken >= self.caps].any(axis=1)

    def on_pick(self, pick: int, available: np.ndarray) -> None:
        self.taken += self.flags[pick]
        full = self.taken >= self.caps
        if full.any():
            available &= ~self.flags[:, full].any(axis=1)
