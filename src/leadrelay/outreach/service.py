"""Sending: an approved draft becomes a message, the policy guard decides, a channel delivers.

Every path that sends goes through `queue_draft` (and, at hand-over time, `deliver`), so no
side path can skip the do-not-contact checks. The guard's facts are read and the message is
counted under a per-tenant, per-channel transaction lock, so caps and throttles hold across any
number of worker processes: PostgreSQL is the only place the counting happens.

A message is persisted before the provider call, under an idempotency key; `deliver` marks it
`sending` and commits before calling the channel, so a retry after a crash finds it there and
fails it visibly ("outcome unknown") instead of sending it twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals import service as approvals
from leadrelay.approvals.models import Draft, DraftStatus
from leadrelay.capture.models import Lead, LegalBasis, Source
from leadrelay.capture.normalize import normalize_country
from leadrelay.compliance import domains
from leadrelay.compliance.audit import append_events
from leadrelay.core.errors import Conflict, NotFound, ValidationFailed
from leadrelay.core.events import emit
from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.drafting.service import sender_settings
from leadrelay.identity.models import Role, Tenant
from leadrelay.identity.service import Principal
from leadrelay.outreach import circuit, providers, suppression
from leadrelay.outreach import policy as guard
from leadrelay.outreach.channels.base import OutboundEmail, SendResult
from leadrelay.outreach.channels.dryrun import DryRunChannel
from leadrelay.outreach.channels.twilio import (
    OutboundCall,
    OutboundText,
    TwilioMessaging,
    TwilioVoice,
)
from leadrelay.outreach.local_time import WEEKDAYS, Window
from leadrelay.outreach.models import (
    Message,
    MessageKind,
    MessageStatus,
    SuppressionReason,
)
from leadrelay.outreach.unsubscribe import make_token
from leadrelay.telemetry import service as telemetry

_ENHANCED_STATUS = re.compile(r"\b5\.(\d{1,3})\.\d{1,3}\b")
# The words an admin types to let messages really leave.
LIVE_CONFIRMATION = "send real messages"
PHONE_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.VOICE)
# Delivery retries after a transient failure: 1, 2, 4 … minutes, at most 2 hours.
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=2)


class NotSendable(Conflict):
    """This draft cannot become a message as it is."""

    code = "not-sendable"


class MessageNotFound(NotFound):
    """The message does not exist."""


# --- the tenant's outreach settings -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutreachPolicy:
    dry_run: bool  # in effect: the process setting or the tenant's
    tenant_dry_run: bool
    forced_by_settings: bool  # LEADRELAY_DRY_RUN=true keeps every tenant in dry-run
    daily_caps: Mapping[str, int]
    domain_hourly_cap: int
    cooldown_days: int
    timezone: str
    # Per country (ISO 2): calls a day, and the local hours calls may be placed.
    country_call_caps: Mapping[str, int] = field(default_factory=dict)
    country_call_windows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _stored(tenant: Tenant) -> dict[str, Any]:
    stored = (tenant.settings or {}).get("outreach")
    return dict(stored) if isinstance(stored, dict) else {}


def outreach_policy(tenant: Tenant, settings: Settings) -> OutreachPolicy:
    stored = _stored(tenant)
    caps = {
        Channel.EMAIL.value: settings.daily_cap_email,
        Channel.SMS.value: settings.daily_cap_sms,
        Channel.WHATSAPP.value: settings.daily_cap_sms,
        Channel.VOICE.value: settings.daily_cap_voice,
    }
    custom = stored.get("daily_caps")
    if isinstance(custom, dict):
        caps.update({k: int(v) for k, v in custom.items() if k in caps})
    tenant_dry_run = stored.get("dry_run", True) is not False
    return OutreachPolicy(
        dry_run=settings.dry_run or tenant_dry_run,
        tenant_dry_run=tenant_dry_run,
        forced_by_settings=settings.dry_run,
        daily_caps=caps,
        domain_hourly_cap=int(stored.get("domain_hourly_cap", 5)),
        cooldown_days=int(stored.get("cooldown_days", 30)),
        timezone=str((tenant.settings or {}).get("timezone") or "UTC"),
        country_call_caps=dict(stored.get("country_call_caps") or {}),
        country_call_windows=dict(stored.get("country_call_windows") or {}),
    )


def call_window(rule: Mapping[str, Any]) -> Window:
    """A stored call window: {"start": "HH:MM", "end": "HH:MM", "days": [0…6]} (weekdays by
    default); ValueError when it is not one."""
    days = rule.get("days")
    return Window(
        str(rule.get("start", "")),
        str(rule.get("end", "")),
        frozenset(int(d) for d in days) if days is not None else WEEKDAYS,
    )


def guard_policy(view: OutreachPolicy) -> guard.Policy:
    return guard.Policy(
        tenant_zone=view.timezone,
        daily_caps={Channel(k): v for k, v in view.daily_caps.items()},
        domain_hourly_cap=view.domain_hourly_cap,
        cooldown=timedelta(days=view.cooldown_days),
        country_call_caps=dict(view.country_call_caps),
        country_windows={
            country: {Channel.VOICE: (call_window(rule),)}
            for country, rule in view.country_call_windows.items()
        },
    )


async def set_outreach_policy(
    session: AsyncSession,
    actor: Principal,
    settings: Settings,
    *,
    dry_run: bool | None,
    daily_caps: Mapping[str, int] | None,
    domain_hourly_cap: int | None,
    cooldown_days: int | None,
    confirmation: str | None,
    now: datetime,
    country_call_caps: Mapping[str, int] | None = None,
    country_call_windows: Mapping[str, Mapping[str, Any]] | None = None,
    accept_domain_risk: bool = False,
) -> OutreachPolicy:
    """Leaving dry-run, or raising a cap or the domain throttle above its default, needs the
    typed confirmation; every change is audited with before and after. Leaving dry-run while a
    sending domain fails SPF, DKIM or DMARC also needs `accept_domain_risk` (audited)."""
    tenant = await session.scalar(
        select(Tenant).where(Tenant.id == actor.tenant_id).with_for_update()
    )
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    before = outreach_policy(tenant, settings)
    defaults = outreach_policy(Tenant(settings={}), settings)
    # Each change that loosens a safe default, by the field that makes it (named in the 422).
    risks: list[dict[str, str]] = []
    if dry_run is False and before.tenant_dry_run:
        risks.append({"field": "dry_run", "reason": "leaves dry-run: messages are really sent"})
    for name, value in sorted((daily_caps or {}).items()):
        default = defaults.daily_caps.get(name)
        if default is not None and value > default:
            risks.append(
                {"field": f"daily_caps.{name}", "reason": f"{value} is above the default {default}"}
            )
    if domain_hourly_cap is not None and domain_hourly_cap > defaults.domain_hourly_cap:
        risks.append(
            {
                "field": "domain_hourly_cap",
                "reason": f"{domain_hourly_cap} is above the default {defaults.domain_hourly_cap}",
            }
        )
    confirmed = (confirmation or "").strip().lower() == LIVE_CONFIRMATION
    if risks and not confirmed:
        raise ValidationFailed(
            "Leaving dry-run or raising a limit above its default needs the confirmation typed "
            "out.",
            errors=[
                {"field": "confirmation", "reason": f"type exactly: {LIVE_CONFIRMATION}"},
                *risks,
            ],
        )
    if dry_run is False and before.tenant_dry_run:
        await domains.check_leaving_dry_run(
            session, actor, tenant, settings, accept_risk=accept_domain_risk, now=now
        )
    unknown = sorted(set(daily_caps or {}) - set(defaults.daily_caps))
    if unknown:
        raise ValidationFailed(
            "Unknown channel.",
            errors=[
                {"field": f"daily_caps.{name}", "reason": "unknown channel"} for name in unknown
            ],
        )
    stored = _stored(tenant)
    if dry_run is not None:
        stored["dry_run"] = dry_run
    if daily_caps:
        stored["daily_caps"] = {**(stored.get("daily_caps") or {}), **daily_caps}
    if domain_hourly_cap is not None:
        stored["domain_hourly_cap"] = domain_hourly_cap
    if cooldown_days is not None:
        stored["cooldown_days"] = cooldown_days
    problems = [
        {"field": f"{name}.{country}", "reason": f"{country!r} is not an ISO 3166 country code"}
        for name, mapping in (
            ("country_call_caps", country_call_caps),
            ("country_call_windows", country_call_windows),
        )
        for country in (mapping or {})
        if normalize_country(country) is None
    ]
    for country, rule in (country_call_windows or {}).items():
        try:
            call_window(rule)
        except (ValueError, TypeError) as exc:
            problems.append({"field": f"country_call_windows.{country}", "reason": str(exc)})
    if problems:
        raise ValidationFailed("A call window is not valid.", errors=problems)
    if country_call_caps is not None:
        stored["country_call_caps"] = {k.upper(): v for k, v in country_call_caps.items()}
    if country_call_windows is not None:
        stored["country_call_windows"] = {
            k.upper(): dict(v) for k, v in country_call_windows.items()
        }
    tenant.settings = {**(tenant.settings or {}), "outreach": stored}
    after = outreach_policy(tenant, settings)
    try:
        guard_policy(after)  # what every send will build: it must build now
    except ValueError as exc:
        raise ValidationFailed(
            "The outreach policy is not valid.", errors=[{"field": "policy", "reason": str(exc)}]
        ) from None
    await append_events(
        session,
        actor.tenant_id,
        [
            actor.audit(
                "outreach.policy_changed",
                target_type="tenant",
                target_id=actor.tenant_id,
                before=_audit_view(before),
                after=_audit_view(after),
                # What the typed confirmation was given for (empty: nothing needed it).
                confirmed=[risk["field"] for risk in risks],
            )
        ],
        now=now,
    )
    return after


def _audit_view(view: OutreachPolicy) -> dict[str, Any]:
    return {
        "dry_run": view.tenant_dry_run,
        "daily_caps": dict(view.daily_caps),
        "domain_hourly_cap": view.domain_hourly_cap,
        "cooldown_days": view.cooldown_days,
        "country_call_caps": dict(view.country_call_caps),
        "country_call_windows": dict(view.country_call_windows),
    }


# --- facts for the guard -----------------------------------------------------------------------


def _local_midnight(now: datetime, zone: str) -> datetime:
    local = now.astimezone(ZoneInfo(zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def _counters(
    session: AsyncSession, message: Message, zone: str, now: datetime
) -> guard.Counters:
    """Everything the caps need, in one statement: sends today on the channel (the tenant's
    day), e-mails to the domain in the last hour, calls to the country today, and the last
    contact with the lead."""
    day_start = _local_midnight(now, zone)
    hour_ago = now - guard.DOMAIN_WINDOW
    row = (
        await session.execute(
            text(
                "SELECT "
                "count(*) FILTER (WHERE channel = :channel AND counted_at >= :day_start), "
                "array_agg(counted_at) FILTER (WHERE channel = 'email' "
                "  AND recipient_domain = :domain AND counted_at > :hour_ago), "
                "count(*) FILTER (WHERE channel = 'voice' AND recipient_country = :country "
                "  AND counted_at >= :day_start), "
                "max(counted_at) FILTER (WHERE lead_id = :lead_id AND id <> :id) "
                "FROM messages WHERE counted_at IS NOT NULL "
                "AND (counted_at >= least(:day_start, :hour_ago) OR lead_id = :lead_id)"
            ),
            {
                "channel": message.channel,
                "day_start": day_start,
                "domain": message.recipient_domain,
                "hour_ago": hour_ago,
                "country": message.recipient_country
                if message.channel == Channel.VOICE.value
                else None,
                "lead_id": message.lead_id,
                "id": message.id,
            },
        )
    ).one()
    sent_today, domain_sends, calls_today, last_contact = row
    return guard.Counters(
        sent_today=int(sent_today or 0),
        domain_sends=tuple(domain_sends or ()),
        calls_today_to_country=int(calls_today or 0),
        last_contact_at=last_contact,
    )


async def _locked_counters(
    session: AsyncSession, message: Message, zone: str, now: datetime
) -> guard.Counters:
    await _lock_counting(session, message.tenant_id, message.channel)
    return await _counters(session, message, zone, now)


async def _facts(
    session: AsyncSession,
    message: Message,
    lead: Lead,
    *,
    keys: str,
    approval_refusal: str | None,
    zone: str,
    now: datetime,
) -> guard.Facts:
    basis = await session.scalar(select(Source.legal_basis).where(Source.id == lead.source_id))
    consent_row = await suppression.consent_state(session, lead.id, message.channel)
    consent = guard.Consent(guard.ConsentState.UNKNOWN)
    if consent_row is not None:
        consent = guard.Consent(guard.ConsentState(consent_row.state), consent_row.recorded_at)
    email = message.recipient if message.channel == Channel.EMAIL.value else None
    phone = None if email else message.recipient
    reasons = await suppression.suppression_reasons(session, keys, email=email, phone=phone)
    lists = await suppression.dnc_lists(session, keys, phone)
    return guard.Facts(
        # A lead always has a source; were it gone, the strictest basis applies.
        legal_basis=LegalBasis(basis) if basis else LegalBasis.CONSENT,
        consent=consent,
        suppressions=tuple(reasons),
        dnc_registries=tuple(lists),
        approval_refusal=approval_refusal,
        # Counted last, under the lock: everything above is about this lead alone and needs no
        # serializing; holding the lock only for counting and inserting keeps senders flowing.
        counters=await _locked_counters(session, message, zone, now),
    )


async def _lock_counting(session: AsyncSession, tenant_id: uuid.UUID, channel: str) -> None:
    """One decision at a time per tenant and channel: counts read under it stay true until the
    transaction that adds this message commits."""
    digest = hashlib.sha256(f"outreach:{tenant_id}:{channel}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def _approval_refusal(session: AsyncSession, message: Message, now: datetime) -> str | None:
    """Why the send guard refuses this exact text (None: it lets it through)."""
    if message.draft_id is None:
        return "no approved draft"
    try:
        await approvals.handoff(
            session,
            message.tenant_id,
            message.draft_id,
            subject=message.subject,
            body=message.body,
            now=now,
        )
    except approvals.GuardRefused as refused:
        return refused.detail
    return None


async def _decide(
    session: AsyncSession,
    message: Message,
    lead: Lead,
    *,
    keys: str,
    view: OutreachPolicy,
    now: datetime,
) -> guard.Decision:
    """Run the guard on `message` and record the decision on it (status, trace, counted_at)."""
    refusal = await _approval_refusal(session, message, now)
    facts = await _facts(
        session, message, lead, keys=keys, approval_refusal=refusal, zone=view.timezone, now=now
    )
    outbound = guard.OutboundMessage(
        channel=Channel(message.channel),
        recipient=message.recipient,
        recipient_domain=message.recipient_domain,
        country=message.recipient_country,
        lead_zone=_lead_zone(lead),
    )
    decision = guard.decide(outbound, facts, guard_policy(view), now)
    record = guard.trace_json(decision)
    message.policy_trace = [dict(step) for step in record["trace"]]
    message.blocked_by = decision.blocked_by
    message.block_reason = decision.reason
    message.retry_at = decision.retry_at
    if decision.allowed:
        message.status = MessageStatus.QUEUED
        message.counted_at = now
    elif decision.retry_at is not None:
        message.status = MessageStatus.DEFERRED
    else:
        message.status = MessageStatus.BLOCKED
    return decision


def _lead_zone(lead: Lead) -> str | None:
    zone = (lead.attributes or {}).get("timezone")
    return str(zone) if isinstance(zone, str) and zone else None


# --- queueing ----------------------------------------------------------------------------------


def _recipient(lead: Lead, channel: Channel) -> tuple[str, str | None]:
    if channel is Channel.EMAIL:
        if not lead.email:
            raise NotSendable(
                "The lead has no e-mail address.",
                errors=[{"field": "lead.email", "reason": "missing"}],
            )
        return lead.email, lead.email.rsplit("@", 1)[1].lower()
    if not lead.phone_e164:
        raise NotSendable(
            "The lead has no valid phone number.",
            errors=[{"field": "lead.phone_e164", "reason": "missing"}],
        )
    return lead.phone_e164, None


async def queue_draft(
    session: AsyncSession,
    actor: Principal,
    draft_id: uuid.UUID,
    *,
    settings: Settings,
    keys: str,
    kind: MessageKind,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Message, bool]:
    """The draft's current revision as a message, decided by the guard and queued for delivery
    when allowed. Returns (message, created); the same idempotency key returns the first
    message and sends nothing again."""
    draft = await approvals.get_draft(session, draft_id)
    revision = await approvals.current_revision(session, draft)
    key = idempotency_key or f"draft:{draft.id}:revision:{revision.number}"
    existing = await session.scalar(
        select(Message).where(Message.idempotency_key == key).with_for_update()
    )
    lead = await session.get(Lead, draft.lead_id)
    if lead is None:
        raise NotFound("The draft's lead does not exist.")
    tenant = await session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    view = outreach_policy(tenant, settings)
    if existing is not None:
        if existing.status == MessageStatus.BLOCKED:
            # Nothing left with it; asked again (say, once approved), the guard decides anew.
            decision = await _decide(session, existing, lead, keys=keys, view=view, now=now)
            await _after_decision(session, actor, existing, decision, now=now)
        return existing, False
    channel = Channel(draft.channel)
    recipient, domain = _recipient(lead, channel)
    message = Message(
        id=uuid.uuid4(),
        tenant_id=actor.tenant_id,
        lead_id=lead.id,
        draft_id=draft.id,
        kind=kind,
        channel=channel.value,
        provider=providers.provider_for(channel, settings, dry_run=view.dry_run),
        dry_run=view.dry_run,
        idempotency_key=key,
        status=MessageStatus.QUEUED,
        recipient=recipient,
        recipient_domain=domain,
        recipient_country=lead.country,
        subject=revision.subject,
        body=revision.body,
        content_sha256=revision.content_sha256,
        policy_trace=[],
        attempts=0,
        created_by=actor.name,
        created_at=now,
    )
    decision = await _decide(session, message, lead, keys=keys, view=view, now=now)
    try:
        async with session.begin_nested():
            session.add(message)
            await session.flush()
    except IntegrityError:
        # The same key, sent twice at the same moment: the other request's message stands.
        raced = await session.scalar(select(Message).where(Message.idempotency_key == key))
        if raced is None:
            raise
        return raced, False
    await _after_decision(session, actor, message, decision, now=now)
    return message, True


async def _after_decision(
    session: AsyncSession,
    actor: Principal,
    message: Message,
    decision: guard.Decision,
    *,
    now: datetime,
) -> None:
    from leadrelay.core.jobs import defer  # jobs import this module: import at call time

    action = {
        MessageStatus.QUEUED: "message.queued",
        MessageStatus.DEFERRED: "message.deferred",
        MessageStatus.BLOCKED: "message.blocked",
    }[message.status]
    await append_events(
        session,
        message.tenant_id,
        [
            actor.audit(
                action,
                target_type="message",
                target_id=message.id,
                lead_id=str(message.lead_id),
                channel=message.channel,
                dry_run=message.dry_run,
                blocked_by=decision.blocked_by,
            )
        ],
        now=now,
    )
    if message.status == MessageStatus.QUEUED:
        await defer(
            session,
            "outreach.deliver",
            tenant_id=str(message.tenant_id),
            message_id=str(message.id),
        )
    elif message.status == MessageStatus.BLOCKED:
        await emit(
            session,
            message.tenant_id,
            "message.blocked",
            {
                "message_id": str(message.id),
                "lead_id": str(message.lead_id),
                "blocked_by": decision.blocked_by,
                "reason": decision.reason,
            },
        )


async def release_deferred(
    session: AsyncSession, actor: Principal, *, settings: Settings, keys: str, now: datetime
) -> int:
    """Deferred messages whose time has come go through the guard again (it may block them
    for a new reason, or defer them once more)."""
    due = list(
        await session.scalars(
            select(Message)
            .where(Message.status == MessageStatus.DEFERRED, Message.retry_at <= now)
            .order_by(Message.retry_at)
            .limit(500)
            .with_for_update(skip_locked=True)
        )
    )
    tenant = await session.get(Tenant, actor.tenant_id)
    if tenant is None or not due:
        return 0
    view = outreach_policy(tenant, settings)
    for message in due:
        lead = await session.get(Lead, message.lead_id)
        if lead is None:
            continue
        decision = await _decide(session, message, lead, keys=keys, view=view, now=now)
        await _after_decision(session, actor, message, decision, now=now)
    return len(due)


# --- delivery ----------------------------------------------------------------------------------


def _token_secret(keys: str, purpose: str) -> bytes:
    """A link-signing secret per purpose, from the first key (rotating it breaks old links)."""
    return hashlib.sha256(f"{purpose}\n{keys.split(',')[0]}".encode()).digest()


def unsubscribe_secret(keys: str) -> bytes:
    return _token_secret(keys, "unsubscribe")


def unsubscribe_url(settings: Settings, keys: str, message: Message) -> str:
    token = make_token(unsubscribe_secret(keys), message.tenant_id, message.id)
    return f"{settings.public_url.rstrip('/')}/unsubscribe/{token}"


def voice_secret(keys: str) -> bytes:
    return _token_secret(keys, "voice")


def voice_url(settings: Settings, keys: str, message: Message) -> str:
    """Where Twilio fetches the call's TwiML (and posts what the callee said)."""
    token = make_token(voice_secret(keys), message.tenant_id, message.id)
    return f"{settings.public_url.rstrip('/')}/voice/{token}"


