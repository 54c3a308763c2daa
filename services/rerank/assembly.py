"""The final list: reserved positions (pins, exploration) and the diversity picks in between, vectorised."""

from __future__ import annotations

import numpy as np

from services.rerank.explain import EXPLORATION_REASON, PINNED_REASON

MAIN, PINNED, EXPLORATION = 0, 1, 2  # what put a candidate at its position


def fill_by_relevance(
    picks: np.ndarray, values: np.ndarray, rel: np.ndarray, free: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """`picks` topped up to `count` by relevance from the `free` candidates not picked (caps relaxed: they left
    the list short)."""
    if len(picks) >= count:
        return picks, values
    rest = free.copy()
    rest[picks] = False
    extra = np.flatnonzero(rest)[np.argsort(-rel[rest], kind="stable")][: count - len(picks)]
    return np.concatenate([picks, extra]), np.concatenate([values, rel[extra].astype(np.float32)])


def assemble(
    rel: np.ndarray, reserved: dict[int, tuple[int, int]], picks: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions into the candidates, scores, kind per position): each reserved position -> (candidate, kind)
    holds its candidate at its relevance, the picks fill the other positions in order; scores descend with the
    position."""
    n = len(reserved) + len(picks)
    positions = np.empty(n, dtype=np.int64)
    final = np.empty(n, dtype=np.float32)
    kind = np.full(n, MAIN, dtype=np.int8)
    at = np.fromiter(reserved, dtype=np.int64, count=len(reserved))
    fixed = np.asarray([c for c, _ in reserved.values()], dtype=np.int64)
    kind[at] = [k for _, k in reserved.values()]
    positions[at], final[at] = fixed, rel[fixed]
    main = kind == MAIN
    positions[main], final[main] = picks, values
    return positions, np.minimum.accumulate(final), kind


def with_slot_reasons(why: list[str], kind: np.ndarray) -> list[str]:
    """The reasons, with the reserved positions saying why they are there."""
    for slot in np.flatnonzero(kind).tolist():
        why[slot] = PINNED_REASON if kind[slot] == PINNED else EXPLORATION_REASON
    return why
