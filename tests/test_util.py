"""Contract tests for the small shared helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trt._util import plural, span_ms, utc_now, utc_stamp


def _reference(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


@pytest.mark.parametrize(
    "seconds",
    [
        1_764_800_000.0,
        1_764_800_000.5,
        1_764_800_000.9995,
        1_764_800_059.25,
        1_764_799_999.125,  # back across a second and a minute
        0.0,
    ],
)
def test_utc_stamp_matches_datetime(seconds: float) -> None:
    assert utc_stamp(seconds) == _reference(seconds)


def test_utc_stamp_cache_follows_each_new_time() -> None:
    """Repeated, rising and falling times each get their own text."""
    times = [1_764_800_000.001, 1_764_800_000.001, 1_764_800_001.002, 1_764_800_000.003]

    stamps = [utc_stamp(seconds) for seconds in times]

    assert stamps == [_reference(seconds) for seconds in times]


def test_utc_now_is_the_current_time() -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    now = datetime.fromisoformat(utc_now())

    assert before <= now <= datetime.now(UTC)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_span_ms_matches_round_to_the_microsecond(seconds: float) -> None:
    # Float rounding may differ from round() by one microsecond at most.
    assert abs(span_ms(seconds) - round(seconds * 1000, 3)) <= 0.0011


def test_span_ms_keeps_three_decimals() -> None:
    assert span_ms(0.0123456) == 12.346
    assert span_ms(0.0) == 0.0
    assert repr(span_ms(1.5)) == "1500.0"


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 tasks"), (1, "1 task"), (2, "2 tasks")]
)
def test_plural(count: int, text: str) -> None:
    assert plural(count, "task") == text
