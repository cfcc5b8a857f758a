"""Approval's periodic task: pending reviews past their deadline expire."""

from __future__ import annotations

from leadrelay.approvals import service
from leadrelay.core.clock import utcnow
from leadrelay.core.db import all_tenant_ids
from leadrelay.core.jobs import job_app, retry_strategy, runtime


@job_app.periodic(cron="*/10 * * * *")
@job_app.task(name="approvals.expire_pending", retry=retry_strategy(3))
async def expire_pending(timestamp: int) -> int:
    db = runtime().db
    async with db.session() as session:
        tenant_ids = await all_tenant_ids(session)
    expired = 0
    for tenant_id in tenant_ids:
        async with db.session(tenant_id) as session:
            expired += await service.expire_pending(session, now=utcnow())
    return expired
