"""Helpers shared by integration tests: draining the job queue, reaching into the database as
its owner (what an attacker with the owner's password, or an operator, could do) and running
the operator's command line."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row
from typer.testing import CliRunner, Result

from leadrelay.core.db import DatabaseUrls
from leadrelay.core.jobs import dead_letter_middleware, job_app


async def run_jobs() -> None:
    """Run every job that is due now (and those they defer for now), then return.

    Needs the `job_runtime` fixture. Runs other tests' leftover jobs too, which is harmless:
    every job is idempotent and works inside its own tenant.
    """
    await job_app.run_worker_async(
        wait=False,
        install_signal_handlers=False,
        worker_middleware=[dead_letter_middleware],
        concurrency=1,
        listen_notify=False,
    )


@contextmanager
def owner_connection(urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A connection as the schema owner (bypasses RLS); commits when the block succeeds."""
    with psycopg.connect(urls.owner, row_factory=dict_row) as connection:
        yield connection


def jobs_for(urls: DatabaseUrls, task_name: str, **args: str) -> list[dict[str, Any]]:
    """procrastinate_jobs rows of `task_name` whose JSON args contain `args`, oldest first."""
    with owner_connection(urls) as connection:
        return connection.execute(
            "SELECT * FROM procrastinate_jobs WHERE task_name = %s AND args @> %s::jsonb "
            "ORDER BY id",
            (task_name, psycopg.types.json.Jsonb(args)),
        ).fetchall()


def make_jobs_due(urls: DatabaseUrls, task_name: str, **args: str) -> int:
    """Move the scheduled time of matching waiting jobs to now (a retry's wait, skipped)."""
    with owner_connection(urls) as connection:
        cursor = connection.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() "
            "WHERE status = 'todo' AND task_name = %s AND args @> %s::jsonb",
            (task_name, psycopg.types.json.Jsonb(args)),
        )
        return cursor.rowcount


def cli_env(urls: DatabaseUrls, data_dir: str) -> dict[str, str]:
    return {
        "DATABASE_URL": urls.owner,
        "DATABASE_APP_URL": urls.app,
        "LEADRELAY_ENV": "test",
        "LEADRELAY_DATA_DIR": data_dir,
    }


async def invoke_cli(urls: DatabaseUrls, data_dir: str, *args: str) -> Result:
    """Run `leadrelay <args>` in a worker thread: the command starts its own event loop."""
    from leadrelay.cli import app
    from leadrelay.core.settings import get_settings

    def invoke() -> Result:
        get_settings.cache_clear()
        # The command configures logging onto CliRunner's stderr, closed once it returns;
        # the rest of the test process must keep logging where it did.
        logging_config = structlog.get_config()
        try:
            return CliRunner().invoke(app, list(args), env=cli_env(urls, data_dir))
        finally:
            structlog.configure(**logging_config)
            get_settings.cache_clear()

    return await asyncio.to_thread(invoke)


def new_marker() -> str:
    return uuid.uuid4().hex


async def until_a_backend_waits_for_a_lock(urls: DatabaseUrls, seconds: float = 10.0) -> None:
    """Return once some transaction of the test database waits for a lock (a row, an advisory
    lock); fail if none does within `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    async with await psycopg.AsyncConnection.connect(urls.owner, autocommit=True) as connection:
        while asyncio.get_running_loop().time() < deadline:
            cursor = await connection.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            row = await cursor.fetchone()
            if row and row[0]:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"no transaction waited for a lock within {seconds} s")
