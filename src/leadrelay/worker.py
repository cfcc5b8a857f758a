"""`leadrelay worker`: runs queued jobs, beats a heartbeat that /health reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import httpx
import psycopg_pool
from sqlalchemy.dialects.postgresql import insert as pg_insert

from leadrelay.app import secret_box_for
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.jobs import JobRuntime, dead_letter_middleware, job_app, set_runtime
from leadrelay.core.jobs_models import WorkerHeartbeat
from leadrelay.core.logging import get_logger
from leadrelay.core.runtime import settle_process
from leadrelay.core.settings import Settings

log = get_logger("leadrelay.worker")
HEARTBEAT_SECONDS = 10.0


async def beat(db: Database, name: str) -> None:
    now = utcnow()
    async with db.session() as session:
        await session.execute(
            pg_insert(WorkerHeartbeat)
            .values(worker_name=name, last_seen_at=now, started_at=now)
            .on_conflict_do_update(index_elements=["worker_name"], set_={"last_seen_at": now})
        )


async def _heartbeat_forever(db: Database, name: str) -> None:
    while True:
        try:
            await beat(db, name)
        except Exception as error:
            log.warning("worker.heartbeat_failed", error=type(error).__name__)
        await asyncio.sleep(HEARTBEAT_SECONDS)


@contextlib.asynccontextmanager
async def job_runtime(
    settings: Settings, urls: DatabaseUrls, *, pool_size: int = 5
) -> AsyncIterator[JobRuntime]:
    """Open the queue on the app role and set the runtime tasks read."""
    db = Database(urls, pool_size=pool_size)
    pool = psycopg_pool.AsyncConnectionPool(
        urls.app, min_size=1, max_size=pool_size + 2, open=False
    )
    await pool.open(wait=True)
    client = httpx.AsyncClient()
    runtime = JobRuntime(
        settings, db, extras={"secret_box": secret_box_for(settings), "http_client": client}
    )
    set_runtime(runtime)
    try:
        async with job_app.open_async(pool):
            yield runtime
    finally:
        set_runtime(None)
        await client.aclose()
        await pool.close()
        await db.dispose()


async def run_worker(
    settings: Settings,
    urls: DatabaseUrls,
    *,
    concurrency: int | None = None,
    wait: bool = True,
    install_signal_handlers: bool = True,
) -> None:
    concurrency = concurrency or settings.worker_concurrency
    settle_process()
    name = f"{socket.gethostname()}:{os.getpid()}"
    async with job_runtime(settings, urls, pool_size=concurrency + 1) as runtime:
        heartbeat = asyncio.create_task(_heartbeat_forever(runtime.db, name))
        log.info("worker.started", name=name, concurrency=concurrency)
        try:
            await job_app.run_worker_async(
                name=name,
                concurrency=concurrency,
                wait=wait,
                install_signal_handlers=install_signal_handlers,
                worker_middleware=[dead_letter_middleware],
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
