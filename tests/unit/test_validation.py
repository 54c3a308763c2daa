import math

import pytest

from services.common.errors import InvalidArgument
from services.common.validation import check_count, check_fraction, check_id, check_ids


@pytest.mark.parametrize("value", ["1", "user-42", "a.b:c@d_e", "X" * 64])
def test_well_formed_ids_pass(value: str) -> None:
    assert check_id("user_id", value) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "user_id is required"),
        ("X" * 65, "at most 64"),
        ("-starts-with-dash", "malformed"),
        ("has space", "malformed"),
        ("ünïcode", "malformed"),
        ("new\nline", "malformed"),
    ],
)
def test_bad_ids_name_the_field_and_the_rule(value: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment) as info:
        check_id("user_id", value)
    assert "user_id" in info.value.message


def test_check_ids_reports_the_position_and_the_limit() -> None:
    with pytest.raises(InvalidArgument, match=r"exclude_item_ids\[1\]"):
        check_ids("exclude_item_ids", ["1", ""], 10)
    with pytest.raises(InvalidArgument, match="at most 2"):
        check_ids("exclude_item_ids", ["1", "2", "3"], 2)


@pytest.mark.parametrize(("value", "ok"), [(1, True), (100, True), (0, False), (-5, False), (101, False)])
def test_count_bounds(value: int, ok: bool) -> None:
    if ok:
        assert check_count("count", value, 100) == value
    else:
        with pytest.raises(InvalidArgument, match="count must be"):
            check_count("count", value, 100)


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, math.inf])
def test_fraction_rejects_out_of_range_and_nan(value: float) -> None:
    with pytest.raises(InvalidArgument, match="between 0 and 1"):
        check_fraction("diversity", value)
