"""WhatsApp Cloud API inbound messages: each message is stored when its webhook is accepted,
then a job creates or matches the sender's lead (by phone, through `intake.ingest`) and
attaches the message to it. Delivery statuses of our own messages are not leads: ignored here.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture import intake
from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.meta import (
    DeliveryResult,
    Notification,
    Provider,
    lock_capture,
    receipt_provider,
    record_delivery,
    remember_deliveries,
)
from leadrelay.capture.models import Source
from leadrelay.capture.provider_models import LeadMessage, MessageChannel, MessageDirection
from leadrelay.core.jobs import defer
from leadrelay.inbound.service import InvalidPayload

WHATSAPP_OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"
MESSAGE_TASK = "capture.whatsapp_message"
# WhatsApp ids: digits of the international number (wa_id, from), wamid.<base64> for messages.
_WA_ID = re.compile(r"^\+?[0-9]{5,20}$")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:=+/-]{1,200}$")
MAX_TYPE_CHARS = 30


@dataclass(frozen=True, slots=True)
class InboundMessage:
    message_id: str
    wa_id: str  # digits, no "+"
    profile_name: str | None
    message_type: str
    body: str
    sent_at: datetime | None
    # The message object, the sender's contact and the receiving number's metadata.
    raw: dict[str, Any]


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def message_body(message: Mapping[str, Any]) -> str:
    """What the sender wrote: the text, a media caption, a tapped button or list row."""
    kind = message.get("type")
    content = message.get(kind) if isinstance(kind, str) else None
    if not isinstance(content, dict):
        return ""
    if kind == "text":
        return _text(content.get("body")) or ""
    if kind == "interactive":
        for reply in ("button_reply", "list_reply"):
            chosen = content.get(reply)
            if isinstance(chosen, dict):
                return _text(chosen.get("title")) or ""
        return ""
    # Media captions; button replies ("text"); system notices ("body").
    for key in ("caption", "text", "body"):
        if found := _text(content.get(key)):
            return found
    return ""


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sender(
    message: Mapping[str, Any], contact: Mapping[str, Any] | None
) -> tuple[str, str | None]:
    """The sender's WhatsApp id (digits: the contact's wa_id, else the message's `from`) and
    profile name."""
    contact = contact or {}
    wa_id = contact.get("wa_id")
    if not (isinstance(wa_id, str) and _WA_ID.fullmatch(wa_id)):
        wa_id = str(message.get("from") or "")
    profile = contact.get("profile")
    name = _text(profile.get("name")) if isinstance(profile, dict) else None
    return wa_id.removeprefix("+"), name[:300] if name else None


def _sent_at(timestamp: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(timestamp)), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def parse_messages(notification: Notification) -> tuple[list[InboundMessage], Counter[str]]:
    """The inbound messages of a `whatsapp_business_account` notification; statuses, other
    change fields and messages without a phone number are counted as ignored. A message
    without a usable id or with a malformed sender makes the whole body invalid."""
    messages: list[InboundMessage] = []
    ignored = Counter(notification.ignored)
    for change in notification.changes:
        if change.field != MESSAGES_FIELD:
            ignored[change.field[:40]] += 1
            continue
        value = change.value
        for key, items in value.items():
            if key not in {"messages", "contacts"} and isinstance(items, list):
                ignored[key[:40]] += len(items)  # statuses, errors…
        listed = value.get("contacts")
        contacts = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
        metadata = _object(value.get("metadata"))
        items = value.get("messages") or []
        if not isinstance(items, list):
            raise InvalidPayload("'messages' must be a list")
        for message in items:
            if not isinstance(message, dict):
                raise InvalidPayload("each message must be an object")
            message_id = message.get("id")
            if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
                raise InvalidPayload(
                    "each message needs its WhatsApp message id",
                    errors=[{"field": "entry.changes.value.messages.id", "message": "invalid"}],
                )
            sender = message.get("from")
            if sender is None:
                ignored["messages_without_phone"] += 1  # e.g. a username-only sender
                continue
            if not isinstance(sender, str) or not _WA_ID.fullmatch(sender):
                raise InvalidPayload(
                    "a message's 'from' must be the sender's WhatsApp number",
                    errors=[{"field": "entry.changes.value.messages.from", "message": "invalid"}],
                )
            sender = sender.removeprefix("+")
            contact = next((c for c in contacts if c.get("wa_id") == sender), None)
            if contact is None and len(contacts) == 1:
                contact = contacts[0]
            wa_id, profile_name = _sender(message, contact)
            messages.append(
                InboundMessage(
                    message_id=message_id,
                    wa_id=wa_id,
                    profile_name=profile_name,
                    message_type=str(message.get("type") or "unknown")[:MAX_TYPE_CHARS],
                    body=message_body(message),
                    sent_at=_sent_at(message.get("timestamp")),
                    raw={"message": message, "contact": contact, "metadata": metadata},
                )
            )
    return messages, ignored


async def accept_messages(
    session: AsyncSession,
    source: Source,
    messages: Sequence[InboundMessage],
    ignored: Mapping[str, int],
    *,
    now: datetime,
) -> DeliveryResult:
    """Store each message never seen for this source and defer its job, in the caller's
    transaction; replayed message ids are counted as duplicates and stored once."""
    first: dict[str, InboundMessage] = {}
    for message in messages:
        first.setdefault(message.message_id, message)
    new = await remember_deliveries(
        session, receipt_provider(Provider.WHATSAPP, source.id), list(first)
    )
    rows = [
        {
            "tenant_id": source.tenant_id,
            "source_id": source.id,
            "channel": MessageChannel.WHATSAPP.value,
            "direction": MessageDirection.INBOUND.value,
            "provider_message_id": message.message_id,
            "message_type": message.message_type,
            "body": message.body,
            "received_at": message.sent_at or now,
            "raw": message.raw,
        }
        for message_id, message in first.items()
        if message_id in new
    ]
    stored: list[uuid.UUID] = []
    if rows:
        # The unique (tenant, provider message id) is the second lock, for a replay that
        # outlived its receipt.
        statement = (
            pg_insert(LeadMessage)
            .values(rows)
            .on_conflict_do_nothing(constraint="uq_lead_messages_tenant_id")
            .returning(LeadMessage.id)
        )
        stored = list((await session.execute(statement)).scalars())
    for message_id in stored:
        await defer(
            session,
            MESSAGE_TASK,
            tenant_id=str(source.tenant_id),
            source_id=str(source.id),
            message_id=str(message_id),
        )
    result = DeliveryResult(len(stored), len(messages) - len(stored), dict(ignored))
    await record_delivery(session, source, Provider.WHATSAPP, result, now=now)
    return result


def sender_row(message: LeadMessage) -> dict[str, str | None]:
    """The intake row for a stored message's sender: phone "+<wa_id>", the WhatsApp profile
    name, and the wa_id as the source's external id (a second message matches the lead)."""
    wa_id, name = _sender(_object(message.raw.get("message")), _object(message.raw.get("contact")))
    return {"phone": f"+{wa_id}", "full_name": name, "external_id": wa_id}


async def attach_message(
    session: AsyncSession,
    source: Source,
    message: LeadMessage,
    *,
    policy: intake.CapturePolicy,
    now: datetime,
) -> intake.RowResult:
    """Create or match the sender's lead through `intake.ingest` and attach the message to
    it. Caller holds the message row FOR UPDATE; a rejected sender leaves it unattached."""
    row = sender_row(message)
    await lock_capture(session, f"wa:{source.id.hex}:{row['external_id']}")
    (result,) = await intake.ingest(
        session,
        source,
        [row],
        normalize=clean_lead,
        policy=policy,
        now=now,
        actor_type="system",
        actor_id=Provider.WHATSAPP.value,
    )
    if result.status != intake.RowStatus.REJECTED and result.lead_id is not None:
        message.lead_id, message.processed_at = result.lead_id, now
    return result
