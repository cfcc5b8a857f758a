"""Operations: dead letters (list, replay) and the health of database, queue and workers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import record
from leadrelay.core.errors import Conflict, NotFound
from leadrelay.core.jobs import defer, job_app, load_tasks, replay_hooks
from leadrelay.core.jobs_models import DeadLetter, WorkerHeartbeat
from leadrelay.identity.service import Principal, system_principal
from leadrelay.outreach.circuit import CircuitView, all_circuits


class DeadLetterNotFound(NotFound):
    """The dead letter does not exist."""


class AlreadyReplayed(Conflict):
    """This dead letter was already replayed."""

    code = "already-replayed"


async def list_dead_letters(
    session: AsyncSession, *, include_replayed: bool = True, limit: int = 200
) -> list[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.created_at.desc()).limit(limit)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    return list(await session.scalars(query))


async def get_dead_letter(session: AsyncSession, letter_id: uuid.UUID) -> DeadLetter:
    """RLS shows only the session's tenant (or, with no tenant, system letters)."""
    letter = await session.get(DeadLetter, letter_id)
    if letter is None:
        raise DeadLetterNotFound()
    return letter


async def replay_dead_letter(
    session: AsyncSession, letter_id: uuid.UUID, *, actor: Principal | None, now: datetime
) -> DeadLetter:
    """Defer the task again with its original payload, in this transaction."""
    letter = await session.scalar(
        select(DeadLetter).where(DeadLetter.id == letter_id).with_for_update()
    )
    if letter is None:
        raise DeadLetterNotFound()
    if letter.replayed_at is not None:
        raise AlreadyReplayed()
    load_tasks()
    if letter.task_name not in job_app.tasks:
        raise Conflict(f"task {letter.task_name!r} no longer exists")
    payload: dict[str, Any] = dict(letter.payload)
    if hook := replay_hooks.get(letter.task_name):
        await hook(session, payload)
    payload.pop("correlation_id", None)
    letter.replay_job_id = await defer(session, letter.task_name, **payload)
    letter.replayed_at = now
    if letter.tenant_id is not None:
        entry = (actor or system_principal(letter.tenant_id)).audit(
            "dead_letter.replayed",
            target_type="dead_letter",
            target_id=letter.id,
            task=letter.task_name,
            replay_job_id=letter.replay_job_id,
        )
        await record(session, letter.tenant_id, entry, now=now)
    return letter


@dataclass(frozen=True, slots=True)
class Health:
    database: bool
    queue_todo: int
    queue_lag_seconds: float
    worker_age_seconds: float | None
    circuits: tuple[CircuitView, ...] = ()

    @property
    def status(self) -> str:
        if not self.database:
            return "down"
        if self.worker_age_seconds is None or self.worker_age_seconds > 60:
            return "degraded"
        if any(c.state == "open" for c in self.circuits):
            return "degraded"
        return "ok"


async def check_health(session: AsyncSession, *, now: datetime) -> Health:
    todo, oldest = (
        await session.execute(
            text(
                "SELECT count(*), min(coalesce(j.scheduled_at, e.at)) "
                "FROM procrastinate_jobs j LEFT JOIN procrastinate_events e "
                "ON e.job_id = j.id AND e.type = 'deferred' "
                "WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())"
            )
        )
    ).one()
    last_seen = await session.scalar(select(func.max(WorkerHeartbeat.last_seen_at)))
    return Health(
        database=True,
        queue_todo=int(todo),
        queue_lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        worker_age_seconds=(now - last_seen).total_seconds() if last_seen else None,
        circuits=tuple(await all_circuits(session)),
    )
