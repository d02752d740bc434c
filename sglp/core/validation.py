"""Option checks run when a component is built (before any data is loaded): each raises InvalidArgument naming the
config key, the value and what would be valid (run.py prints it as one `sglp: error:` line, exit 2)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sglp.core.errors import InvalidArgument


def integer(key: str, value: Any, minimum: int = 1, allow_none: bool = False) -> None:
    """An integer >= minimum (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{key}={value!r} must be an integer >= {minimum}" + (" (or null)" if allow_none else ""))


def number(key: str, value: Any, minimum: float = 0.0, strict: bool = False, maximum: float | None = None) -> None:
    """A real number >= minimum (> minimum when strict, <= maximum when given)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    ok = ok and (value > minimum if strict else value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")
        raise InvalidArgument(f"{key}={value!r} must be a number {bound}")


def one_of(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise InvalidArgument(f"{key}={value!r}: choose one of {', '.join(map(str, choices))}")


def batch_sizes(key: str, values: Sequence[int]) -> None:
    """A non-empty list of batch sizes >= 1."""
    if not values:
        raise InvalidArgument(f"{key}={list(values)!r} must list at least one batch size")
    for b in values:
        integer(f"{key} entry", b)
