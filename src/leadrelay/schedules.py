"""Every periodic task, registered in this one place."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from leadrelay.core.clock import utcnow
from leadrelay.core.db import all_tenant_ids
from leadrelay.core.events import DISPATCH_TASK, OutboxEvent
from leadrelay.core.jobs import defer, job_app, retry_strategy, runtime
from leadrelay.core.jobs_models import WebhookReceipt

RECEIPT_RETENTION = timedelta(days=2)  # longer than any provider's retry window
STUCK_EVENT_AGE = timedelta(minutes=5)


@job_app.periodic(cron="*/5 * * * *")
@job_app.task(name="schedules.redispatch_stuck_events", retry=retry_strategy(3))
async def redispatch_stuck_events(timestamp: int) -> int:
    """Safety net: an outbox event still undispatched after 5 minutes gets a new dispatch job
    (dispatch is idempotent). Runs per tenant, under each tenant's RLS context."""
    db = runtime().db
    cutoff = utcnow() - STUCK_EVENT_AGE
    redeferred = 0
    async with db.session() as session:
        tenant_ids = await all_tenant_ids(session)
    for tenant_id in tenant_ids:
        async with db.session(tenant_id) as session:
            stuck = await session.scalars(
                select(OutboxEvent.id)
                .where(OutboxEvent.dispatched_at.is_(None), OutboxEvent.created_at < cutoff)
                .limit(500)
            )
            for event_id in stuck:
                await defer(
                    session, DISPATCH_TASK, tenant_id=str(tenant_id), event_id=str(event_id)
                )
                redeferred += 1
    return redeferred


@job_app.periodic(cron="17 * * * *")
@job_app.task(name="schedules.prune_webhook_receipts", retry=retry_strategy(3))
async def prune_webhook_receipts(timestamp: int) -> None:
    async with runtime().db.session() as session:
        await session.execute(
            delete(WebhookReceipt).where(WebhookReceipt.seen_at < utcnow() - RECEIPT_RETENTION)
        )
