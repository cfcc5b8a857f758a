"""Outreach's queue tasks: deliver queued messages, a chunk at a time; release deferred ones when
due; run campaigns; e-mail their reports."""

from __future__ import annotations

import uuid
from collections import Counter

from leadrelay.core.clock import utcnow
from leadrelay.core.db import all_tenant_ids
from leadrelay.core.jobs import job_app, retry_strategy, runtime
from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.drafting.llm import LlmDrafter, llm_settings
from leadrelay.drafting.service import sender_settings
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import system_principal
from leadrelay.outreach import campaigns, delivery, providers, service
from leadrelay.outreach.channels.base import OutboundEmail, SendResult
from leadrelay.outreach.channels.dryrun import DryRunChannel
from leadrelay.outreach.models import Campaign, CampaignRun
from leadrelay.outreach.queueing import DELIVER_TASK


@job_app.task(name=DELIVER_TASK, retry=retry_strategy())
async def deliver(
    *,
    tenant_id: str,
    message_id: str | None = None,
    message_ids: list[str] | None = None,
    correlation_id: str | None = None,
) -> str:
    """Hand a chunk of messages (`message_ids`, or one `message_id`) to their channels: mark
    them `sending` and commit, call the channels with no transaction open, record the answers
    (retries and messages waiting for a provider's circuit get jobs of their own)."""
    ids = [uuid.UUID(m) for m in ([message_id] if message_id else []) + (message_ids or [])]
    settings = runtime().settings
    outcomes = await delivery.deliver_messages(
        runtime().db,
        uuid.UUID(tenant_id),
        ids,
        settings=settings,
        keys=runtime().secret_keys(),
    )
    counted = Counter(str(outcome.status) for outcome in outcomes)
    return ", ".join(f"{status} {count}" for status, count in sorted(counted.items())) or (
        "nothing to send"
    )


@job_app.periodic(cron="* * * * *")
@job_app.task(name="outreach.release_deferred", retry=retry_strategy(3))
async def release_deferred(timestamp: int) -> int:
    """Every minute: deferred messages whose time has come go through the guard again."""
    settings, db = runtime().settings, runtime().db
    keys = runtime().secret_keys()
    async with db.session() as session:
        tenant_ids = await all_tenant_ids(session)
    released = 0
    for tenant_id in tenant_ids:
        async with db.session(tenant_id) as session:
            released += await service.release_deferred(
                session, system_principal(tenant_id), settings=settings, keys=keys, now=utcnow()
            )
    return released


@job_app.periodic(cron="*/5 * * * *")
@job_app.task(name="outreach.run_campaigns", retry=retry_strategy(3))
async def run_campaigns(timestamp: int) -> int:
    """Every five minutes: each active campaign whose local send time has passed today runs
    once (its members then wait for their next step's day)."""
    settings, db = runtime().settings, runtime().db
    keys = runtime().secret_keys()
    drafter = drafter_for(settings)
    async with db.session() as session:
        tenant_ids = await all_tenant_ids(session)
    runs = 0
    try:
        for tenant_id in tenant_ids:
            async with db.session(tenant_id) as session:
                due = await campaigns.due_campaigns(session, utcnow())
            for campaign_id in due:
                async with db.session(tenant_id) as session:
                    await campaigns.run(
                        session,
                        system_principal(tenant_id),
                        campaign_id,
                        settings=settings,
                        keys=keys,
                        drafter=drafter,
                        trigger="schedule",
                        now=utcnow(),
                    )
                runs += 1
    finally:
        if drafter is not None:
            await drafter.aclose()
    return runs


def drafter_for(settings: Settings) -> LlmDrafter | None:
    configured = llm_settings(settings)
    return LlmDrafter(configured) if configured else None


@job_app.task(name="outreach.email_run_report", retry=retry_strategy())
async def email_run_report(
    *, tenant_id: str, run_id: str, correlation_id: str | None = None
) -> str:
    """E-mail a campaign run's report to its operator: through the tenant's e-mail provider,
    or recorded by the dry-run channel while the tenant is in dry-run. What happened is kept
    on the run."""
    settings, db = runtime().settings, runtime().db
    tenant = uuid.UUID(tenant_id)
    async with db.session(tenant) as session:
        run = await session.get(CampaignRun, uuid.UUID(run_id))
        campaign = await session.get(Campaign, run.campaign_id) if run else None
        tenant_row = await session.get(Tenant, tenant)
        if run is None or campaign is None or tenant_row is None or not campaign.report_to:
            return "nothing to report"
        subject, body = campaigns.report_text(campaign, run)
        view = service.outreach_policy(tenant_row, settings)
        sender = sender_settings(tenant_row)
        public = settings.public_url.rstrip("/")
        email = OutboundEmail(
            message_id=run.id,
            from_address=sender.get("email") or settings.mail_from or "outreach@localhost",
            from_name="LeadRelay",
            to_address=campaign.report_to,
            subject=subject,
            text_body=body,
            # Not a lead's opt-out: where the operator changes who gets these reports.
            unsubscribe_url=f"{public}/console/campaigns/{campaign.id}",
        )
    provider = providers.provider_for(Channel.EMAIL, settings, dry_run=view.dry_run)
    if provider == providers.DRY_RUN:
        result = await DryRunChannel(dkim_key=providers.dkim_key(settings)).send(email)
    else:
        channel = providers.email_channel(provider, settings)
        result = (
            await channel.send(email)
            if channel is not None
            else SendResult("permanent", None, "no e-mail provider configured")
        )
    async with db.session(tenant) as session:
        run = await session.get(CampaignRun, uuid.UUID(run_id))
        if run is not None:
            run.report_email = {
                "to": email.to_address,
                "provider": provider,
                "status": result.status,
                "detail": result.detail,
                "at": utcnow().isoformat(),
            }
        if result.status == "transient":
            # Raised so the queue retries with backoff; recorded above either way.
            raise RuntimeError(f"report e-mail not sent yet: {result.detail}")
    return result.status
