"""Delivery: queued messages handed to their channels, a chunk at a time, never one twice.

Three steps, two transactions (`deliver_messages`, which the `outreach.deliver` job runs):
1. `begin_deliveries`: the messages are locked; a provider whose circuit is open keeps its
   messages queued until it takes deliveries again; the send guard checks each approval again
   (revoked or expired since queueing: blocked); the rest are marked `sending` — committed
   before any provider sees them. A message a previous attempt left `sending` may have left:
   it is failed as "outcome unknown", never sent again.
2. `hand_over_all`: the channels are called with no transaction open, several messages at a
   time; SMTP carries many messages per connection (`SmtpSession`). One message's trouble,
   even an exception, is its own result; after `circuit.FAILURES_TO_OPEN` transient failures
   in a row a provider gets no more of the chunk (they wait for its circuit, untried).
3. `finish_deliveries`: each answer is recorded: sent; transient → queued again with backoff
   (at least the provider's Retry-After) until `send_max_attempts`; permanent → failed, and a
   5.1.x refusal suppresses the address. Outcomes, events and audit links are written together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals.models import DraftStatus
from leadrelay.compliance.audit import append_events
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, raw_connection
from leadrelay.core.events import emit_many
from leadrelay.core.jobs import defer
from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.drafting.service import sender_settings
from leadrelay.identity.models import Role, Tenant
from leadrelay.identity.service import Principal
from leadrelay.outreach import circuit, providers, suppression
from leadrelay.outreach import policy as guard
from leadrelay.outreach.channels.base import Channel as EmailChannel
from leadrelay.outreach.channels.base import OutboundEmail, SendResult
from leadrelay.outreach.channels.dryrun import DryRunChannel
from leadrelay.outreach.channels.twilio import (
    OutboundCall,
    OutboundText,
    TwilioMessaging,
    TwilioVoice,
)
from leadrelay.outreach.decisions import approval_refusals
from leadrelay.outreach.links import unsubscribe_link, voice_link
from leadrelay.outreach.models import MessageStatus, SuppressionReason
from leadrelay.outreach.queueing import DELIVER_TASK
from leadrelay.telemetry import service as telemetry

# Messages in flight at once per chunk (each SMTP one on a connection of its own).
HANDOVER_CONCURRENCY = 8
# Messages marked `sending` together: what a crash mid-delivery can leave unknown.
DELIVERY_SLICE = 100
# Delivery retries after a transient failure: 1, 2, 4 … minutes, at most 2 hours.
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=2)
INTERRUPTED = "outcome unknown: an attempt was interrupted after the hand-over"
_ENHANCED_STATUS = re.compile(r"\b5\.(\d{1,3})\.\d{1,3}\b")


@dataclass(frozen=True, slots=True)
class Handover:
    """What `begin_deliveries` hands to the channel, outside any transaction."""

    message_id: uuid.UUID
    email: OutboundEmail | None
    channel: str
    dry_run: bool
    provider: str
    recipient: str
    body: str
    voice_url: str | None = None


@dataclass(frozen=True, slots=True)
class Started:
    handovers: list[Handover]
    # Providers whose circuit is open: when each may be tried again, with its messages.
    waiting: dict[datetime, list[uuid.UUID]] = field(default_factory=dict)
    missing: list[uuid.UUID] = field(default_factory=list)  # no such message (erased, say)


@dataclass(frozen=True, slots=True)
class Outcome:
    message_id: uuid.UUID
    status: MessageStatus
    retry_in: float | None  # seconds until the next attempt (queued again)


# --- 1. begin ----------------------------------------------------------------------------------

_LOCK_QUEUED = (
    "SELECT id, tenant_id, status, draft_id, channel, provider, dry_run, recipient, subject, "
    "body FROM messages WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"
)


@dataclass(frozen=True, slots=True)
class _Queued:
    id: uuid.UUID
    tenant_id: uuid.UUID
    status: str
    draft_id: uuid.UUID | None
    channel: str
    provider: str
    dry_run: bool
    recipient: str
    subject: str | None
    body: str


async def begin_deliveries(
    session: AsyncSession,
    message_ids: Sequence[uuid.UUID],
    *,
    settings: Settings,
    keys: str,
    now: datetime,
) -> Started:
    """Mark the messages that may go now `sending` (the caller commits before calling the
    channels) and return their hand-overs, in the order given. Messages already sent, failed
    or blocked are left alone."""
    await session.flush()
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_LOCK_QUEUED, (list(message_ids),))
        rows = {row[0]: _Queued(*row) for row in await cursor.fetchall()}
    missing = [m for m in message_ids if m not in rows]
    if not rows:
        return Started([], missing=missing)
    tenant_id = next(iter(rows.values())).tenant_id
    # Held for the whole chunk: the send guard reads the tenant's approval policy from the
    # session's identity map, which keeps only weak references.
    tenant = await session.get(Tenant, tenant_id)
    queued = [rows[m] for m in dict.fromkeys(message_ids) if m in rows]
    interrupted = [m.id for m in queued if m.status == MessageStatus.SENDING]
    queued = [m for m in queued if m.status == MessageStatus.QUEUED]
    waiting: dict[datetime, list[uuid.UUID]] = {}
    for provider in sorted({m.provider for m in queued}):
        until = await circuit.wait_until(session, provider, now)
        if until is not None:
            # A provider's trouble never fails or skips a message: it waits, still queued.
            held = [m.id for m in queued if m.provider == provider]
            waiting.setdefault(until, []).extend(held)
            await _execute(
                session,
                "UPDATE messages SET retry_at = %s, error = %s WHERE id = ANY(%b::uuid[])",
                (until, f"{provider} is failing; its circuit is open until {until:%H:%M:%S}", held),
            )
    waits = {m for ids in waiting.values() for m in ids}
    ready = [m for m in queued if m.id not in waits]
    # The approval is checked again at hand-over: revoked or expired since queueing, it stops.
    refusals = await approval_refusals(session, tenant_id, ready, now=now)
    blocked = [(m.id, r) for m, r in zip(ready, refusals, strict=True) if r is not None]
    sending = [m for m, r in zip(ready, refusals, strict=True) if r is None]
    if interrupted:
        # A previous attempt handed these over and then died: they may have left. Never twice.
        await _execute(
            session,
            "UPDATE messages SET status = %s, error = %s WHERE id = ANY(%b::uuid[])",
            (MessageStatus.FAILED.value, INTERRUPTED, interrupted),
        )
    if blocked:
        await _execute(
            session,
            "UPDATE messages AS m SET status = %s, blocked_by = %s, block_reason = t.reason, "
            "counted_at = NULL FROM unnest(%b::uuid[], %b::text[]) AS t(id, reason) "
            "WHERE m.id = t.id",
            (
                MessageStatus.BLOCKED.value,
                guard.Check.APPROVAL.value,
                [m for m, _ in blocked],
                [r for _, r in blocked],
            ),
        )
    if sending:
        await _execute(
            session,
            "UPDATE messages SET status = %s, attempts = attempts + 1 WHERE id = ANY(%b::uuid[])",
            (MessageStatus.SENDING.value, [m.id for m in sending]),
        )
    sender = sender_settings(tenant) if tenant else {}
    handovers = [_handover(m, sender, settings=settings, keys=keys) for m in sending]
    return Started(handovers, waiting, missing)


def _handover(
    message: _Queued, sender: dict[str, str | None], *, settings: Settings, keys: str
) -> Handover:
    email = None
    if message.channel == Channel.EMAIL.value:
        email = OutboundEmail(
            message_id=message.id,
            from_address=sender.get("email") or settings.mail_from or "outreach@localhost",
            from_name=sender.get("name") or "",
            to_address=message.recipient,
            subject=message.subject or "",
            text_body=message.body,
            unsubscribe_url=unsubscribe_link(settings, keys, message.tenant_id, message.id),
        )
    voice_url = None
    if message.channel == Channel.VOICE.value:
        voice_url = voice_link(settings, keys, message.tenant_id, message.id)
    return Handover(
        message.id,
        email,
        message.channel,
        message.dry_run,
        message.provider,
        message.recipient,
        message.body,
        voice_url,
    )


async def _execute(session: AsyncSession, statement: str, params: Sequence[Any]) -> None:
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(statement, params)


# --- 2. hand over ------------------------------------------------------------------------------


async def hand_over(
    handover: Handover, settings: Settings, *, email_channel: EmailChannel | None = None
) -> SendResult:
    """Call the channel (no transaction open): `email_channel` when given (an open SMTP
    session), else the provider's. Dry-run records; a live message whose channel has no
    configured provider fails visibly."""
    if handover.dry_run or handover.provider == providers.DRY_RUN:
        if handover.email is not None:
            return await DryRunChannel(dkim_key=providers.dkim_key(settings)).send(handover.email)
        return SendResult("sent", f"dryrun-{handover.message_id}", "dry run: not sent")
    if handover.email is not None:
        channel = email_channel or providers.email_channel(handover.provider, settings)
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


async def hand_over_all(
    handovers: Sequence[Handover], settings: Settings, *, concurrency: int = HANDOVER_CONCURRENCY
) -> list[SendResult | None]:
    """Each hand-over's answer, in order: `concurrency` workers pull from one queue, each on an
    SMTP connection of its own for the SMTP messages. None: not tried, because the provider
    failed `circuit.FAILURES_TO_OPEN` times in a row meanwhile."""
    results: list[SendResult | None] = [None] * len(handovers)
    failures: Counter[str] = Counter()  # transient failures in a row, per provider
    pending = iter(range(len(handovers)))
    smtp = providers.smtp_channel(settings)

    async def worker() -> None:
        async with AsyncExitStack() as stack:
            connection = None
            for index in pending:  # next() runs between awaits: each index goes to one worker
                handover = handovers[index]
                provider = handover.provider
                if failures[provider] >= circuit.FAILURES_TO_OPEN:
                    continue
                email_channel = None
                if smtp is not None and provider == "smtp" and not handover.dry_run:
                    if connection is None:
                        connection = await stack.enter_async_context(smtp.session())
                    email_channel = connection
                results[index] = result = await _answer(handover, settings, email_channel)
                if provider not in circuit.UNGUARDED and result.status != "permanent":
                    failures[provider] = failures[provider] + 1 if result.status != "sent" else 0

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(handovers))))))
    return results


async def _answer(
    handover: Handover, settings: Settings, email_channel: EmailChannel | None
) -> SendResult:
    try:
        return await hand_over(handover, settings, email_channel=email_channel)
    except Exception as error:  # one message's bug must not stop the chunk
        # Channels return provider trouble as results; what raises is a message no channel
        # could take (a header that would inject lines, say). It left nowhere: fail it.
        return SendResult("permanent", None, f"not handed over: {type(error).__name__}: {error}")


# --- 3. finish ---------------------------------------------------------------------------------

_LOCK_SENDING = (
    "SELECT id, tenant_id, lead_id, draft_id, channel, provider, recipient, attempts, dry_run, "
    "retry_at, sent_at, provider_message_id "
    "FROM messages WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"
)
_RECORD = (
    "UPDATE messages AS m SET status = t.status, attempts = t.attempts, sent_at = t.sent_at, "
    "provider_message_id = t.provider_message_id, error = t.error, retry_at = t.retry_at "
    "FROM unnest(%b::uuid[], %b::text[], %b::int[], %b::timestamptz[], %b::text[], %b::text[], "
    "%b::timestamptz[]) AS t(id, status, attempts, sent_at, provider_message_id, error, retry_at) "
    "WHERE m.id = t.id"
)
# Which of these messages have provider events waiting for them (`telemetry.claim_unmatched`
# takes them, one message at a time, for the few that do).
_UNMATCHED = (
    "SELECT provider_message_id, our_message_id FROM unmatched_delivery_events "
    "WHERE provider_message_id = ANY(%b::text[]) OR our_message_id = ANY(%b::text[])"
)


@dataclass(slots=True)
class _Sending:
    id: uuid.UUID
    tenant_id: uuid.UUID
    lead_id: uuid.UUID
    draft_id: uuid.UUID | None
    channel: str
    provider: str
    recipient: str
    attempts: int
    dry_run: bool
    retry_at: datetime | None
    sent_at: datetime | None
    provider_message_id: str | None
    status: MessageStatus = MessageStatus.SENDING
    error: str | None = None


async def finish_deliveries(
    session: AsyncSession,
    answers: Sequence[tuple[uuid.UUID, SendResult | None]],
    *,
    settings: Settings,
    keys: str,
    now: datetime,
) -> list[Outcome]:
    """Record each channel's answer (None: not tried, the provider's circuit tripped); returns
    what became of each message, with the seconds to wait before trying it again."""
    await session.flush()
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_LOCK_SENDING, ([m for m, _ in answers],))
        rows = {row[0]: _Sending(*row) for row in await cursor.fetchall()}
    answered = [(rows[m], result) for m, result in answers if m in rows]
    if not answered:
        return []
    tenant_id = answered[0][0].tenant_id
    by_provider: dict[str, list[SendResult]] = defaultdict(list)
    for message, result in answered:
        if result is not None:
            by_provider[message.provider].append(result)
    circuits = {
        provider: await circuit.record_many(session, provider, results, now)
        for provider, results in by_provider.items()
    }
    outcomes = [
        _outcome(message, result, circuits.get(message.provider), settings=settings, now=now)
        for message, result in answered
    ]
    await _execute(
        session,
        _RECORD,
        (
            [m.id for m, _ in answered],
            [m.status.value for m, _ in answered],
            [m.attempts for m, _ in answered],
            [m.sent_at for m, _ in answered],
            [m.provider_message_id for m, _ in answered],
            [m.error for m, _ in answered],
            [m.retry_at for m, _ in answered],
        ),
    )
    sent = [m for m, _ in answered if m.status == MessageStatus.SENT]
    await _claim_unmatched(session, tenant_id, sent, keys=keys, now=now)
    drafts = [m.draft_id for m in sent if m.draft_id is not None]
    if drafts:
        await _execute(
            session,
            "UPDATE drafts SET status = %s WHERE id = ANY(%b::uuid[])",
            (DraftStatus.SENT.value, drafts),
        )
    await emit_many(
        session,
        tenant_id,
        [
            (
                "message.sent",
                {
                    "message_id": str(m.id),
                    "lead_id": str(m.lead_id),
                    "channel": m.channel,
                    "dry_run": m.dry_run,
                },
            )
            for m in sent
        ],
    )
    for message, result in answered:
        if result is not None and result.status == "permanent" and _is_hard_bounce(result.detail):
            is_email = message.channel == Channel.EMAIL.value
            await suppression.suppress(
                session,
                _channel_actor(message),
                keys=keys,
                kind="email" if is_email else "phone",
                normalized=message.recipient.casefold() if is_email else message.recipient,
                reason=SuppressionReason.HARD_BOUNCE,
                source=f"{message.provider} rejection",
                now=now,
            )
    await append_events(
        session,
        tenant_id,
        [
            _channel_actor(message).audit(
                f"message.{message.status}",
                target_type="message",
                target_id=message.id,
                attempts=message.attempts,
                provider=message.provider,
            )
            for message, result in answered
            if result is not None  # untried: waiting for the circuit, as a queued message does
        ],
        now=now,
    )
    return outcomes


def _outcome(
    message: _Sending,
    result: SendResult | None,
    breaker: circuit.CircuitView | None,
    *,
    settings: Settings,
    now: datetime,
) -> Outcome:
    """Move `message` to what `result` makes of it (in memory; written by the caller)."""
    retry_in: float | None = None
    if result is None:
        until = breaker.opened_until if breaker and breaker.opened_until else None
        until = until if until is not None and until > now else now + RETRY_BASE
        message.status, message.attempts = MessageStatus.QUEUED, message.attempts - 1
        message.retry_at, retry_in = until, (until - now).total_seconds()
        message.error = f"{message.provider} is failing; its circuit is open until {until:%H:%M:%S}"
    elif result.status == "sent":
        message.status, message.sent_at = MessageStatus.SENT, now
        message.provider_message_id, message.error = result.provider_message_id, None
    elif result.status == "transient" and message.attempts < settings.send_max_attempts:
        backoff = min(RETRY_BASE * 2 ** (message.attempts - 1), RETRY_CAP)
        retry_in = max(backoff.total_seconds(), result.retry_after or 0.0)
        message.status, message.error = MessageStatus.QUEUED, result.detail
        message.retry_at = now + timedelta(seconds=retry_in)
    else:
        message.status = MessageStatus.FAILED
        message.error = (
            result.detail
            if result.status == "permanent"
            else f"gave up after {message.attempts} attempts: {result.detail}"
        )
    return Outcome(message.id, message.status, retry_in)


def _channel_actor(message: _Sending) -> Principal:
    return Principal(
        message.tenant_id, "system", None, f"channel:{message.provider}", Role.OWNER, frozenset()
    )


async def _claim_unmatched(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    sent: Sequence[_Sending],
    *,
    keys: str,
    now: datetime,
) -> None:
    """A provider's status report can overtake its answer to the send: what waited for these
    messages' provider ids applies now."""
    if not sent:
        return
    by_provider_id = {m.provider_message_id: m for m in sent if m.provider_message_id}
    by_our_id = {str(m.id): m for m in sent}
    connection = await raw_connection(session)
    async with connection.cursor() as cursor:
        await cursor.execute(_UNMATCHED, (list(by_provider_id), list(by_our_id)))
        waiting = await cursor.fetchall()
    claimed: dict[uuid.UUID, _Sending] = {}
    for provider_message_id, our_message_id in waiting:
        message = by_our_id.get(our_message_id or "") or by_provider_id.get(provider_message_id)
        if message is not None:
            claimed[message.id] = message
    for message in claimed.values():
        await telemetry.claim_unmatched(
            session, tenant_id, message.id, message.provider_message_id, keys=keys, now=now
        )