@dataclass(frozen=True, slots=True)
class Handover:
    """What `begin_delivery` hands to the channel, outside any transaction."""

    message_id: uuid.UUID
    email: OutboundEmail | None
    channel: str
    dry_run: bool
    provider: str
    recipient: str
    body: str
    voice_url: str | None = None


async def circuit_wait(
    session: AsyncSession, message_id: uuid.UUID, *, now: datetime
) -> datetime | None:
    """When the message's provider takes deliveries again (its circuit is open), noted on the
    message; None: go ahead. The message stays queued: a provider's trouble never skips it."""
    message = await session.get(Message, message_id)
    if message is None or message.status != MessageStatus.QUEUED:
        return None
    until = await circuit.wait_until(session, message.provider, now)
    if until is not None:
        message.retry_at = until
        message.error = f"{message.provider} is failing; its circuit is open until {until:%H:%M:%S}"
    return until


async def begin_delivery(
    session: AsyncSession, message_id: uuid.UUID, *, settings: Settings, keys: str, now: datetime
) -> Handover | None:
    """Mark the message `sending` (the caller commits before calling the channel); None when
    there is nothing to send (already sent, failed, blocked, or interrupted before)."""
    message = await session.scalar(
        select(Message).where(Message.id == message_id).with_for_update()
    )
    if message is None:
        raise MessageNotFound()
    if message.status == MessageStatus.SENDING:
        # A previous attempt handed it over and then died: it may have left. Never twice.
        message.status = MessageStatus.FAILED
        message.error = "outcome unknown: an attempt was interrupted after the hand-over"
        return None
    if message.status != MessageStatus.QUEUED:
        return None
    # The approval is checked again at hand-over: revoked or expired since queueing, it stops.
    refusal = await _approval_refusal(session, message, now)
    if refusal is not None:
        message.status = MessageStatus.BLOCKED
        message.blocked_by = guard.Check.APPROVAL.value
        message.block_reason = refusal
        message.counted_at = None
        return None
    message.status = MessageStatus.SENDING
    message.attempts += 1
    email = None
    if message.channel == Channel.EMAIL.value:
        tenant = await session.get(Tenant, message.tenant_id)
        sender = sender_settings(tenant) if tenant else {}
        email = OutboundEmail(
            message_id=message.id,
            from_address=sender.get("email") or settings.mail_from or "outreach@localhost",
            from_name=sender.get("name") or "",
            to_address=message.recipient,
            subject=message.subject or "",
            text_body=message.body,
            unsubscribe_url=unsubscribe_url(settings, keys, message),
        )
    return Handover(
        message.id,
        email,
        message.channel,
        message.dry_run,
        message.provider,
        message.recipient,
        message.body,
        voice_url(settings, keys, message) if message.channel == Channel.VOICE.value else None,
    )


