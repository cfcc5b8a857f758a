"""Routing's queue tasks: assign qualified leads; watch first-touch SLAs."""

from __future__ import annotations

import uuid

from leadrelay.core.clock import utcnow
from leadrelay.core.db import all_tenant_ids
from leadrelay.core.jobs import job_app, retry_strategy, runtime
from leadrelay.routing import service

ROUTE_TASK = "routing.route_leads"


@job_app.task(name=ROUTE_TASK, retry=retry_strategy())
async def route_task(
    *, tenant_id: str, lead_ids: list[str], correlation_id: str | None = None
) -> None:
    """Assign a chunk of qualified leads (leads already assigned or queued are left alone)."""
    tenant = uuid.UUID(tenant_id)
    async with runtime().db.session(tenant) as session:
        await service.route_leads(session, tenant, [uuid.UUID(i) for i in lead_ids], now=utcnow())


@job_app.periodic(cron="* * * * *")
@job_app.task(name="routing.enforce_sla", retry=retry_strategy(3))
async def enforce_sla(timestamp: int) -> int:
    """Every minute: breach overdue first touches in every tenant (alert, reassign)."""
    db = runtime().db
    async with db.session() as session:
        tenant_ids = await all_tenant_ids(session)
    breached = 0
    for tenant_id in tenant_ids:
        async with db.session(tenant_id) as session:
            sweep = await service.enforce_sla(session, tenant_id, now=utcnow())
            breached += sweep.breached
    return breached
