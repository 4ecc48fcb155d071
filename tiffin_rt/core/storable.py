"""Text PostgreSQL cannot store (U+0000, unpaired surrogates) is refused before any query."""

from __future__ import annotations

import re

# `text` and `jsonb` refuse U+0000; UTF-8 (the database and the wire) cannot encode a lone
# surrogate, which a JSON string such as "\ud800" still decodes to in Python.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why this text cannot be stored, or None when it can."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "contains U+0000 (a NUL character)"
    return "contains an unpaired surrogate (not valid Unicode)"
