"""Capture's queue tasks: each takes ids and can run twice without harm."""

from __future__ import annotations

import uuid

from leadrelay.capture.dedup import dedup_leads
from leadrelay.capture.intake import DEDUP_TASK, SCORE_TASK, VERIFY_TASK
from leadrelay.capture.statistics import refresh_if_stale
from leadrelay.capture.verification import verifiers_for, verify_leads
from leadrelay.core.clock import utcnow
from leadrelay.core.jobs import defer, job_app, retry_strategy, runtime


@job_app.task(name=DEDUP_TASK, retry=retry_strategy())
async def dedup_task(
    *, tenant_id: str, lead_ids: list[str], correlation_id: str | None = None
) -> None:
    """Fuzzy-match a chunk of new leads (already merged or missing ones are skipped)."""
    tenant = uuid.UUID(tenant_id)
    async with runtime().db.session() as session:
        await refresh_if_stale(session)
    async with runtime().db.session(tenant) as session:
        await dedup_leads(session, tenant, [uuid.UUID(i) for i in lead_ids], now=utcnow())


@job_app.task(name=VERIFY_TASK, retry=retry_strategy())
async def verify_task(
    *, tenant_id: str, lead_ids: list[str], correlation_id: str | None = None
) -> None:
    """Verify a chunk of new leads (e-mail and phone), with the worker's verifiers and cache;
    then score them (rules may read verification)."""
    rt = runtime()
    verifiers = rt.extras.get("verifiers")
    if verifiers is None:
        verifiers = rt.extras["verifiers"] = verifiers_for(rt.settings, rt.db)
    async with rt.db.session() as session:
        await refresh_if_stale(session)
    async with rt.db.session(uuid.UUID(tenant_id)) as session:
        await verify_leads(session, [uuid.UUID(i) for i in lead_ids], verifiers, now=utcnow())
        await defer(session, SCORE_TASK, tenant_id=tenant_id, lead_ids=lead_ids)
