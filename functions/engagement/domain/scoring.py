"""Exponentially decayed scores, updated in O(1) per event and exact at any moment.

An event worth `p` points at time `t_i` with half-life `h` is worth `p * 2**(-(t - t_i) / h)` at
time `t`. Summing that over a member's history would need the history; instead each event adds
`p * 2**((t_i - e) / h)` to an accumulator keyed by its half-life `h` and an era starting at `e`,
and the score at any `t` is `sum(A * 2**(-(t - e) / h))` over the accumulators. Because the
update is a pure addition it is commutative: events may arrive late, out of order or back-dated,
and concurrent writers only need an atomic ADD (DynamoDB `ADD`), never a read.

Eras keep the stored numbers small: an era spans `ERA_HALF_LIVES` half-lives, so an event's
term is at most `points * 2**ERA_HALF_LIVES` whatever the calendar date, and accumulators fit
DynamoDB's 38-digit numbers with room to spare.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

# 2020-01-01T00:00:00Z: the origin of era numbering. Any fixed instant works.
EPOCH_SECONDS = 1_577_836_800
ERA_HALF_LIVES = 32
ACCUMULATOR_PREFIX = "a_"
# Digits kept when a term is written to DynamoDB: a relative error of 1e-15 per term.
SIGNIFICANT_DIGITS = 15


def to_seconds(moment: datetime) -> float:
    """Seconds since the Unix epoch of an aware datetime.

    Raises:
        ValueError: the datetime is naive (has no UTC offset).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps must carry a UTC offset")
    return moment.timestamp()


def accumulator_name(half_life_seconds: int, era: int) -> str:
    return f"{ACCUMULATOR_PREFIX}{half_life_seconds}_{era}"


def parse_accumulator_name(name: str) -> tuple[int, int]:
    """(half-life seconds, era) from an accumulator attribute name."""
    half_life, era = name[len(ACCUMULATOR_PREFIX) :].split("_", 1)
    return int(half_life), int(era)


def era_start(half_life_seconds: int, era: int) -> float:
    return EPOCH_SECONDS + era * ERA_HALF_LIVES * half_life_seconds


def contribution(points: float, half_life_seconds: int, occurred_at: datetime) -> tuple[str, float]:
    """The accumulator an event adds to, and the amount it adds.

    Args:
        points: the action's weight at the moment it happened (may be negative for a withdrawal).
        half_life_seconds: the action's half-life.
        occurred_at: when the action happened (aware).

    Returns:
        (accumulator attribute name, term to ADD to it).
    """
    t = to_seconds(occurred_at)
    era = math.floor((t - EPOCH_SECONDS) / (ERA_HALF_LIVES * half_life_seconds))
    exponent = (t - era_start(half_life_seconds, era)) / half_life_seconds
    return accumulator_name(half_life_seconds, era), points * math.pow(2.0, exponent)


def as_decimal(value: float) -> Decimal:
    """A float as a DynamoDB-safe Decimal (boto3 refuses inexact or over-long numbers)."""
    return Decimal(f"{value:.{SIGNIFICANT_DIGITS}g}")


def accumulators_of(item: Mapping[str, object]) -> dict[str, float]:
    """The accumulator attributes of a stored member item."""
    return {k: float(v) for k, v in item.items() if k.startswith(ACCUMULATOR_PREFIX)}  # type: ignore[arg-type]


def score_at(accumulators: Mapping[str, float | Decimal], at: datetime) -> float:
    """A member's score brought to the moment `at`."""
    t = to_seconds(at)
    total = 0.0
    for name, value in accumulators.items():
        half_life, era = parse_accumulator_name(name)
        exponent = -(t - era_start(half_life, era)) / half_life
        # Past about 1075 halvings the term is below the smallest float: it contributes nothing.
        total += float(value) * math.pow(2.0, exponent) if exponent > -1100 else 0.0
    return total


def naive_score(events: Iterable[tuple[float, int, datetime]], at: datetime) -> float:
    """The definition of the score: each event's points decayed to `at`, summed (for checks)."""
    t = to_seconds(at)
    return sum(points * math.pow(2.0, -(t - to_seconds(when)) / half_life) for points, half_life, when in events)


def utc_now() -> datetime:
    return datetime.now(UTC)
