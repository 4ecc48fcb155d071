"""What the database raises, in two kinds: it is unreachable or failing, or it refused the data."""

from __future__ import annotations

import asyncpg
import orjson

# A lost, refusing or timed-out database (database.command_timeout): answered `unavailable`,
# never a crash; the client may retry.
DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

# What the database (or encoding for it) refuses because of the data itself, SQLSTATE class 22:
# the client's input, answered `invalid_payload`, never `unavailable`. Catch before DB_ERRORS,
# which includes them. core.storable refuses the known kinds earlier.
INPUT_ERRORS = (asyncpg.DataError, UnicodeEncodeError, orjson.JSONEncodeError)


def input_error_name(exc: BaseException) -> str:
    """For the log line: the error's kind only, never the input it quotes."""
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} {sqlstate}" if sqlstate else type(exc).__name__
