"""Jobs behind the provider webhooks: fetch a Meta lead and capture it; attach a WhatsApp
message to its sender's lead. Both take ids, re-read state and return early when done; the
Graph API call holds no database connection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import select

from leadrelay.capture import intake, meta, sources, whatsapp
from leadrelay.capture.models import Source
from leadrelay.capture.provider_models import LeadMessage
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import LeadRelayError
from leadrelay.core.jobs import PermanentJobError, job_app, retry_strategy, runtime
from leadrelay.core.logging import get_logger
from leadrelay.identity.service import get_tenant
from leadrelay.telemetry import inbound
from leadrelay.webhooks.service import is_private_target

log = get_logger("leadrelay.capture.provider_jobs")


@asynccontextmanager
async def _http_client() -> AsyncIterator[httpx.AsyncClient]:
    shared: httpx.AsyncClient | None = runtime().extras.get("http_client")
    if shared is not None:
        yield shared
        return
    async with httpx.AsyncClient() as own:
        yield own


def _rejection(leadgen_or_message: str, result: intake.RowResult) -> PermanentJobError:
    reasons = ", ".join(sorted({e.get("reason", "") for e in result.errors})) or "rejected"
    return PermanentJobError(f"{leadgen_or_message} was rejected by intake: {reasons}")


def _accepting_source(source: Source | None) -> Source:
    try:
        return sources.check_source_accepts(source)
    except sources.SourceRefused as refused:
        raise PermanentJobError(f"source refused: {refused.errors[0]['type']}") from None


@job_app.task(name=meta.META_FETCH_TASK, retry=retry_strategy())
async def meta_fetch_lead(
    *,
    tenant_id: str,
    source_id: str,
    leadgen_id: str,
    form_id: str | None = None,
    page_id: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """Fetch a Meta lead from the Graph API and capture it. 5xx, timeouts and rate limits
    are retried with backoff; a 4xx (expired token, missing permission, unknown lead) is
    permanent: a dead letter holding Meta's error."""
    rt = runtime()
    tenant, source_key = uuid.UUID(tenant_id), uuid.UUID(source_id)
    async with rt.db.session(tenant) as session:
        if await meta.get_lead_by_external_id(session, source_key, leadgen_id) is not None:
            return  # captured already (a replayed job)
        source = _accepting_source(await session.get(Source, source_key))
        try:
            config = meta.provider_config(
                source, rt.extras["secret_box"], meta.Provider.META_LEAD_ADS
            )
        except LeadRelayError as error:
            raise PermanentJobError(error.detail) from None
    base_url = config.graph_base_url or rt.settings.meta_graph_base_url
    if (
        config.graph_base_url is not None
        and not rt.settings.webhook_allow_private_targets
        and await is_private_target(base_url)
    ):
        raise PermanentJobError("refused: the Graph API base URL resolves to a private address")

    async with _http_client() as http:
        client = meta.GraphClient(
            http=http,
            base_url=base_url,
            access_token=config.access_token,
            app_secret=config.app_secret,
        )
        try:
            graph_lead = await client.fetch_lead(leadgen_id)
        except meta.GraphRefused as refused:
            raise PermanentJobError(f"Graph API refused lead {leadgen_id}: {refused}") from None
    try:
        mapped = meta.map_lead(graph_lead, leadgen_id=leadgen_id)
    except meta.LeadMismatch as mismatch:
        raise PermanentJobError(str(mismatch)) from None

    async with rt.db.session(tenant) as session:
        await meta.lock_capture(session, f"meta:{source_key.hex}:{leadgen_id}")
        if await meta.get_lead_by_external_id(session, source_key, leadgen_id) is not None:
            return
        source = _accepting_source(await session.get(Source, source_key))
        policy = intake.CapturePolicy.from_settings((await get_tenant(session, tenant)).settings)
        result = await meta.capture_meta_lead(session, source, mapped, policy=policy, now=utcnow())
    log.info(
        "meta.lead_captured",
        leadgen_id=leadgen_id,
        form_id=form_id,
        status=result.status.value,
        lead_id=str(result.lead_id) if result.lead_id else None,
        answers=len(mapped.answers),
    )
    # After the commit: the rejection is audited, and the dead letter keeps it visible.
    if result.status == intake.RowStatus.REJECTED:
        raise _rejection(f"Meta lead {leadgen_id}", result)


@job_app.task(name=whatsapp.MESSAGE_TASK, retry=retry_strategy())
async def whatsapp_message(
    *, tenant_id: str, source_id: str, message_id: str, correlation_id: str | None = None
) -> None:
    """Create or match the sender's lead and attach the stored message to it, then read it
    as a reply (telemetry.inbound: opt-out, HELP, a reply to our outreach…)."""
    rt = runtime()
    async with rt.db.session(uuid.UUID(tenant_id)) as session:
        message = await session.scalar(
            select(LeadMessage).where(LeadMessage.id == uuid.UUID(message_id)).with_for_update()
        )
        if message is None or message.lead_id is not None:
            return  # attached already, or gone with its lead
        source = _accepting_source(await session.get(Source, message.source_id))
        tenant = await get_tenant(session, source.tenant_id)
        result = await whatsapp.attach_message(
            session,
            source,
            message,
            policy=intake.CapturePolicy.from_settings(tenant.settings),
            now=utcnow(),
        )
        if result.status != intake.RowStatus.REJECTED and result.lead_id is not None:
            # Attached (attach_message set message.lead_id): a reply to our outreach, a STOP,
            # HELP… is read and acted on now that the lead is known.
            await inbound.handle_attached_message(
                session,
                tenant,
                message,
                sender=whatsapp.sender_row(message)["phone"] or "",
                keys=runtime().secret_keys(),
                now=utcnow(),
            )
    if result.status == intake.RowStatus.REJECTED:
        raise _rejection(f"WhatsApp message {message_id}", result)
