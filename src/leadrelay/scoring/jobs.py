"""Scoring's queue tasks: score a chunk after verification; rescore a tenant page by page;
sync CRM outcomes."""

from __future__ import annotations

import uuid

from leadrelay.core.clock import utcnow
from leadrelay.core.jobs import PermanentJobError, job_app, retry_strategy, runtime
from leadrelay.core.logging import get_logger
from leadrelay.crm.hubspot import HubSpotAuthError, HubSpotClient, HubSpotError
from leadrelay.crm.outcomes import OutcomeLabel, OutcomeRecord
from leadrelay.scoring import outcomes, service

log = get_logger("leadrelay.crm")


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


SYNC_CHUNK = 500


@job_app.task(name=outcomes.SYNC_TASK, retry=retry_strategy())
async def sync_hubspot_task(*, tenant_id: str, correlation_id: str | None = None) -> int:
    """Pull deals closed or changed since the last sync and record their outcomes, a chunk per
    transaction; the cursor moves only past what was stored. A bad token is a permanent
    failure (straight to a dead letter, shown on the connection); rate limits are waited out
    by the client, other errors retried by the queue."""
    rt = runtime()
    tenant = uuid.UUID(tenant_id)
    async with rt.db.session(tenant) as session:
        connection = await outcomes.get_connection(session)
        if connection is None:
            return 0
        token = rt.extras["secret_box"].decrypt(connection.token_encrypted)
        since = connection.synced_until
        client = HubSpotClient(
            connection.base_url,
            token,
            stage_labels={k: OutcomeLabel(v) for k, v in connection.stage_labels.items()},
        )
    stored = 0
    chunk: list[OutcomeRecord] = []

    async def flush() -> None:
        nonlocal stored, chunk
        async with rt.db.session(tenant) as session:
            await outcomes.record_outcomes(session, tenant, chunk, now=utcnow())
            found = await outcomes.get_connection(session)
            if found is not None and client.last_modified is not None:
                found.synced_until = client.last_modified
        stored += len(chunk)
        chunk = []

    try:
        async for record in client.closed_deals(since=since):
            chunk.append(record)
            if len(chunk) >= SYNC_CHUNK:
                await flush()
        if chunk:
            await flush()
    except HubSpotError as error:
        async with rt.db.session(tenant) as session:
            found = await outcomes.get_connection(session)
            if found is not None:
                found.last_error = f"{error.status}: {error.message}"[:2000]
        if isinstance(error, HubSpotAuthError):
            raise PermanentJobError(str(error)) from error
        raise
    async with rt.db.session(tenant) as session:
        found = await outcomes.get_connection(session)
        if found is not None:
            found.last_sync_at, found.last_error = utcnow(), None
            if client.last_modified is not None:
                found.synced_until = client.last_modified
    for problem in client.problems:
        log.warning(
            "crm.deal_skipped" if problem.skipped else "crm.deal_problem",
            deal_id=problem.deal_id,
            field=problem.field,
            reason=problem.reason,
        )
    return stored