def _is_hard_bounce(detail: str) -> bool:
    """A permanent refusal of the address itself (enhanced status 5.1.x: no such mailbox or
    domain; or, without one, 550/551/553), not of our content, credentials or certificate."""
    enhanced = _ENHANCED_STATUS.search(detail)
    if enhanced is not None:
        return enhanced.group(1) == "1"
    return detail.startswith(("550", "551", "553"))


# --- the three steps -------------------------------------------------------------------------


async def deliver_messages(
    db: Database,
    tenant_id: uuid.UUID,
    message_ids: Sequence[uuid.UUID],
    *,
    settings: Settings,
    keys: str,
    concurrency: int = HANDOVER_CONCURRENCY,
    clock: Callable[[], datetime] = utcnow,
) -> list[Outcome]:
    """Deliver a chunk, `DELIVERY_SLICE` messages at a time: begin (commit), hand over, finish
    (commit). A process that dies mid-way leaves at most one slice `sending` — failed as
    "outcome unknown" by the retry, never sent twice — where the whole chunk would have been;
    the slices still to come are sent by the retry. Retries and the messages waiting for a
    provider's circuit get their own `outreach.deliver` jobs, deferred with the change that
    made them wait."""
    outcomes: list[Outcome] = []
    for start in range(0, len(message_ids), DELIVERY_SLICE):
        outcomes += await _deliver_slice(
            db,
            tenant_id,
            message_ids[start : start + DELIVERY_SLICE],
            settings=settings,
            keys=keys,
            concurrency=concurrency,
            clock=clock,
        )
    return outcomes


