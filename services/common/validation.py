"""Validation of identifiers and sizes arriving over the API; failures raise InvalidArgument."""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.common.errors import InvalidArgument

MAX_ID_LENGTH = 64
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")


def check_id(field: str, value: str) -> str:
    """Returns `value` if it is a well-formed id: 1..64 characters of [A-Za-z0-9_.:@-], not starting with
    punctuation."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{field} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed")
    if not _ID_PATTERN.match(value):
        raise InvalidArgument(
            f"{field} {value!r} is malformed: use letters, digits and _.:@- (not starting with punctuation)"
        )
    return value


def check_ids(field: str, values: Iterable[str], max_items: int) -> list[str]:
    out = list(values)
    if len(out) > max_items:
        raise InvalidArgument(f"{field} has {len(out)} entries; at most {max_items} are allowed")
    for i, value in enumerate(out):
        check_id(f"{field}[{i}]", value)
    return out


def check_count(field: str, value: int, maximum: int) -> int:
    if value <= 0:
        raise InvalidArgument(f"{field} must be at least 1 (got {value})")
    if value > maximum:
        raise InvalidArgument(f"{field} must be at most {maximum} (got {value})")
    return value


def check_fraction(field: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidArgument(f"{field} must be between 0 and 1 (got {value})")
    return value
