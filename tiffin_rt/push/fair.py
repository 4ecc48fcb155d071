"""Push jobs queued per user and taken round-robin, at most `per_user` of one user's in flight.

One shared FIFO let a user whose push service hangs (or answers 429 to every retry) take every
worker until push.timeout while other users' pushes waited behind. Here such a user holds at
most `per_user` send slots and `user_capacity` places, and every other user with work gets the
next free worker in turn. A place is held from `put` until `done`: by a job waiting, one in
flight, and a retry waiting on its timer (`retain`), so memory stays bounded by `capacity`.
A notification's fan-out to its user's devices (`put_first`) is never refused, so the bound can
be passed by the devices kept per user, at most.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

Job = TypeVar("Job")


class FairQueue(Generic[Job]):
    def __init__(self, *, capacity: int, user_capacity: int, per_user: int) -> None:
        self._capacity = capacity
        self._user_capacity = user_capacity
        self._per_user = per_user
        self._pending: dict[str, deque[Job]] = {}
        self._in_flight: dict[str, int] = {}
        self._places: dict[str, int] = {}
        self._turns: deque[str] = deque()  # users with a job to take and a free slot, in turn
        self._has_turn: set[str] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._total = 0  # places held
        self.backlog = 0  # jobs waiting for a worker
        self.in_flight = 0
        self.retained = 0  # retries waiting on a timer

    @property
    def users_waiting(self) -> int:
        return len(self._pending)

    def put(self, user: str, job: Job) -> str | None:
        """Queue a job; else the bound that refused it (then nothing is queued)."""
        if self._total >= self._capacity:
            return "push.queue_size"
        if self._places.get(user, 0) >= self._user_capacity:
            return "push.user_queue_size"
        self._hold(user, 1)
        self._add(user, job, first=False)
        return None

    def put_first(self, user: str, jobs: Sequence[Job]) -> None:
        """A notification's sends to the user's devices, ahead of the user's later jobs."""
        self._hold(user, len(jobs))
        for job in reversed(jobs):
            self._add(user, job, first=True)

    def retain(self, user: str) -> None:
        """The job in flight keeps its place for a retry that waits on a timer."""
        self._hold(user, 1)
        self.retained += 1

    def put_retained(self, user: str, job: Job) -> None:
        self.retained -= 1
        self._add(user, job, first=False)

    def release_retained(self, user: str) -> None:
        """A retry abandoned (shutdown)."""
        self.retained -= 1
        self._hold(user, -1)

    def _hold(self, user: str, count: int) -> None:
        self._total += count
        places = self._places.get(user, 0) + count
        if places:
            self._places[user] = places
        else:
            del self._places[user]

    def _add(self, user: str, job: Job, *, first: bool) -> None:
        queue = self._pending.setdefault(user, deque())
        if first:
            queue.appendleft(job)
        else:
            queue.append(job)
        self.backlog += 1
        self._give_turn(user)

    def _give_turn(self, user: str) -> None:
        if (
            user in self._has_turn
            or user not in self._pending
            or self._in_flight.get(user, 0) >= self._per_user
        ):
            return
        self._has_turn.add(user)
        self._turns.append(user)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> tuple[str, Job]:
        """The next user's next job; the caller calls `done(user)` when it has finished."""
        while not self._turns:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and self._turns:
                    self._wake_one()  # the turn it was woken for goes to another worker
                raise
        user = self._turns.popleft()
        self._has_turn.discard(user)
        queue = self._pending[user]
        job = queue.popleft()
        self.backlog -= 1
        if not queue:
            del self._pending[user]
        self._in_flight[user] = self._in_flight.get(user, 0) + 1
        self.in_flight += 1
        self._give_turn(user)  # to the back of the line: the others go first
        return user, job

    def done(self, user: str) -> None:
        """The job taken for `user` has finished: its slot and its place are free."""
        self.in_flight -= 1
        left = self._in_flight[user] - 1
        if left:
            self._in_flight[user] = left
        else:
            del self._in_flight[user]
        self._hold(user, -1)
        self._give_turn(user)