async def hand_over(handover: Handover, settings: Settings) -> SendResult:
    """Call the channel (no transaction open). Dry-run records; a live message whose channel
    has no configured provider fails visibly."""
    if handover.dry_run or handover.provider == providers.DRY_RUN:
        if handover.email is not None:
            return await DryRunChannel(dkim_key=providers.dkim_key(settings)).send(handover.email)
        return SendResult("sent", f"dryrun-{handover.message_id}", "dry run: not sent")
    if handover.email is not None:
        channel = providers.email_channel(handover.provider, settings)
        if channel is None:
            return SendResult("permanent", None, "no e-mail provider configured")
        return await channel.send(handover.email)
    twilio = providers.twilio_settings(settings) if handover.provider == "twilio" else None
    if twilio is None:
        return SendResult("permanent", None, f"no {handover.channel} provider configured")
    if handover.channel == Channel.VOICE.value:
        # This call's own status callback, signed like its TwiML URL: duration, who answered
        # and the recording land on its message.
        status_url = f"{handover.voice_url}/status" if handover.voice_url else None
        voice = TwilioVoice(dataclasses.replace(twilio, status_callback_url=status_url))
        try:
            return await voice.call(
                OutboundCall(handover.message_id, handover.recipient, twiml_url=handover.voice_url)
            )
        finally:
            await voice.aclose()
    text_channel: Literal["sms", "whatsapp"] = (
        "whatsapp" if handover.channel == Channel.WHATSAPP.value else "sms"
    )
    messaging = TwilioMessaging(twilio)
    try:
        return await messaging.send(
            OutboundText(handover.message_id, text_channel, handover.recipient, handover.body)
        )
    finally:
        await messaging.aclose()


