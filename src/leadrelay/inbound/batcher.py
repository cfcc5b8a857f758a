"""Group commit for the inbound receiver.

Concurrent requests hand their verified deliveries to one flusher per process, which stores
up to `max_batch` of them in one transaction. Each request waits for its own batch to commit
before it answers 202, so an acknowledged delivery is always durable; what changes is that a
thousand deliveries cost a few statements instead of a few thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

from leadrelay.core.db import Database
from leadrelay.core.logging import get_logger
from leadrelay.inbound.service import VerifiedDelivery, store_deliveries

log = get_logger("leadrelay.inbound")


class IntakeUnavailable(Exception):
    """The batch could not be stored: the sender should retry (we answer 503)."""


@dataclass(slots=True)
class _Pending:
    delivery: VerifiedDelivery
    done: asyncio.Future[uuid.UUID | None]


class IntakeBatcher:
    def __init__(self, db: Database, *, max_batch: int = 500, max_flushes: int = 2) -> None:
        self._db = db
        self._max_batch = max_batch
        # Two batches may be in flight, so one batch's commit (fsync) overlaps the next one's
        # statements; each still answers only its own requests, after its own commit.
        self._slots = asyncio.Semaphore(max_flushes)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, delivery: VerifiedDelivery) -> uuid.UUID | None:
        """Store the delivery; returns its message id, or None if it is a replay."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever(), name="intake-flusher")
        done: asyncio.Future[uuid.UUID | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(delivery, done))
        return await done

    async def _flush_forever(self) -> None:
        while True:
            await self._slots.acquire()
            batch = [await self._queue.get()]
            # Whatever arrived while earlier batches were being written goes together.
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            task = asyncio.create_task(self._flush(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            await self._store(batch)
        finally:
            self._slots.release()

    async def _store(self, batch: list[_Pending]) -> None:
        try:
            async with self._db.session() as session:
                ids = await store_deliveries(session, [p.delivery for p in batch])
        except Exception as error:
            log.error(
                "inbound.batch_failed",
                size=len(batch),
                error=type(error).__name__,
                detail=str(error)[:300],
            )
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(IntakeUnavailable())
            return
        for pending, message_id in zip(batch, ids, strict=True):
            if not pending.done.done():
                pending.done.set_result(message_id)

    async def close(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
