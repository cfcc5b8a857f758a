"""Scoring's queue tasks: score a chunk after verification; rescore a tenant page by page."""

from __future__ import annotations

import uuid

from leadrelay.core.clock import utcnow
from leadrelay.core.jobs import job_app, retry_strategy, runtime
from leadrelay.scoring import service


@job_app.task(name=service.SCORE_TASK, retry=retry_strategy())
async def score_task(
    *, tenant_id: str, lead_ids: list[str], correlation_id: str | None = None
) -> None:
    """Score a chunk of leads with the tenant's active ICP version (none active: nothing)."""
    tenant = uuid.UUID(tenant_id)
    async with runtime().db.session(tenant) as session:
        await service.score_leads(session, tenant, [uuid.UUID(i) for i in lead_ids], now=utcnow())


@job_app.task(name=service.RESCORE_TASK, retry=retry_strategy())
async def rescore_task(
    *, tenant_id: str, run_id: str, version_id: str, correlation_id: str | None = None
) -> None:
    """Rescore every open lead with a newly activated version, a page per transaction, the
    run's progress updated after each page. A retry starts over: scoring is an upsert and
    `lead.qualified` is emitted once per lead and version, so repeating a page is harmless."""
    tenant, run = uuid.UUID(tenant_id), uuid.UUID(run_id)
    db = runtime().db
    async with db.session(tenant) as session:
        version = await service.get_version(session, uuid.UUID(version_id))
        total = await service.count_open_leads(session)
        await service.finish_run(session, run, done=0, total=total, now=None)
    done, after = 0, None
    while True:
        async with db.session(tenant) as session:
            count, after = await service.rescore_page(
                session, tenant, version, after=after, now=utcnow()
            )
            done += count
            await service.finish_run(
                session, run, done=done, total=max(total, done), now=None if after else utcnow()
            )
        if after is None:
            return
