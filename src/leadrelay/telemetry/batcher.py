"""Group commit for delivery webhooks.

Mailgun posts one event per request and SendGrid a few dozen; a transaction each costs a
commit (an fsync) and a handful of round trips per request. Concurrent requests hand their
verified, parsed events to this batcher instead: whatever has arrived while earlier writes
were under way is written together by `service.receive_batch`, in one transaction, and each
request gets its own receipt only once that transaction has committed — a 2xx still means
the events are stored. Nothing waits for company: a request that finds a writer free is
written at once, alone.

Webhooks whose events may suppress an address or stop a campaign (bounces, complaints,
unsubscribes: few) are written by their own request, unbatched, so that what they audit and
emit carries that request's correlation id.

A writer keeps its pooled connection while requests keep coming, and for `linger` seconds
after the last (a checkout, with its ping, costs about as much CPU as a small batch). If a
batch fails, each of its webhooks is written again on its own, in its own session, so that
one bad body (a value longer than its column …) fails only its own request, as it would have
unbatched; the writer then takes a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import Context
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.logging import get_logger
from leadrelay.telemetry.events import DeliveryEvent
from leadrelay.telemetry.service import Receipt, has_effects, receive_batch

log = get_logger("leadrelay.telemetry")


@dataclass(slots=True)
class _Pending:
    events: Sequence[DeliveryEvent]
    done: asyncio.Future[Receipt]


class DeliveryBatcher:
    """One per process (kept on `app.state`). Up to `max_writers` transactions at once, each
    taking what is waiting up to `max_events` events: a batch of a few hundred events already
    spreads the per-transaction cost thin, and capping it there keeps a few batches in flight
    — one preparing its rows in Python while another runs in PostgreSQL and a third waits for
    its commit (one batch of everything left both idle in turn: 8k events/s in the bench where
    200 x 3 reached 9-13k). Mailgun's one-event webhooks never reach the cap."""

    def __init__(
        self,
        db: Database,
        *,
        keys: str,
        max_events: int = 200,
        max_writers: int = 3,
        linger: float = 0.25,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._keys = keys
        self._max_events = max_events
        self._max_writers = max_writers
        self._linger = linger
        self._clock = clock
        self._waiting: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, events: Sequence[DeliveryEvent]) -> Receipt:
        """Store and apply one webhook's events; returns once they are committed. Raises what
        writing them raised (the request then fails and the provider retries)."""
        if not events:
            return Receipt()
        if has_effects(events):
            # A bounce, a complaint, an unsubscribe: rare, and what it does (a suppression,
            # a campaign stopped) is audited under the request's correlation id. Written by
            # this request itself, as before batching, so that the audit trail says so.
            async with self._db.session() as session:
                (receipt,) = await receive_batch(
                    session, [events], keys=self._keys, now=self._clock()
                )
            return receipt
        done: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Pending(events, done))
        self._arrived.set()
        if len(self._writers) < self._max_writers:
            # A context of its own: not the request's that happened to start it (its ids
            # would end up in the logs of every batch).
            writer = asyncio.create_task(
                self._write_while_waiting(), name="telemetry-writer", context=Context()
            )
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await done

    def _take(self) -> list[_Pending]:
        batch = [self._waiting.popleft()]
        size = len(batch[0].events)
        while self._waiting and size + len(self._waiting[0].events) <= self._max_events:
            pending = self._waiting.popleft()
            batch.append(pending)
            size += len(pending.events)
        return batch

    async def _write_while_waiting(self) -> None:
        while self._waiting:
            try:
                async with self._db.engine.connect() as connection:
                    while await self._more_soon():
                        if not await self._write(connection, self._take()):
                            break  # after a failure, a fresh connection
            except Exception as error:  # no connection to be had: what waits fails now
                while self._waiting:
                    _fail(self._waiting.popleft(), error)

    async def _more_soon(self) -> bool:
        """Whether something waits, or arrives within `linger` seconds (and is still there
        when this writer wakes: the other one may have taken it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        while not self._waiting:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    async def _write(self, connection: AsyncConnection, batch: list[_Pending]) -> bool:
        """Write the batch on `connection`, one transaction; False if it failed (its webhooks
        are then written one by one, each in its own session)."""
        try:
            async with (
                AsyncSession(bind=connection, expire_on_commit=False) as session,
                session.begin(),
            ):
                receipts = await receive_batch(
                    session, [p.events for p in batch], keys=self._keys, now=self._clock()
                )
        except asyncio.CancelledError:  # the process is stopping: no answer, so a retry
            for pending in batch:  # finds stored as a duplicate what was committed
                pending.done.cancel()
            raise
        except Exception as error:
            if len(batch) > 1:
                log.warning("telemetry.batch_failed", size=len(batch), error=type(error).__name__)
            for pending in batch:
                await self._write_alone(pending, error if len(batch) == 1 else None)
            return False
        for pending, receipt in zip(batch, receipts, strict=True):
            if not pending.done.done():
                pending.done.set_result(receipt)
        return True

    async def _write_alone(self, pending: _Pending, error: Exception | None) -> None:
        if error is None:
            try:
                async with self._db.session() as session:
                    (receipt,) = await receive_batch(
                        session, [pending.events], keys=self._keys, now=self._clock()
                    )
            except Exception as own_error:
                error = own_error
            else:
                if not pending.done.done():
                    pending.done.set_result(receipt)
                return
        _fail(pending, error)

    async def close(self) -> None:
        """Finish what was taken and let the writers go (for the app's shutdown: a writer
        lingering for more work holds a pooled connection)."""
        self._linger = 0.0
        self._arrived.set()
        if self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)


def _fail(pending: _Pending, error: Exception) -> None:
    if not pending.done.done():
        pending.done.set_exception(error)
