# Boundary checks shared by every public constructor and the CLI.
#
# Each check names the argument and shows the bad value, so a mistake is found where it is
# made, not later inside a running loop. Durations accept a number of seconds or a
# `datetime.timedelta` (which includes pendulum's Duration). They are capped at
# `MAX_SECONDS`, about 31 years: beyond that the human-facing times in status snapshots
# would overflow `datetime`, and no maintenance loop waits that long.
from __future__ import annotations

import datetime
import math
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Collection

MAX_SECONDS = 1e9

_T = TypeVar("_T", bound=str)


def _number(name: str, value: object) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"`{name}` must be a number of seconds or a timedelta, got {value!r}"
        raise TypeError(msg)
    return float(value)


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite duration, > 0 (or >= 0 with `allow_zero`), at most `MAX_SECONDS`."""
    number = _number(name, value)
    low_ok = number >= 0 if allow_zero else number > 0
    if not (math.isfinite(number) and low_ok and number <= MAX_SECONDS):
        kind = "non-negative" if allow_zero else "positive"
        msg = f"`{name}` must be a {kind} finite number of seconds up to {MAX_SECONDS:g}, got {value!r}"
        raise ValueError(msg)
    return number


def optional_seconds(name: str, value: object, *, allow_zero: bool = False) -> float | None:
    """Like `seconds`, but `None` passes through (it means "no limit")."""
    return None if value is None else seconds(name, value, allow_zero=allow_zero)


def fraction(name: str, value: object) -> float:
    """A number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"`{name}` must be a number in [0, 1), got {value!r}"
        raise TypeError(msg)
    if not 0 <= value < 1:  # also rejects NaN
        msg = f"`{name}` must be a number in [0, 1), got {value!r}"
        raise ValueError(msg)
    return float(value)


def integer(name: str, value: object, *, minimum: int) -> int:
    """An int (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"`{name}` must be an integer >= {minimum}, got {value!r}"
        raise TypeError(msg)
    if value < minimum:
        msg = f"`{name}` must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return value


def optional_integer(name: str, value: object, *, minimum: int) -> int | None:
    return None if value is None else integer(name, value, minimum=minimum)


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        msg = f"`{name}` must be True or False, got {value!r}"
        raise TypeError(msg)
    return value


def choice(name: str, value: _T, choices: Collection[str]) -> _T:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        msg = f"`{name}` must be one of {options}, got {value!r}"
        raise ValueError(msg)
    return value


def text(name: str, value: object) -> str:
    """A non-empty string without surrounding whitespace."""
    if not isinstance(value, str):
        msg = f"`{name}` must be a string, got {value!r}"
        raise TypeError(msg)
    if not value or value.strip() != value:
        msg = f"`{name}` must be a non-empty string without surrounding whitespace, got {value!r}"
        raise ValueError(msg)
    return value
