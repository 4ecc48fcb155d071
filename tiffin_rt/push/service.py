"""Web Push on this node: the store on the pool, the sender, the dispatcher and its workers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import asyncpg

from tiffin_rt.background import cancel_and_wait
from tiffin_rt.config import PushSettings
from tiffin_rt.db import push
from tiffin_rt.db.pruner import prune_forever
from tiffin_rt.db.push import StoredSubscription
from tiffin_rt.push.dispatcher import PushDispatcher
from tiffin_rt.push.guard import PublicOnlyResolver
from tiffin_rt.push.sender import PushSender
from tiffin_rt.push.vapid import VapidSigner

# A claim only has to outlive the moment every node has heard its event.
CLAIM_RETENTION_DAYS = 1.0


@dataclass(frozen=True, slots=True)
class PoolStore:
    pool: asyncpg.Pool

    async def for_user(self, user_id: str) -> list[StoredSubscription]:
        return await push.for_user(self.pool, user_id)

    async def claim(self, event_id: int, user_id: str) -> bool:
        return await push.claim(self.pool, event_id, user_id)

    async def claim_for_connected(self, pairs: list[tuple[int, str]]) -> None:
        await push.claim_for_connected(self.pool, pairs)

    async def forget(self, subscription: StoredSubscription) -> None:
        await push.forget(self.pool, subscription.id, subscription.subscription.endpoint)

    async def pushed(self, subscription: StoredSubscription) -> None:
        await push.pushed(self.pool, subscription.id)

    async def still_registered(self, subscription: StoredSubscription) -> bool:
        return await push.still_registered(self.pool, subscription)


class PushService:
    def __init__(
        self, settings: PushSettings, pool: asyncpg.Pool, is_online: Callable[[str], bool]
    ) -> None:
        self._settings = settings
        self._signer = VapidSigner(settings.vapid_private_key, settings.vapid_subject)
        self.public_key = self._signer.public_key
        self._session: aiohttp.ClientSession | None = None
        self._pool = pool
        self._is_online = is_online
        self._workers: list[asyncio.Task[None]] = []
        self.dispatcher: PushDispatcher | None = None

    def describe(self) -> dict[str, int]:
        """For /healthz."""
        if self.dispatcher is None:
            return {}
        return self.dispatcher.describe()

    async def start(self) -> PushDispatcher:
        settings = self._settings
        trusted = frozenset(h.lower() for h in settings.http_hosts)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            connector=aiohttp.TCPConnector(
                limit=max(settings.workers * 4, 16), resolver=PublicOnlyResolver(trusted)
            ),
        )
        sender = PushSender(
            self._session,
            self._signer,
            ttl=settings.ttl,
            urgency=settings.urgency,
            trusted=trusted,
        )
        self.dispatcher = PushDispatcher(
            settings=settings,
            store=PoolStore(self._pool),
            sender=sender,
            is_online=self._is_online,
        )
        self._workers = [
            asyncio.create_task(self.dispatcher.work(), name=f"tiffin_rt-push-{n}")
            for n in range(settings.workers)
        ]
        self._workers.append(
            asyncio.create_task(self.dispatcher.claim_connected(), name="tiffin_rt-push-claims")
        )
        self._workers.append(
            asyncio.create_task(
                prune_forever(self._pool, CLAIM_RETENTION_DAYS, 3600, "tiffin_rt.push_claims"),
                name="tiffin_rt-push-claims-pruner",
            )
        )
        return self.dispatcher

    async def stop(self) -> None:
        for task in self._workers:
            await cancel_and_wait(task)
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self._session is not None:
            await self._session.close()
