"""A client event's argument count is checked against its handler's signature read once
(secure.Arity), with the same answer as `inspect.signature(handler).bind(*args)` gives."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tiffin_rt.transports.socketio.secure import Arity


class Handlers:
    async def on_one(self, sid: str) -> None: ...
    async def on_two(self, sid: str, data: Any) -> None: ...
    async def on_optional(self, sid: str, data: Any = None) -> None: ...
    async def on_three(self, sid: str, a: Any, b: Any = 1, c: Any = 2) -> None: ...
    async def on_star(self, sid: str, *rest: Any) -> None: ...
    async def on_kw_default(self, sid: str, data: Any, *, flag: bool = False) -> None: ...
    async def on_kw_required(self, sid: str, *, flag: bool) -> None: ...
    async def on_positional_only(self, sid: str, data: Any, /, extra: Any = 0) -> None: ...


HANDLERS = [name for name in vars(Handlers) if name.startswith("on_")]


@pytest.mark.parametrize("name", HANDLERS)
def test_arity_agrees_with_binding_the_signature(name: str) -> None:
    handler = getattr(Handlers(), name)
    arity = Arity(handler)
    for count in range(7):
        args = ["sid", *range(count - 1)] if count else []
        try:
            inspect.signature(handler).bind(*args)
            binds = True
        except TypeError:
            binds = False
        assert arity.admits(len(args)) is binds, (name, count)
