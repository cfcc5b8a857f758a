"""Inbound replies: one service behind every way a person answers us (Twilio SMS/WhatsApp,
WhatsApp Cloud API, SendGrid Inbound Parse, Mailgun routes, the local SMTP listener).

:func:`receive_reply` places an inbound message (no tenant is known yet), stores it in
`lead_messages` once per provider message id, classifies it (`telemetry.replies`) and applies
what the classification means, all in the caller's transaction:

* placing: an e-mail whose In-Reply-To/References names one of our Message-IDs
  (`<message-uuid@domain>`) answers that message; otherwise the latest message we really sent
  (not dry-run) to the sender's address or number on that channel says which tenant and lead
  (the SECURITY DEFINER look-ups `telemetry_find_messages` / `telemetry_find_recipient`).
  Then the transaction is bound to that tenant and everything else runs under RLS.
* reply: the message's `replied_at` is set the first time, the lead leaves its campaigns,
  ``lead.replied`` is emitted and the lead's owner is told by e-mail (a job).
* opt_out: the sender's address is suppressed (keyed hash, reason ``opted_out``) — the send
  guard reads suppressions at every send, so it holds before the next one and until the
  person opts back in; consent on the channel is withdrawn when the sender is the lead's own
  address; the lead leaves its campaigns; ``lead.opted_out``; the owner is told.
* opt_in (START, UNSTOP, or a bare YES while opted out): an ``opted_out`` suppression of the
  sender is lifted (bounces, complaints and manual entries stay) and consent recorded.
* help: nothing changes; the caller answers with :func:`help_text` (Twilio: TwiML).
* auto_reply: stored and shown, never counted as a reply or an opt-out.

An inbound message that matches no lead is not dropped: it becomes a system dead letter of
the task ``telemetry.inbound_reply`` (no tenant: seen by operators, `leadrelay dead-letters
list`), holding the message; replaying it places it again (say, once the number is known).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from leadrelay.capture.models import Lead
from leadrelay.capture.normalize import normalize_email, normalize_phone
from leadrelay.capture.provider_models import LeadMessage, MessageChannel, MessageDirection
from leadrelay.compliance.audit import append_events
from leadrelay.core.clock import utcnow
from leadrelay.core.db import set_tenant
from leadrelay.core.errors import ValidationFailed
from leadrelay.core.events import emit
from leadrelay.core.jobs import add_dead_letter, defer, job_app, retry_strategy, runtime
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.core.logging import get_logger
from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.drafting.service import sender_settings
from leadrelay.identity.models import Tenant, User
from leadrelay.identity.service import Principal, system_principal
from leadrelay.outreach import campaigns, providers, service, suppression
from leadrelay.outreach.channels.base import OutboundEmail, SendResult
from leadrelay.outreach.channels.dryrun import DryRunChannel
from leadrelay.outreach.models import (
    ConsentState,
    Message,
    MessageStatus,
    Suppression,
    SuppressionReason,
)
from leadrelay.routing.models import Rep
from leadrelay.routing.service import current_assignment
from leadrelay.telemetry.replies import Classification, Intent, classify_reply, classify_text

log = get_logger("leadrelay.telemetry.inbound")

REPLY_TASK = "telemetry.inbound_reply"
NOTIFY_TASK = "telemetry.notify_owner"
DEFAULT_HELP_TEXT = "Reply STOP to unsubscribe, START to resubscribe."
MAX_BODY_CHARS = 20_000
MAX_PROVIDER_ID_CHARS = 200
# The outbound channels whose recipients an inbound message on this channel may answer.
_ANSWERS: dict[MessageChannel, tuple[str, ...]] = {
    MessageChannel.SMS: ("sms",),
    MessageChannel.WHATSAPP: ("whatsapp",),
    MessageChannel.EMAIL: ("email",),
}
# Our Message-ID is `<uuid@domain>` (outreach/channels/email_message.py).
_OUR_MESSAGE_ID = re.compile(
    r"<([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})@[^<>\s]+>", re.IGNORECASE
)
# Headers worth keeping with a stored e-mail: threading and auto-reply evidence. Received,
# DKIM and the rest are bulky and say nothing the timeline needs.
KEPT_HEADERS = frozenset(
    {
        "message-id",
        "in-reply-to",
        "references",
        "date",
        "from",
        "to",
        "subject",
        "auto-submitted",
        "x-autoreply",
        "x-autorespond",
        "x-autoresponder",
        "precedence",
        "x-precedence",
        "x-ms-exchange-generated-message-source",
        "return-path",
    }
)
AddressKind = Literal["email", "phone"]


@dataclass(frozen=True, slots=True)
class InboundReply:
    """One inbound message as a provider (or our SMTP listener) handed it over."""

    channel: MessageChannel
    provider: str  # twilio | whatsapp | sendgrid | mailgun | smtp
    sender: str  # an e-mail address, or an E.164 number
    text: str
    provider_message_id: str
    received_at: datetime
    subject: str = ""
    # E-mail headers (name, value) in order; for auto-reply detection and threading.
    headers: tuple[tuple[str, str], ...] = ()
    # Message-IDs from In-Reply-To, then References (newest first is not required).
    references: tuple[str, ...] = ()
    recipient: str | None = None  # our address or number it was sent to
    message_type: str = "text"
    # What the provider sent, without signatures, tokens or attachments.
    raw: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe, for a dead letter's payload (and back through :meth:`from_payload`)."""
        return {
            "channel": self.channel.value,
            "provider": self.provider,
            "sender": self.sender,
            "text": self.text,
            "provider_message_id": self.provider_message_id,
            "received_at": self.received_at.isoformat(),
            "subject": self.subject,
            "headers": [list(pair) for pair in self.headers],
            "references": list(self.references),
            "recipient": self.recipient,
            "message_type": self.message_type,
            "raw": self.raw,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> InboundReply:
        return cls(
            channel=MessageChannel(payload["channel"]),
            provider=str(payload["provider"]),
            sender=str(payload["sender"]),
            text=str(payload.get("text") or ""),
            provider_message_id=str(payload["provider_message_id"]),
            received_at=datetime.fromisoformat(str(payload["received_at"])),
            subject=str(payload.get("subject") or ""),
            headers=tuple((str(n), str(v)) for n, v in payload.get("headers") or ()),
            references=tuple(str(r) for r in payload.get("references") or ()),
            recipient=payload.get("recipient"),
            message_type=str(payload.get("message_type") or "text"),
            raw=dict(payload.get("raw") or {}),
        )


class InboundStatus(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # this provider message id was stored before: nothing done again
    UNMATCHED = "unmatched"  # no lead: kept as a dead letter


@dataclass(frozen=True, slots=True)
class InboundResult:
    status: InboundStatus
    intent: Intent | None = None
    tenant_id: uuid.UUID | None = None
    lead_id: uuid.UUID | None = None
    lead_message_id: uuid.UUID | None = None
    help_text: str | None = None


@dataclass(frozen=True, slots=True)
class _Placement:
    tenant_id: uuid.UUID
    message_id: uuid.UUID


# --- pure helpers ----------------------------------------------------------------------------


def our_message_ids(values: Iterable[str]) -> list[uuid.UUID]:
    """Our message ids named in In-Reply-To / References values, in the order given."""
    found: list[uuid.UUID] = []
    for value in values:
        for match in _OUR_MESSAGE_ID.finditer(value):
            message_id = uuid.UUID(match.group(1))
            if message_id not in found:
                found.append(message_id)
    return found


def kept_headers(headers: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The headers stored with an e-mail (see KEPT_HEADERS), as JSON pairs."""
    return [[name, value[:2000]] for name, value in headers if name.lower() in KEPT_HEADERS]


def address_kind(channel: MessageChannel) -> AddressKind:
    return "email" if channel is MessageChannel.EMAIL else "phone"


def sender_forms(reply: InboundReply) -> list[str]:
    """The spellings of the sender to look up among our messages' recipients (leads keep an
    e-mail's local part as written and its domain lower-cased; numbers are E.164)."""
    raw = reply.sender.strip()
    forms: list[str] = []
    if reply.channel is MessageChannel.EMAIL:
        normalized = normalize_email(raw).value
        candidates = [normalized, raw, raw.lower()]
    else:
        candidates = [normalize_phone(raw, default_region=None).e164, raw]
    for candidate in candidates:
        if candidate and candidate not in forms:
            forms.append(candidate)
    return forms


def help_text(tenant: Tenant, settings: Settings) -> str:
    """The tenant's answer to HELP/INFO: `settings.outreach.help_text`, else the process
    default, prefixed with the sender's company when one is set (CTIA: identify the program)."""
    stored = (tenant.settings or {}).get("outreach")
    custom = stored.get("help_text") if isinstance(stored, dict) else None
    answer = str(custom).strip() if isinstance(custom, str) and custom.strip() else ""
    answer = answer or settings.inbound_help_text or DEFAULT_HELP_TEXT
    sender = (tenant.settings or {}).get("sender")
    company = sender.get("company") if isinstance(sender, dict) else None
    if isinstance(company, str) and company and company.lower() not in answer.lower():
        answer = f"{company}: {answer}"
    return answer[:1600]


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    @override
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self.skip += 1
        elif tag in {"br", "p", "div", "li", "tr", "blockquote"}:
            self.parts.append("\n")

    @override
    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self.skip:
            self.skip -= 1

    @override
    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def text_of_html(html: str) -> str:
    """Plain words of an HTML-only e-mail (tags dropped), enough to read STOP or a reply."""
    reader = _HtmlText()
    reader.feed(html)
    return "".join(reader.parts).strip()


def first_header(pairs: Iterable[tuple[str, str]], name: str) -> str:
    """The first value of a header (name in lower case), or empty."""
    return next((value for key, value in pairs if key.lower() == name), "")


def references_of(pairs: list[tuple[str, str]], *extra: str) -> tuple[str, ...]:
    values = [*extra, first_header(pairs, "in-reply-to"), first_header(pairs, "references")]
    return tuple(value for value in values if value)


def _content_id(*parts: str) -> str:
    """A stable id for an e-mail without a Message-ID: a replay hashes the same."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()
    return f"sha256:{digest}"


def email_reply(
    *,
    provider: str,
    sender: str,
    recipient: str | None,
    subject: str,
    text: str,
    headers: list[tuple[str, str]],
    references: Iterable[str] = (),
    message_id: str = "",
    now: datetime,
    raw: dict[str, Any] | None = None,
) -> InboundReply:
    """An inbound e-mail, whichever way it came; the sender is the From address."""
    address = parseaddr(sender)[1] or sender.strip()
    if "@" not in address:
        raise ValidationFailed(
            "The sender is not an e-mail address.", errors=[{"field": "from", "reason": "invalid"}]
        )
    message_id = message_id or first_header(headers, "message-id")
    refs = tuple(references) or references_of(headers)
    return InboundReply(
        channel=MessageChannel.EMAIL,
        provider=provider,
        sender=address,
        text=text,
        provider_message_id=(message_id.strip() or _content_id(address, subject, text))[:200],
        received_at=now,
        subject=subject[:1000],
        headers=tuple(headers),
        references=refs,
        recipient=recipient,
        message_type="email",
        raw=raw or {},
    )


def _normalized(kind: AddressKind, address: str) -> str | None:
    try:
        return suppression.normalized_address(kind, address, default_region=None)
    except ValidationFailed:
        return None


# --- placing ----------------------------------------------------------------------------------


async def _place(session: AsyncSession, reply: InboundReply) -> _Placement | None:
    """Which tenant and which of our messages this answers (no tenant context needed)."""
    ids = our_message_ids(reply.references)
    if ids:
        rows = await session.execute(
            text(
                "SELECT id, tenant_id FROM telemetry_find_messages("
                "CAST(:ids AS uuid[]), CAST(:provider_ids AS text[]))"
            ),
            {"ids": ids, "provider_ids": []},
        )
        by_id = {row.id: row.tenant_id for row in rows}
        for message_id in ids:
            if message_id in by_id:
                return _Placement(by_id[message_id], message_id)
    for form in sender_forms(reply):
        row = (
            await session.execute(
                text(
                    "SELECT id, tenant_id FROM telemetry_find_recipient("
                    ":recipient, CAST(:channels AS text[]))"
                ),
                {"recipient": form, "channels": list(_ANSWERS[reply.channel])},
            )
        ).first()
        if row is not None:
            return _Placement(row.tenant_id, row.id)
    return None


async def _keep_unmatched(session: AsyncSession, reply: InboundReply) -> None:
    """A system dead letter holding the message (once per provider message id), for an
    operator to read and replay. Caller's transaction has no tenant bound."""
    payload = reply.to_payload()
    existing = await session.scalar(
        select(DeadLetter.id).where(
            DeadLetter.task_name == REPLY_TASK,
            DeadLetter.replayed_at.is_(None),
            DeadLetter.payload["provider"].astext == reply.provider,
            DeadLetter.payload["provider_message_id"].astext == reply.provider_message_id,
        )
    )
    if existing is not None:
        return
    add_dead_letter(
        session,
        task_name=REPLY_TASK,
        payload=payload,
        error=(
            f"no lead matches this inbound {reply.channel.value} message: nothing we sent "
            "went to its sender, and it names none of our messages"
        ),
        attempts=0,
    )
    await session.flush()
    log.warning("inbound.unmatched", channel=reply.channel.value, provider=reply.provider)


# --- receiving -----------------------------------------------------------------------------------


async def receive_reply(
    session: AsyncSession, reply: InboundReply, *, settings: Settings, keys: str, now: datetime
) -> InboundResult:
    """Place, store (once per provider message id) and act on one inbound message, in the
    caller's transaction. The transaction must not be bound to a tenant yet: this binds it to
    the tenant the message belongs to."""
    placement = await _place(session, reply)
    if placement is None:
        await _keep_unmatched(session, reply)
        return InboundResult(InboundStatus.UNMATCHED)
    await set_tenant(session, placement.tenant_id)
    message = await session.get(Message, placement.message_id)
    tenant = await session.get(Tenant, placement.tenant_id)
    if message is None or tenant is None:  # gone since the look-up, with its lead
        await _keep_unmatched(session, reply)
        return InboundResult(InboundStatus.UNMATCHED)
    raw: dict[str, Any] = {
        **reply.raw,
        "provider": reply.provider,
        "from": reply.sender,
        "to": reply.recipient,
        "subject": reply.subject or None,
    }
    if reply.headers:
        raw["headers"] = kept_headers(reply.headers)
    stored_id = await session.scalar(
        pg_insert(LeadMessage)
        .values(
            tenant_id=tenant.id,
            lead_id=message.lead_id,
            source_id=None,
            message_id=message.id,
            channel=reply.channel.value,
            direction=MessageDirection.INBOUND.value,
            provider_message_id=reply.provider_message_id[:MAX_PROVIDER_ID_CHARS],
            message_type=reply.message_type[:30],
            body=reply.text[:MAX_BODY_CHARS],
            received_at=reply.received_at,
            raw=raw,
        )
        .on_conflict_do_nothing(constraint="uq_lead_messages_tenant_id")
        .returning(LeadMessage.id)
    )
    if stored_id is None:
        earlier = await session.scalar(
            select(LeadMessage).where(
                LeadMessage.provider_message_id == reply.provider_message_id[:MAX_PROVIDER_ID_CHARS]
            )
        )
        intent = Intent(earlier.classification) if earlier and earlier.classification else None
        return InboundResult(
            InboundStatus.DUPLICATE,
            intent,
            tenant.id,
            earlier.lead_id if earlier else None,
            earlier.id if earlier else None,
            help_text(tenant, settings) if intent is Intent.HELP else None,
        )
    row = await session.get(LeadMessage, stored_id)
    if row is None:  # inserted just above, in this transaction: cannot be missing
        raise RuntimeError("the inbound message vanished inside its own transaction")
    intent = await handle_reply(
        session,
        tenant,
        row,
        sender=reply.sender,
        answered=message,
        subject=reply.subject,
        headers=dict(reversed(reply.headers)) if reply.headers else None,
        keys=keys,
        now=now,
    )
    return InboundResult(
        InboundStatus.STORED,
        intent,
        tenant.id,
        row.lead_id,
        row.id,
        help_text(tenant, settings) if intent is Intent.HELP else None,
    )


async def latest_sent_message(
    session: AsyncSession, lead_id: uuid.UUID, channel: MessageChannel
) -> Message | None:
    """The last message we really sent the lead on the channels this one answers."""
    return await session.scalar(
        select(Message)
        .where(
            Message.lead_id == lead_id,
            Message.channel.in_(_ANSWERS[channel]),
            Message.dry_run.is_(False),
            Message.sent_at.is_not(None),
            Message.status == MessageStatus.SENT,
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    )


async def handle_attached_message(
    session: AsyncSession,
    tenant: Tenant,
    row: LeadMessage,
    *,
    sender: str,
    keys: str,
    now: datetime,
) -> Intent | None:
    """For a message stored by another inbound path (WhatsApp Cloud API) once its lead is
    attached: link the message it answers, classify it and act. Caller holds the row FOR
    UPDATE in the tenant's transaction; a row classified already is left alone."""
    if row.lead_id is None or row.classification is not None:
        return None
    answered = await latest_sent_message(session, row.lead_id, MessageChannel(row.channel))
    if answered is not None:
        row.message_id = answered.id
    return await handle_reply(
        session, tenant, row, sender=sender, answered=answered, keys=keys, now=now
    )


async def _is_opted_out(session: AsyncSession, keys: str, kind: AddressKind, address: str) -> bool:
    reason = await session.scalar(
        select(Suppression.reason).where(
            Suppression.address_kind == kind,
            Suppression.address_hash == suppression.address_hash(keys, kind, address),
        )
    )
    return reason == SuppressionReason.OPTED_OUT


def _classify(
    row: LeadMessage, subject: str, headers: Mapping[str, str] | None, *, opted_out: bool
) -> Classification:
    if row.channel == MessageChannel.EMAIL.value:
        return classify_reply(headers or {}, subject, row.body, after_opt_out=opted_out)
    return classify_text(row.body, after_opt_out=opted_out)


async def handle_reply(
    session: AsyncSession,
    tenant: Tenant,
    row: LeadMessage,
    *,
    sender: str,
    answered: Message | None,
    keys: str,
    now: datetime,
    subject: str = "",
    headers: Mapping[str, str] | None = None,
) -> Intent:
    """Classify a stored inbound message and apply what it means (module docstring). Runs in
    the tenant's transaction; every effect is audited."""
    actor = system_principal(tenant.id)
    channel = MessageChannel(row.channel)
    kind = address_kind(channel)
    address = _normalized(kind, sender)
    opted_out = address is not None and await _is_opted_out(session, keys, kind, address)
    classification = _classify(row, subject, headers, opted_out=opted_out)
    intent = classification.intent
    row.classification = intent.value
    row.processed_at = now
    row.raw = {
        **row.raw,
        "classification": {"matched": classification.matched, "reason": classification.reason},
    }
    lead = await session.get(Lead, row.lead_id) if row.lead_id else None
    effects: dict[str, object] = {}
    if lead is not None and intent is Intent.REPLY:
        if answered is not None and answered.replied_at is None:
            answered.replied_at = row.received_at
            effects["replied_at"] = True
        effects["campaigns_stopped"] = await campaigns.stop_for_lead(
            session, lead.id, "replied", now=now
        )
    elif intent is Intent.OPT_OUT:
        effects |= await _opt_out(
            session, actor, row, lead, kind, address, classification, keys=keys, now=now
        )
    elif intent is Intent.OPT_IN and address is not None:
        effects |= await _opt_in(session, actor, row, lead, kind, address, keys=keys, now=now)
    await append_events(
        session,
        tenant.id,
        [
            actor.audit(
                f"inbound.{intent.value}",
                target_type="lead_message",
                target_id=row.id,
                lead_id=str(row.lead_id) if row.lead_id else None,
                message_id=str(answered.id) if answered else None,
                channel=channel.value,
                matched=classification.matched,
                **effects,
            )
        ],
        now=now,
    )
    if lead is not None and intent in (Intent.REPLY, Intent.OPT_OUT):
        await emit(
            session,
            tenant.id,
            "lead.replied" if intent is Intent.REPLY else "lead.opted_out",
            {
                "lead_id": str(lead.id),
                "lead_message_id": str(row.id),
                "message_id": str(answered.id) if answered else None,
                "channel": channel.value,
            },
        )
    notify = lead is not None and intent in (Intent.REPLY, Intent.OPT_OUT, Intent.OPT_IN)
    if notify and lead is not None and await owner_address(session, lead.id) is not None:
        await defer(session, NOTIFY_TASK, tenant_id=str(tenant.id), lead_message_id=str(row.id))
    log.info("inbound.classified", channel=channel.value, intent=intent.value, **effects)
    return intent


async def _opt_out(
    session: AsyncSession,
    actor: Principal,
    row: LeadMessage,
    lead: Lead | None,
    kind: AddressKind,
    address: str | None,
    classification: Classification,
    *,
    keys: str,
    now: datetime,
) -> dict[str, object]:
    effects: dict[str, object] = {}
    matched = (classification.matched or "opt-out")[:40]
    if address is not None:
        await suppression.suppress(
            session,
            actor,
            keys=keys,
            kind=kind,
            normalized=address,
            reason=SuppressionReason.OPTED_OUT,
            source=f"{row.channel} reply {matched}"[:100],
            note=classification.reason[:500],
            now=now,
        )
        effects["suppressed"] = True
    if lead is not None:
        # Consent is the lead's: withdrawn when the lead itself asked (a colleague answering
        # a forwarded e-mail suppresses only their own address).
        if address is not None and _is_leads_address(lead, kind, address):
            await suppression.record_consent(
                session,
                actor,
                lead_id=lead.id,
                channel=row.channel,
                state=ConsentState.WITHDRAWN,
                purpose="all outreach",
                method=f"replied {matched}"[:200],
                evidence=f"lead_message:{row.id}",
                now=now,
            )
            effects["consent_withdrawn"] = True
        effects["campaigns_stopped"] = await campaigns.stop_for_lead(
            session, lead.id, "opted_out", now=now
        )
    return effects


async def _opt_in(
    session: AsyncSession,
    actor: Principal,
    row: LeadMessage,
    lead: Lead | None,
    kind: AddressKind,
    address: str,
    *,
    keys: str,
    now: datetime,
) -> dict[str, object]:
    effects: dict[str, object] = {}
    found = await session.scalar(
        select(Suppression).where(
            Suppression.address_kind == kind,
            Suppression.address_hash == suppression.address_hash(keys, kind, address),
        )
    )
    # Only the person's own opt-out is theirs to take back: bounces, complaints and entries
    # an operator made stay.
    if found is not None and found.reason == SuppressionReason.OPTED_OUT:
        await suppression.lift(session, actor, found.id, now=now)
        effects["suppression_lifted"] = True
    if lead is not None and _is_leads_address(lead, kind, address):
        await suppression.record_consent(
            session,
            actor,
            lead_id=lead.id,
            channel=row.channel,
            state=ConsentState.GRANTED,
            purpose="all outreach",
            method="replied to opt back in",
            evidence=f"lead_message:{row.id}",
            now=now,
        )
        effects["consent_granted"] = True
    return effects


def _is_leads_address(lead: Lead, kind: AddressKind, address: str) -> bool:
    if kind == "email":
        return lead.email is not None and lead.email.casefold() == address
    return lead.phone_e164 == address


# --- the owner's notice -------------------------------------------------------------------------


async def owner_address(session: AsyncSession, lead_id: uuid.UUID) -> str | None:
    """The e-mail of the lead's current owner: assignment -> rep -> active user."""
    assignment = await current_assignment(session, lead_id)
    if assignment is None or assignment.rep_id is None:
        return None
    rep = await session.get(Rep, assignment.rep_id)
    if rep is None or rep.user_id is None:
        return None
    user = await session.get(User, rep.user_id)
    if user is None or not user.is_active:
        return None
    return str(user.email)


_NOTICE_SUBJECT = {
    Intent.REPLY.value: "replied",
    Intent.OPT_OUT.value: "opted out",
    Intent.OPT_IN.value: "opted back in",
}


def notice_text(lead: Lead, row: LeadMessage, *, console_url: str) -> tuple[str, str]:
    """The owner's e-mail: subject and plain-text body."""
    who = lead.full_name or lead.email or lead.phone_e164 or str(lead.id)
    what = _NOTICE_SUBJECT.get(row.classification or "", "wrote")
    subject = f"{who} {what} ({row.channel})"[:150]
    lines = [
        f"{who} {what} by {row.channel} at {row.received_at.isoformat()}.",
        "",
        row.body[:4000],
        "",
        f"Lead: {console_url}",
    ]
    if row.classification == Intent.OPT_OUT.value:
        lines.insert(1, "Their address is suppressed and their campaigns are stopped.")
    return subject, "\n".join(lines)


@job_app.task(name=NOTIFY_TASK, retry=retry_strategy())
async def notify_owner(
    *, tenant_id: str, lead_message_id: str, correlation_id: str | None = None
) -> str:
    """E-mail the lead's owner about an inbound reply or opt-out, through the operator mail
    path (the tenant's e-mail provider, or the dry-run channel while the tenant is in
    dry-run). What happened is kept on the message's `raw.owner_notice`; done once."""
    settings, db = runtime().settings, runtime().db
    tenant_key, row_key = uuid.UUID(tenant_id), uuid.UUID(lead_message_id)
    async with db.session(tenant_key) as session:
        row = await session.get(LeadMessage, row_key)
        if row is None or row.lead_id is None or "owner_notice" in row.raw:
            return "nothing to do"
        lead = await session.get(Lead, row.lead_id)
        tenant = await session.get(Tenant, tenant_key)
        owner = await owner_address(session, row.lead_id)
        if lead is None or tenant is None or owner is None:
            return "no owner"
        public = settings.public_url.rstrip("/")
        subject, body = notice_text(lead, row, console_url=f"{public}/console/leads/{lead.id}")
        view = service.outreach_policy(tenant, settings)
        sender = sender_settings(tenant)
        email = OutboundEmail(
            message_id=uuid.uuid4(),
            from_address=sender.get("email") or settings.mail_from or "outreach@localhost",
            from_name="LeadRelay",
            to_address=owner,
            subject=subject,
            text_body=body,
            # Not a lead's opt-out: where the owner reads the lead.
            unsubscribe_url=f"{public}/console/leads/{lead.id}",
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
    async with db.session(tenant_key) as session:
        row = await session.get(LeadMessage, row_key, with_for_update=True)
        if row is not None and result.status != "transient":
            row.raw = {
                **row.raw,
                "owner_notice": {
                    "to": email.to_address,
                    "provider": provider,
                    "status": result.status,
                    "detail": result.detail,
                    "at": utcnow().isoformat(),
                },
            }
    if result.status == "transient":
        # Raised so the queue retries with backoff.
        raise RuntimeError(f"owner notice not sent yet: {result.detail}")
    return result.status


@job_app.task(name=REPLY_TASK, retry=retry_strategy())
async def inbound_reply(
    *,
    channel: str,
    provider: str,
    sender: str,
    text: str,
    provider_message_id: str,
    received_at: str,
    subject: str = "",
    headers: list[list[str]] | None = None,
    references: list[str] | None = None,
    recipient: str | None = None,
    message_type: str = "text",
    raw: dict[str, object] | None = None,
    correlation_id: str | None = None,
) -> str:
    """Place an inbound message again: the replay of an unmatched one's dead letter (its
    payload is :meth:`InboundReply.to_payload`). Still unmatched, it is kept as a new one."""
    rt = runtime()
    reply = InboundReply.from_payload(
        {
            "channel": channel,
            "provider": provider,
            "sender": sender,
            "text": text,
            "provider_message_id": provider_message_id,
            "received_at": received_at,
            "subject": subject,
            "headers": headers or [],
            "references": references or [],
            "recipient": recipient,
            "message_type": message_type,
            "raw": raw or {},
        }
    )
    async with rt.db.session() as session:
        result = await receive_reply(
            session, reply, settings=rt.settings, keys=rt.secret_keys(), now=utcnow()
        )
    return result.status.value
