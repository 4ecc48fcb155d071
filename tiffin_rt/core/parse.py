"""Every number and order id a client sends is parsed here, one way for every transport.

`str.isdigit()` is true for `²` and other Unicode digits and `int()` takes signs, spaces and
leading zeros: both let one value have many spellings (`01`, `+1`, ` 1` all name order 1)
and let input past the check crash the caller. Here a number is ASCII digits in canonical form
(no sign, no space, no leading zero) and fits PostgreSQL's bigint; an order id must be
written exactly as the database prints it, because that text is the room events are sent to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BIGINT = 2**63 - 1

_UNSIGNED = re.compile(r"0|[1-9][0-9]{0,18}")
_SIGNED = re.compile(r"0|-?[1-9][0-9]{0,18}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_INTEGER_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), MAX_BIGINT),
}
_SHOWN = 24  # characters of a refused value quoted back


class InvalidNumber(ValueError):
    """Not an integer in canonical form and range; the message is safe to show the client."""


class InvalidOrderId(ValueError):
    """Not an order id as the database prints it; the message is safe to show the client."""


def shown(value: object) -> str:
    """A refused client value quoted back in an error, at most _SHOWN characters. An array or
    object is named, never repr'd: the repr of a deeply nested one (a JSON parser reads 1000
    levels) raises RecursionError, and the client got `internal` for its own bad input."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, str):
        value = value[:_SHOWN]
    return repr(value)[:_SHOWN]


def parse_int(value: object, name: str, *, low: int = 0, high: int = MAX_BIGINT) -> int:
    """A JSON integer, or a string of ASCII digits without sign, space or leading zero."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _UNSIGNED.fullmatch(value):
        number = int(value)
    if number is None or not low <= number <= high:
        raise InvalidNumber(f"{name}: an integer from {low} to {high} (got {shown(value)})")
    return number


def parse_optional_int(
    value: object, name: str, *, low: int = 0, high: int = MAX_BIGINT
) -> int | None:
    """None when absent (None or an empty string), else as parse_int."""
    if value is None or value == "":
        return None
    return parse_int(value, name, low=low, high=high)


@dataclass(frozen=True, slots=True)
class OrderIdFormat:
    """How the orders id column prints its values (`format_type` of the column).

    Integer and uuid columns have one printed form, checked here without a query; other types
    are checked by the lookup itself, which treats an id printed differently as no order.
    """

    column_type: str = "text"

    def parse(self, value: object) -> str:
        """The order id as text; a JSON integer becomes its decimal text."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or value == "":
            raise InvalidOrderId(f"an order id is a non-empty string (got {shown(value)})")
        bounds = _INTEGER_RANGES.get(self.column_type)
        if bounds is not None:
            low, high = bounds
            if _SIGNED.fullmatch(value) is None or not low <= int(value) <= high:
                raise InvalidOrderId(
                    f"order ids are integers in plain decimal, without plus sign, space or"
                    f" leading zero, as the server prints them (got {shown(value)})"
                )
        elif self.column_type == "uuid" and _UUID.fullmatch(value) is None:
            raise InvalidOrderId(
                f"order ids are lowercase UUIDs such as"
                f" 123e4567-e89b-12d3-a456-426614174000 (got {shown(value)})"
            )
        return value