async def finish_delivery(
    session: AsyncSession,
    message_id: uuid.UUID,
    result: SendResult,
    *,
    settings: Settings,
    keys: str,
    now: datetime,
) -> tuple[Message, float | None]:
    """Record the channel's answer. Returns the message and, for a transient failure with
    attempts left, the seconds after which to try again."""
    message = await session.scalar(
        select(Message).where(Message.id == message_id).with_for_update()
    )
    if message is None:
        raise MessageNotFound()
    actor = Principal(
        message.tenant_id, "system", None, f"channel:{message.provider}", Role.OWNER, frozenset()
    )
    await circuit.record(session, message.provider, result, now)
    retry_in: float | None = None
    if result.status == "sent":
        message.status = MessageStatus.SENT
        message.sent_at = now
        message.provider_message_id = result.provider_message_id
        message.error = None
        # A provider's status report can overtake its answer to the send: what waited for
        # this message's provider id applies now.
        await telemetry.claim_unmatched(
            session,
            message.tenant_id,
            message.id,
            result.provider_message_id,
            keys=keys,
            now=now,
        )
        if message.draft_id is not None:
            draft = await session.get(Draft, message.draft_id)
            if draft is not None:
                draft.status = DraftStatus.SENT
        await emit(
            session,
            message.tenant_id,
            "message.sent",
            {
                "message_id": str(message.id),
                "lead_id": str(message.lead_id),
                "channel": message.channel,
                "dry_run": message.dry_run,
            },
        )
    elif result.status == "transient" and message.attempts < settings.send_max_attempts:
        backoff = min(RETRY_BASE * 2 ** (message.attempts - 1), RETRY_CAP)
        retry_in = max(backoff.total_seconds(), result.retry_after or 0.0)
        message.status = MessageStatus.QUEUED
        message.retry_at = now + timedelta(seconds=retry_in)
        message.error = result.detail
    else:
        message.status = MessageStatus.FAILED
        message.error = (
            result.detail
            if result.status == "permanent"
            else f"gave up after {message.attempts} attempts: {result.detail}"
        )
        if result.status == "permanent" and _is_hard_bounce(result.detail):
            await suppression.suppress(
                session,
                actor,
                keys=keys,
                kind="email" if message.channel == Channel.EMAIL.value else "phone",
                normalized=message.recipient.casefold()
                if message.channel == Channel.EMAIL.value
                else message.recipient,
                reason=SuppressionReason.HARD_BOUNCE,
                source=f"{message.provider} rejection",
                now=now,
            )
    await append_events(
        session,
        message.tenant_id,
        [
            actor.audit(
                f"message.{message.status}",
                target_type="message",
                target_id=message.id,
                attempts=message.attempts,
                provider=message.provider,
            )
        ],
        now=now,
    )
    return message, retry_in


def _is_hard_bounce(detail: str) -> bool:
    """A permanent refusal of the address itself (enhanced status 5.1.x: no such mailbox or
    domain; or, without one, 550/551/553), not of our content, credentials or certificate."""
    enhanced = _ENHANCED_STATUS.search(detail)
    if enhanced is not None:
        return enhanced.group(1) == "1"
    return detail.startswith(("550", "551", "553"))
