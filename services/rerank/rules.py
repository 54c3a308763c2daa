"""Business rules: data (a YAML or JSON file named by RECSYS_RERANK_RULES_FILE), validated at start-up.

    deny_items: ["666"]              # never shown
    allow_items: []                  # when non-empty, only these may be shown
    genre_caps: {Horror: 2}          # at most N items of a genre per list
    boosts:                          # multiply the (scaled) relevance
      - {genre: Documentary, factor: 1.2}
      - {item: "50", factor: 1.5}
    pins:                            # put an item at a position when it is among the candidates
      - {item: "1", position: 0}
    exploration: {share: 0.1, long_tail_quantile: 0.5}   # slots for less popular items

Unknown items or genres, duplicate pins and out-of-range values fail the service's start with a message naming
them, rather than being ignored at request time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RulesError(ValueError):
    """The rules file is unreadable or does not fit the catalogue."""


class Boost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str | None = None
    genre: str | None = None
    factor: float = Field(gt=0, le=10)

    @model_validator(mode="after")
    def _one_target(self) -> Boost:
        if (self.item is None) == (self.genre is None):
            raise ValueError("a boost names exactly one of item or genre")
        return self


class Pin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str
    position: int = Field(ge=0, le=999)


class Exploration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    share: float = Field(0.0, ge=0, le=0.5, description="Share of the list's slots for exploration.")
    long_tail_quantile: float = Field(0.5, gt=0, lt=1, description="Items below this popularity quantile qualify.")


class BusinessRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deny_items: list[str] = []
    allow_items: list[str] = []
    genre_caps: dict[str, int] = {}
    boosts: list[Boost] = []
    pins: list[Pin] = []
    exploration: Exploration = Exploration()

    @model_validator(mode="after")
    def _consistent(self) -> BusinessRules:
        if any(cap < 1 for cap in self.genre_caps.values()):
            raise ValueError("genre_caps must be at least 1")
        positions = [p.position for p in self.pins]
        if len(set(positions)) != len(positions) or len({p.item for p in self.pins}) != len(self.pins):
            raise ValueError("pins must name distinct items at distinct positions")
        if set(self.deny_items) & {p.item for p in self.pins}:
            raise ValueError("an item cannot be both pinned and denied")
        return self

    @classmethod
    def load(cls, path: Path | None) -> BusinessRules:
        if path is None:
            return cls()
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            return cls.model_validate(data or {})
        except (OSError, ValueError, yaml.YAMLError) as exc:  # ValidationError is a ValueError
            detail = exc.errors() if isinstance(exc, ValidationError) else exc
            raise RulesError(f"rules file {path}: {detail}") from exc


@dataclass(frozen=True)
class CompiledRules:
    """The rules as arrays over the catalogue rows, for vectorised application per request."""

    rules: BusinessRules
    blocked: np.ndarray  # (n_items,) bool: denied, or outside a non-empty allow list
    boost: np.ndarray  # (n_items,) float multiplier
    genre_flags: np.ndarray  # (n_items, n_capped) bool, one column per capped genre
    caps: np.ndarray  # (n_capped,) int
    long_tail: np.ndarray  # (n_items,) bool
    pins: list[tuple[int, int]]  # (catalogue row, position), by position

    @property
    def active(self) -> bool:
        r = self.rules
        return bool(r.deny_items or r.allow_items or r.genre_caps or r.boosts or r.pins or r.exploration.share)

    def exploration_slots(self, count: int) -> list[int]:
        """Positions reserved for exploration in a list of `count`: spread out, never the first."""
        n = math.floor(self.rules.exploration.share * count)
        if n <= 0:
            return []
        step = count / n
        return sorted({min(count - 1, int(step * (i + 1)) - 1) for i in range(n)} - {0})


def compile_rules(
    rules: BusinessRules, item_ids: Sequence[str], genres: Sequence[Sequence[str]], popularity: np.ndarray
) -> CompiledRules:
    """Checks the rules against the catalogue and compiles them; RulesError names what does not fit."""
    pos = {item_id: i for i, item_id in enumerate(item_ids)}
    genre_vocab = sorted({g for gs in genres for g in gs})
    named_items = {*rules.deny_items, *rules.allow_items, *(b.item for b in rules.boosts if b.item),
                   *(p.item for p in rules.pins)}  # fmt: skip
    unknown_items = sorted(named_items - pos.keys())
    named_genres = {*rules.genre_caps, *(b.genre for b in rules.boosts if b.genre)}
    unknown_genres = sorted(named_genres - set(genre_vocab))
    if unknown_items or unknown_genres:
        raise RulesError(
            "rules name what the catalogue does not have:"
            + (f" items {unknown_items[:10]}" if unknown_items else "")
            + (f" genres {unknown_genres} (known: {genre_vocab})" if unknown_genres else "")
        )
    n = len(item_ids)
    blocked = np.zeros(n, dtype=bool)
    blocked[[pos[i] for i in rules.deny_items]] = True
    if rules.allow_items:
        allowed = np.zeros(n, dtype=bool)
        allowed[[pos[i] for i in rules.allow_items]] = True
        blocked |= ~allowed
    genre_sets = [set(gs) for gs in genres]
    boost = np.ones(n)
    for b in rules.boosts:
        if b.item is not None:
            boost[pos[b.item]] *= b.factor
        else:
            boost[[g_set.__contains__(b.genre) for g_set in genre_sets]] *= b.factor
    capped = list(rules.genre_caps)
    flags = np.array([[g in g_set for g in capped] for g_set in genre_sets], dtype=bool).reshape(n, len(capped))
    threshold = np.quantile(popularity, rules.exploration.long_tail_quantile) if n else 0
    return CompiledRules(
        rules=rules,
        blocked=blocked,
        boost=boost,
        genre_flags=flags,
        caps=np.array([rules.genre_caps[g] for g in capped], dtype=np.int64),
        long_tail=np.asarray(popularity) <= threshold,
        pins=sorted(((pos[p.item], p.position) for p in rules.pins), key=lambda x: x[1]),
    )
