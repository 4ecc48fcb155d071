"""JSON as every transport writes it: orjson, compact, UTF-8 (a lone surrogate, which orjson
cannot write and JSON can, through the standard encoder)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """`obj` as compact JSON bytes (what python-socketio's packets and SSE `data:` carry)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        # A lone surrogate ("\ud800"): escaped, as the standard encoder writes it. Anything
        # else orjson refuses (an object JSON cannot carry) the standard encoder refuses too.
        return json.dumps(obj, separators=(",", ":")).encode()