async def _deliver_slice(
    db: Database,
    tenant_id: uuid.UUID,
    message_ids: Sequence[uuid.UUID],
    *,
    settings: Settings,
    keys: str,
    concurrency: int,
    clock: Callable[[], datetime],
) -> list[Outcome]:
    async with db.session(tenant_id) as session:
        now = clock()
        started = await begin_deliveries(
            session, message_ids, settings=settings, keys=keys, now=now
        )
        for until, waiting in started.waiting.items():
            await _defer(session, tenant_id, waiting, max((until - now).total_seconds(), 1.0))
    if not started.handovers:
        return []
    results = await hand_over_all(started.handovers, settings, concurrency=concurrency)
    async with db.session(tenant_id) as session:
        outcomes = await finish_deliveries(
            session,
            [(h.message_id, r) for h, r in zip(started.handovers, results, strict=True)],
            settings=settings,
            keys=keys,
            now=clock(),
        )
        retries: dict[float, list[uuid.UUID]] = defaultdict(list)
        for outcome in outcomes:
            if outcome.retry_in is not None:
                retries[outcome.retry_in].append(outcome.message_id)
        for delay, ids in retries.items():
            await _defer(session, tenant_id, ids, delay)
    return outcomes


async def _defer(
    session: AsyncSession, tenant_id: uuid.UUID, message_ids: Sequence[uuid.UUID], delay: float
) -> None:
    await defer(
        session,
        DELIVER_TASK,
        schedule_in_seconds=delay,
        tenant_id=str(tenant_id),
        message_ids=[str(m) for m in message_ids],
    )
