"""The job queue (procrastinate on PostgreSQL): tasks, retries with backoff and jitter, and a
dead letter after the last try.

Every task takes ids (and a `tenant_id` when it works for a tenant), re-reads state and is
idempotent. A job is deferred on the caller's own connection, inside its transaction, so it
exists if and only if the change committed (`defer`).
"""

from __future__ import annotations

import math
import random
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import procrastinate
from procrastinate import JobContext, RetryDecision
from procrastinate.retry import BaseRetryStrategy
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from leadrelay.core.db import Database, raw_connection
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.core.logging import correlation_id_var, get_logger
from leadrelay.core.settings import Settings

log = get_logger("leadrelay.jobs")

# Modules whose import registers tasks; the worker imports them all.
TASK_MODULES = [
    "leadrelay.core.events",
    "leadrelay.webhooks.jobs",
    "leadrelay.inbound.jobs",
    "leadrelay.capture.jobs",
    "leadrelay.capture.provider_jobs",
    "leadrelay.scoring.jobs",
    "leadrelay.routing.jobs",
    "leadrelay.approvals.jobs",
    "leadrelay.outreach.jobs",
    "leadrelay.telemetry.inbound",
    "leadrelay.schedules",
    "leadrelay.compliance.retention",
]


class PermanentJobError(Exception):
    """The job can never succeed as it is: no retry, straight to a dead letter."""


@dataclass(kw_only=True)
class BackoffWithJitter(BaseRetryStrategy):
    """Exponential backoff with "equal jitter": wait in [d/2, d], d = base·2^attempt, capped."""

    # None: LEADRELAY_JOB_MAX_ATTEMPTS of the process running the job (5 when none is set).
    max_attempts: int | None = None
    base_seconds: float = 2.0
    cap_seconds: float = 3600.0
    rng: random.Random = field(default_factory=random.Random)

    @override
    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> RetryDecision | None:
        if isinstance(exception, PermanentJobError) or job.attempts + 1 >= self.limit:
            return None
        return RetryDecision(retry_in={"seconds": self.delay_seconds(job.attempts)})

    @property
    def limit(self) -> int:
        if self.max_attempts is not None:
            return self.max_attempts
        return _runtime.settings.job_max_attempts if _runtime is not None else 5

    def delay_seconds(self, attempts: int) -> int:
        ceiling = min(self.cap_seconds, self.base_seconds * 2**attempts)
        return math.ceil(self.rng.uniform(ceiling / 2, ceiling))


@dataclass
class JobRuntime:
    """What tasks need from the process that runs them (set by the worker or the test)."""

    settings: Settings
    db: Database
    extras: dict[str, Any] = field(default_factory=dict)

    def secret_keys(self) -> str:
        """The keys addresses are hashed with, read once per worker (in development they
        come from a file)."""
        from leadrelay.core.security import secret_keys

        if "secret_keys" not in self.extras:
            self.extras["secret_keys"] = secret_keys(self.settings)
        keys: str = self.extras["secret_keys"]
        return keys


_runtime: JobRuntime | None = None


def set_runtime(runtime: JobRuntime | None) -> None:
    global _runtime
    _runtime = runtime


def runtime() -> JobRuntime:
    if _runtime is None:
        raise RuntimeError("job runtime not set: start the worker through leadrelay.worker")
    return _runtime


job_app = procrastinate.App(connector=procrastinate.PsycopgConnector(), import_paths=TASK_MODULES)


_tasks_loaded = False


def load_tasks() -> None:
    """Import every task module once, so that any process (web or worker) can defer any task."""
    global _tasks_loaded
    if not _tasks_loaded:
        job_app.perform_import_paths()  # type: ignore[no-untyped-call]
        _tasks_loaded = True


def retry_strategy(max_attempts: int | None = None) -> BackoffWithJitter:
    return BackoffWithJitter(max_attempts=max_attempts)


async def defer(
    session: AsyncSession,
    task_name: str,
    *,
    schedule_in_seconds: float | None = None,
    **kwargs: Any,
) -> int:
    """Defer `task_name` inside the session's transaction; returns the job id."""
    load_tasks()
    task = job_app.tasks[task_name]
    kwargs = {key: _jsonable(value) for key, value in kwargs.items()}
    if (correlation_id := correlation_id_var.get()) is not None:
        kwargs.setdefault("correlation_id", correlation_id)
    options: dict[str, Any] = {"connection": await raw_connection(session)}
    if schedule_in_seconds is not None:
        options["schedule_in"] = {"seconds": schedule_in_seconds}
    job_id: int = await task.configure(**options).defer_async(**kwargs)
    return job_id


ReplayHook = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]
replay_hooks: dict[str, ReplayHook] = {}


def replay_hook(task_name: str) -> Callable[[ReplayHook], ReplayHook]:
    """Register what must be reset before a dead letter of `task_name` is replayed."""

    def register(hook: ReplayHook) -> ReplayHook:
        replay_hooks[task_name] = hook
        return hook

    return register


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def _tenant_of(kwargs: dict[str, Any]) -> uuid.UUID | None:
    raw = kwargs.get("tenant_id")
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def add_dead_letter(
    session: AsyncSession,
    *,
    task_name: str,
    payload: dict[str, Any],
    error: str,
    attempts: int,
    queue: str = "default",
    job_id: int | None = None,
) -> DeadLetter:
    """A dead letter in the caller's transaction (for tasks that run their own schedule)."""
    letter = DeadLetter(
        tenant_id=_tenant_of(payload),
        task_name=task_name,
        queue=queue,
        payload=payload,
        error=error[:4000],
        attempts=attempts,
        job_id=job_id,
        correlation_id=str(payload.get("correlation_id") or "") or None,
    )
    session.add(letter)
    return letter


async def record_dead_letter(db: Database, context: JobContext, error: BaseException) -> uuid.UUID:
    job = context.job
    kwargs = dict(job.task_kwargs)
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    async with db.session(_tenant_of(kwargs)) as session:
        letter = add_dead_letter(
            session,
            task_name=job.task_name,
            payload=kwargs,
            error=text,
            attempts=job.attempts + 1,
            queue=job.queue,
            job_id=job.id,
        )
        await session.flush()
        return letter.id


async def dead_letter_middleware(
    call_next: Callable[[], Awaitable[Any]], context: JobContext, worker: Any
) -> Any:
    """Log each job with its correlation id; on the last failed try, write a dead letter."""
    job = context.job
    token = correlation_id_var.set(str(job.task_kwargs.get("correlation_id") or job.id))
    try:
        return await call_next()
    except Exception as error:
        task = context.app.tasks.get(job.task_name)
        strategy = task.retry_strategy if task else None
        final = strategy is None or strategy.get_retry_decision(exception=error, job=job) is None
        log.warning(
            "job.failed",
            task=job.task_name,
            job_id=job.id,
            attempt=job.attempts + 1,
            final=final,
            error=type(error).__name__,
        )
        if final:
            await record_dead_letter(runtime().db, context, error)
        raise
    finally:
        correlation_id_var.reset(token)
