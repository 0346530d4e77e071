"""Decay and tiers: hand-derived values, and a property test against the definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engagement.domain import scoring, taxonomy

DAY = 86_400
T = datetime(2026, 6, 1, tzinfo=UTC)


def accumulate(events: list[tuple[float, int, datetime]], through_decimal: bool = True) -> dict[str, float]:
    """Apply events the way the store does: one ADD per event, through DynamoDB's Decimal numbers."""
    totals: dict[str, Decimal] = {}
    for points, half_life, when in events:
        name, term = scoring.contribution(points, half_life, when)
        value = scoring.as_decimal(term) if through_decimal else Decimal(repr(term))
        totals[name] = totals.get(name, Decimal(0)) + value
    return {k: float(v) for k, v in totals.items()}


def test_spec_example_ten_points_halve_every_thirty_days():
    # SPEC: 10 points with a 30-day half-life are worth 5 after 30 days and 2.5 after 60.
    acc = accumulate([(10, 30 * DAY, T)])
    assert scoring.score_at(acc, T) == pytest.approx(10, rel=1e-12)
    assert scoring.score_at(acc, T + timedelta(days=30)) == pytest.approx(5, rel=1e-12)
    assert scoring.score_at(acc, T + timedelta(days=60)) == pytest.approx(2.5, rel=1e-12)


def test_two_half_lives_decay_independently():
    # A PR (20 points, 90 days) and a reaction (1 point, 14 days), both 90 days old:
    # 20 * 0.5 + 1 * 2**(-90/14) = 10 + 0.011613...
    acc = accumulate([(20, 90 * DAY, T), (1, 14 * DAY, T)])
    expected = 10 + 2 ** (-90 / 14)
    assert scoring.score_at(acc, T + timedelta(days=90)) == pytest.approx(expected, rel=1e-12)


def test_events_in_different_eras_add_up():
    # 14-day half-life: an era is 32 * 14 = 448 days. Events a year apart land in different eras.
    early = datetime(2020, 1, 10, tzinfo=UTC)
    late = early + timedelta(days=900)
    acc = accumulate([(1, 14 * DAY, early), (1, 14 * DAY, late)])
    assert len(acc) == 2
    at = late + timedelta(days=14)
    assert scoring.score_at(acc, at) == pytest.approx(0.5 + 2 ** (-914 / 14), rel=1e-12)


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError):
        scoring.contribution(1, DAY, datetime(2026, 1, 1))


def test_stored_terms_stay_small_whatever_the_date():
    # Far from the epoch, terms must still fit DynamoDB's 38 digits comfortably.
    for when in (datetime(2020, 1, 1, tzinfo=UTC), datetime(2090, 7, 1, tzinfo=UTC), datetime(1995, 3, 1, tzinfo=UTC)):
        _, term = scoring.contribution(1000, 14 * DAY, when)
        assert 1000 <= term < 1000 * 2**32
        assert len(scoring.as_decimal(term).as_tuple().digits) <= 15


moments = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))
half_lives = st.sampled_from([14, 30, 60, 90, 120]).map(lambda d: d * DAY) | st.integers(3600, 400 * DAY)
events = st.lists(st.tuples(st.floats(0.5, 50), half_lives, moments), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(events=events, later=st.floats(0, 3 * 365), order=st.randoms())
def test_stored_score_equals_naive_sum_in_any_order(events, later, order):
    """Whatever order events arrive in (late, back-dated), the score brought to any moment equals
    the definition: the sum of points * 2**(-age / half-life) over all events."""
    shuffled = list(events)
    order.shuffle(shuffled)
    at = max(when for _, _, when in events) + timedelta(days=later)
    expected = scoring.naive_score(events, at)
    got = scoring.score_at(accumulate(shuffled), at)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("score", "tier"),
    [
        (0, "Lurker"),
        (9.99, "Lurker"),
        (10, "Casual"),
        (29.999, "Casual"),
        (30, "Active"),
        (79.9, "Active"),
        (80, "Power User"),
        (149.99, "Power User"),
        (150, "Champion"),
        (10_000, "Champion"),
        (-3, "Lurker"),
    ],
)
def test_tiers_follow_the_spec_thresholds(score, tier):
    assert taxonomy.build().tier_for(score) == tier
