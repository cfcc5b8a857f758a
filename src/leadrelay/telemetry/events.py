"""Pure parsers turning provider delivery webhooks into normalized :class:`DeliveryEvent` s.

One function per provider, each taking the request body exactly as received (Twilio: the
decoded form fields) and returning a :class:`ParseResult`. Nothing here checks signatures,
touches the database or reads the clock: verify the request with
:mod:`leadrelay.core.signatures` first, then parse.

Design decisions
----------------
* **Unknown event types are not errors.** A provider adding an event type must not make us
  reject (and so make it retry) a whole batch. Events whose type has no normalized kind are
  skipped and their provider type names are listed in ``ParseResult.ignored``, in order, so
  the endpoint can count or log them.
* **Malformed bodies are errors.** Bodies that are not JSON, or whose shape is not the
  provider's documented shape (wrong container, wrong field types, missing type or
  timestamp), raise :class:`MalformedPayload` naming the provider and the offending field.
  A provider's batch is all or nothing: one malformed event fails the whole body.
* **No de-duplication here.** Providers retry; every event carries ``provider_event_id``
  (stable across retries of the same event) and the store dedupes on it.

Mappings
--------
SendGrid (Event Webhook, a JSON array of events):
    processed→queued, deferred, delivered, bounce→bounced (``type`` ``bounce``→hard,
    ``blocked``→soft, anything else→``bounce=None``), dropped, spamreport→complained,
    open→opened, click→clicked, unsubscribe and group_unsubscribe→unsubscribed. Ignored:
    group_resubscribe, account events and anything new. ``provider_event_id`` is
    ``sg_event_id``; our id is the custom arg ``leadrelay_message_id`` at the event's top
    level (or, for legacy SMTP API senders, under ``unique_args``).
Mailgun (one ``{"signature": ..., "event-data": ...}`` per request):
    accepted→queued, delivered, complained, opened, clicked, unsubscribed, rejected→dropped,
    failed by ``severity``: ``temporary``→deferred (Mailgun keeps retrying, so it is not an
    outcome yet; what it finally decides arrives as another event); ``permanent``→bounced
    hard, except reason ``suppress-*`` (Mailgun refused to send to a suppressed
    address)→dropped and reason ``old`` (retries of temporary failures exhausted: the
    address is not known bad)→bounced soft; no severity→bounced with ``bounce=None``.
    ``provider_event_id`` is ``event-data.id``; our id is ``user-variables.leadrelay_message_id``.
Twilio (status callbacks, form fields):
    Messaging (``MessageStatus``; SMS, MMS and WhatsApp via Twilio): accepted and
    queued→queued, sent, delivered, read, undelivered and failed→failed (``ErrorCode`` as
    ``error_code``), canceled→dropped; ignored: sending, scheduled and anything new.
    Voice (``CallStatus``): queued and initiated→queued, ringing→sent, in-progress and
    completed→answered (or voicemail when ``AnsweredBy`` is ``machine_*``), busy,
    no-answer, failed, canceled→dropped. ``provider_event_id`` is ``<Sid>:<status>``.
    Messaging callbacks carry no event time, so the caller passes ``received_at``.
WhatsApp Cloud API (``entry[].changes[].value.statuses[]``):
    sent, delivered, read, failed (first of ``errors[]`` as ``error_code``/``reason``);
    ignored: anything else (e.g. deleted, warning). Inbound ``messages`` and other change
    fields are not delivery events and are skipped silently. ``provider_event_id`` is
    ``<status id>:<status>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal

__all__ = [
    "BounceType",
    "DeliveryEvent",
    "EventKind",
    "MalformedPayload",
    "ParseResult",
    "Provider",
    "parse_mailgun",
    "parse_sendgrid",
    "parse_twilio",
    "parse_whatsapp",
]

BounceType = Literal["hard", "soft"]

OUR_ID_KEY = "leadrelay_message_id"


class Provider(StrEnum):
    SENDGRID = "sendgrid"
    MAILGUN = "mailgun"
    TWILIO = "twilio"
    WHATSAPP = "whatsapp"


class EventKind(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    COMPLAINED = "complained"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    FAILED = "failed"
    READ = "read"
    ANSWERED = "answered"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"


class MalformedPayload(ValueError):
    """The body is not the provider's documented shape; the message says where and why."""


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One normalized delivery event.

    ``bounce`` is set only for :attr:`EventKind.BOUNCED` (and may be ``None`` there when the
    provider does not say). ``our_message_id`` is present only when the provider echoes our
    id back (SendGrid, Mailgun); Twilio and WhatsApp events are matched on
    ``provider_message_id`` later. ``raw`` is the provider's own dict for this event.
    """

    provider: Provider
    kind: EventKind
    provider_message_id: str | None
    our_message_id: str | None
    recipient: str | None
    occurred_at: datetime
    provider_event_id: str
    bounce: BounceType | None = None
    reason: str | None = None
    error_code: str | None = None
    raw: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.occurred_at.utcoffset() != timedelta(0):
            raise ValueError("occurred_at must be an aware UTC datetime")
        if self.bounce is not None and self.kind is not EventKind.BOUNCED:
            raise ValueError("bounce is only meaningful for bounced events")


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Recognized events, in body order, and the provider type names that were skipped."""

    events: tuple[DeliveryEvent, ...] = ()
    ignored: tuple[str, ...] = ()


# --- shape helpers -------------------------------------------------------------------------


def _load_json(provider: Provider, body: bytes) -> object:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedPayload(f"{provider}: body is not valid JSON ({error})") from error


def _object(provider: Provider, value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{provider}: {where} must be an object, got {_kind(value)}")
    return value


def _array(provider: Provider, value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise MalformedPayload(f"{provider}: {where} must be an array, got {_kind(value)}")
    return value


def _required_str(provider: Provider, data: Mapping[str, object], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{provider}: {where}.{key} must be a non-empty string")
    return value


def _optional_str(
    provider: Provider, data: Mapping[str, object], key: str, where: str
) -> str | None:
    value = data.get(key)
    if type(value) is str:  # nearly always: answered first (a batch parses thousands)
        return value or None
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedPayload(f"{provider}: {where}.{key} must be a string, got {_kind(value)}")
    return str(value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _epoch(provider: Provider, value: object, where: str) -> datetime:
    """Unix seconds as an int, a float (Mailgun) or a string of digits (WhatsApp)."""
    seconds: float
    if isinstance(value, bool):
        raise MalformedPayload(f"{provider}: {where} must be Unix seconds, got bool")
    if isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        seconds = int(value.strip())
    else:
        raise MalformedPayload(f"{provider}: {where} must be Unix seconds, got {value!r}")
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise MalformedPayload(f"{provider}: {where} is out of range: {value!r}") from error


def _join(*parts: str | None) -> str | None:
    text = " ".join(part.strip() for part in parts if part and part.strip())
    return text or None


# --- SendGrid ------------------------------------------------------------------------------

_SENDGRID_KINDS: dict[str, EventKind] = {
    "processed": EventKind.QUEUED,
    "deferred": EventKind.DEFERRED,
    "delivered": EventKind.DELIVERED,
    "bounce": EventKind.BOUNCED,
    "dropped": EventKind.DROPPED,
    "spamreport": EventKind.COMPLAINED,
    "open": EventKind.OPENED,
    "click": EventKind.CLICKED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
}
_SENDGRID_BOUNCES: dict[str, BounceType] = {"bounce": "hard", "blocked": "soft"}


def parse_sendgrid(body: bytes) -> ParseResult:
    """Parse a SendGrid Event Webhook POST (a JSON array of events)."""
    provider = Provider.SENDGRID
    events: list[DeliveryEvent] = []
    ignored: list[str] = []
    for index, item in enumerate(_array(provider, _load_json(provider, body), "body")):
        where = f"event[{index}]"
        data = _object(provider, item, where)
        event_type = _required_str(provider, data, "event", where)
        kind = _SENDGRID_KINDS.get(event_type)
        if kind is None:
            ignored.append(event_type)
            continue
        occurred_at = _epoch(provider, data.get("timestamp"), f"{where}.timestamp")
        our_id = _optional_str(provider, data, OUR_ID_KEY, where)
        unique_args = data.get("unique_args")
        if our_id is None and isinstance(unique_args, dict):
            our_id = _optional_str(provider, unique_args, OUR_ID_KEY, f"{where}.unique_args")
        bounce: BounceType | None = None
        if kind is EventKind.BOUNCED:
            bounce_type = _optional_str(provider, data, "type", where)
            bounce = _SENDGRID_BOUNCES.get(bounce_type or "")
        events.append(
            DeliveryEvent(
                provider=provider,
                kind=kind,
                provider_message_id=_optional_str(provider, data, "sg_message_id", where),
                our_message_id=our_id,
                recipient=_optional_str(provider, data, "email", where),
                occurred_at=occurred_at,
                provider_event_id=_required_str(provider, data, "sg_event_id", where),
                bounce=bounce,
                reason=_optional_str(provider, data, "reason", where)
                or _optional_str(provider, data, "response", where),
                error_code=_optional_str(provider, data, "status", where),
                raw=data,
            )
        )
    return ParseResult(tuple(events), tuple(ignored))


# --- Mailgun -------------------------------------------------------------------------------

_MAILGUN_KINDS: dict[str, EventKind] = {
    "accepted": EventKind.QUEUED,
    "delivered": EventKind.DELIVERED,
    "failed": EventKind.BOUNCED,  # refined by severity and reason below
    "complained": EventKind.COMPLAINED,
    "opened": EventKind.OPENED,
    "clicked": EventKind.CLICKED,
    "unsubscribed": EventKind.UNSUBSCRIBED,
    "rejected": EventKind.DROPPED,
}


def _mailgun_failure(
    severity: str | None, reason: str | None
) -> tuple[EventKind, BounceType | None]:
    if severity == "temporary":
        return EventKind.DEFERRED, None
    if severity == "permanent":
        if reason is not None and reason.startswith("suppress-"):
            return EventKind.DROPPED, None
        if reason == "old":
            return EventKind.BOUNCED, "soft"
        return EventKind.BOUNCED, "hard"
    return EventKind.BOUNCED, None


def parse_mailgun(body: bytes) -> ParseResult:
    """Parse a Mailgun webhook POST (``{"signature": {...}, "event-data": {...}}``)."""
    provider = Provider.MAILGUN
    envelope = _object(provider, _load_json(provider, body), "body")
    data = _object(provider, envelope.get("event-data"), "event-data")
    where = "event-data"
    event_type = _required_str(provider, data, "event", where)
    kind = _MAILGUN_KINDS.get(event_type)
    if kind is None:
        return ParseResult(ignored=(event_type,))
    occurred_at = _epoch(provider, data.get("timestamp"), f"{where}.timestamp")
    reason = _optional_str(provider, data, "reason", where)
    bounce: BounceType | None = None
    if event_type == "failed":
        severity = _optional_str(provider, data, "severity", where)
        kind, bounce = _mailgun_failure(severity, reason)

    message_id: str | None = None
    message = data.get("message")
    if message is not None:
        headers = _object(provider, message, f"{where}.message").get("headers")
        if headers is not None:
            message_id = _optional_str(
                provider,
                _object(provider, headers, f"{where}.message.headers"),
                "message-id",
                f"{where}.message.headers",
            )

    our_id: str | None = None
    variables = data.get("user-variables")
    if variables is not None:
        our_id = _optional_str(
            provider,
            _object(provider, variables, f"{where}.user-variables"),
            OUR_ID_KEY,
            f"{where}.user-variables",
        )

    error_code: str | None = None
    status_text: str | None = None
    status = data.get("delivery-status")
    if status is not None:
        status_data = _object(provider, status, f"{where}.delivery-status")
        error_code = _optional_str(provider, status_data, "code", f"{where}.delivery-status")
        status_text = _optional_str(
            provider, status_data, "message", f"{where}.delivery-status"
        ) or _optional_str(provider, status_data, "description", f"{where}.delivery-status")
    if kind in (EventKind.QUEUED, EventKind.DELIVERED, EventKind.OPENED, EventKind.CLICKED):
        error_code, status_text, reason = None, None, None

    return ParseResult(
        events=(
            DeliveryEvent(
                provider=provider,
                kind=kind,
                provider_message_id=message_id,
                our_message_id=our_id,
                recipient=_optional_str(provider, data, "recipient", where),
                occurred_at=occurred_at,
                provider_event_id=_required_str(provider, data, "id", where),
                bounce=bounce,
                reason=_join(f"{reason}:" if reason and status_text else reason, status_text),
                error_code=error_code,
                raw=data,
            ),
        )
    )


# --- Twilio --------------------------------------------------------------------------------

_TWILIO_MESSAGE_KINDS: dict[str, EventKind] = {
    "accepted": EventKind.QUEUED,
    "queued": EventKind.QUEUED,
    "sent": EventKind.SENT,
    "delivered": EventKind.DELIVERED,
    "read": EventKind.READ,
    "undelivered": EventKind.FAILED,
    "failed": EventKind.FAILED,
    "canceled": EventKind.DROPPED,
}
_TWILIO_CALL_KINDS: dict[str, EventKind] = {
    "queued": EventKind.QUEUED,
    "initiated": EventKind.QUEUED,
    "ringing": EventKind.SENT,
    "in-progress": EventKind.ANSWERED,
    "completed": EventKind.ANSWERED,
    "busy": EventKind.BUSY,
    "no-answer": EventKind.NO_ANSWER,
    "failed": EventKind.FAILED,
    "canceled": EventKind.DROPPED,
}


def parse_twilio(form: Mapping[str, str], *, received_at: datetime | None = None) -> ParseResult:
    """Parse a Twilio Messaging or Voice status callback (its decoded form fields).

    Voice callbacks carry ``Timestamp`` (RFC 2822); Messaging callbacks carry no event time,
    so ``received_at`` (aware) is used for them, and is required when no ``Timestamp`` is
    present: omitting it then is our bug, so it raises plain ``ValueError``.
    """
    provider = Provider.TWILIO
    if not isinstance(form, Mapping):
        raise MalformedPayload(f"{provider}: form must be a mapping, got {_kind(form)}")
    data: dict[str, object] = dict(form)
    if "MessageStatus" in data:
        status = _required_str(provider, data, "MessageStatus", "form")
        sid = _required_str(provider, data, "MessageSid", "form")
        kind = _TWILIO_MESSAGE_KINDS.get(status)
    elif "CallStatus" in data:
        status = _required_str(provider, data, "CallStatus", "form")
        sid = _required_str(provider, data, "CallSid", "form")
        kind = _TWILIO_CALL_KINDS.get(status)
        answered_by = _optional_str(provider, data, "AnsweredBy", "form")
        if kind is EventKind.ANSWERED and answered_by and answered_by.startswith("machine"):
            kind = EventKind.VOICEMAIL
    else:
        raise MalformedPayload(f"{provider}: form has neither MessageStatus nor CallStatus")
    if kind is None:
        return ParseResult(ignored=(status,))

    occurred_at = _twilio_time(provider, data, received_at)
    error_code = _optional_str(provider, data, "ErrorCode", "form")
    if error_code == "0":
        error_code = None
    return ParseResult(
        events=(
            DeliveryEvent(
                provider=provider,
                kind=kind,
                provider_message_id=sid,
                our_message_id=None,
                recipient=_optional_str(provider, data, "To", "form"),
                occurred_at=occurred_at,
                provider_event_id=f"{sid}:{status}",
                reason=_optional_str(provider, data, "ErrorMessage", "form"),
                error_code=error_code,
                raw=data,
            ),
        )
    )


def _twilio_time(
    provider: Provider, data: Mapping[str, object], received_at: datetime | None
) -> datetime:
    stamp = _optional_str(provider, data, "Timestamp", "form")
    if stamp is not None:
        try:
            parsed = parsedate_to_datetime(stamp)
        except (TypeError, ValueError) as error:
            raise MalformedPayload(
                f"{provider}: form.Timestamp is not an RFC 2822 date: {stamp!r}"
            ) from error
        if parsed.utcoffset() is None:
            raise MalformedPayload(f"{provider}: form.Timestamp has no UTC offset: {stamp!r}")
        return parsed.astimezone(UTC)
    if received_at is None or received_at.utcoffset() is None:
        raise ValueError("Twilio callback without Timestamp: pass an aware received_at")
    return received_at.astimezone(UTC)


# --- WhatsApp Cloud API --------------------------------------------------------------------

_WHATSAPP_KINDS: dict[str, EventKind] = {
    "sent": EventKind.SENT,
    "delivered": EventKind.DELIVERED,
    "read": EventKind.READ,
    "failed": EventKind.FAILED,
}


def parse_whatsapp(body: bytes) -> ParseResult:
    """Parse a WhatsApp Cloud API webhook POST; only ``statuses`` become events."""
    provider = Provider.WHATSAPP
    envelope = _object(provider, _load_json(provider, body), "body")
    kind_of_object = envelope.get("object")
    if kind_of_object != "whatsapp_business_account":
        raise MalformedPayload(
            f"{provider}: body.object must be 'whatsapp_business_account', got {kind_of_object!r}"
        )
    events: list[DeliveryEvent] = []
    ignored: list[str] = []
    for e_index, entry in enumerate(_array(provider, envelope.get("entry"), "body.entry")):
        entry_where = f"entry[{e_index}]"
        changes = _object(provider, entry, entry_where).get("changes")
        for c_index, change in enumerate(_array(provider, changes, f"{entry_where}.changes")):
            change_where = f"{entry_where}.changes[{c_index}]"
            value = _object(provider, change, change_where).get("value")
            statuses = _object(provider, value, f"{change_where}.value").get("statuses")
            if statuses is None:
                continue
            for s_index, item in enumerate(
                _array(provider, statuses, f"{change_where}.value.statuses")
            ):
                where = f"{change_where}.value.statuses[{s_index}]"
                event = _whatsapp_status(provider, _object(provider, item, where), where)
                if isinstance(event, str):
                    ignored.append(event)
                else:
                    events.append(event)
    return ParseResult(tuple(events), tuple(ignored))


def _whatsapp_status(
    provider: Provider, data: dict[str, object], where: str
) -> DeliveryEvent | str:
    status = _required_str(provider, data, "status", where)
    kind = _WHATSAPP_KINDS.get(status)
    if kind is None:
        return status
    message_id = _required_str(provider, data, "id", where)
    occurred_at = _epoch(provider, data.get("timestamp"), f"{where}.timestamp")
    error_code, reason = _whatsapp_error(provider, data.get("errors"), f"{where}.errors")
    return DeliveryEvent(
        provider=provider,
        kind=kind,
        provider_message_id=message_id,
        our_message_id=None,
        recipient=_optional_str(provider, data, "recipient_id", where),
        occurred_at=occurred_at,
        provider_event_id=f"{message_id}:{status}",
        reason=reason,
        error_code=error_code,
        raw=data,
    )


def _whatsapp_error(
    provider: Provider, errors: object, where: str
) -> tuple[str | None, str | None]:
    if errors is None:
        return None, None
    items: Sequence[object] = _array(provider, errors, where)
    if not items:
        return None, None
    first = _object(provider, items[0], f"{where}[0]")
    details: str | None = None
    error_data = first.get("error_data")
    if isinstance(error_data, dict):
        details = _optional_str(provider, error_data, "details", f"{where}[0].error_data")
    title = _optional_str(provider, first, "title", f"{where}[0]")
    message = _optional_str(provider, first, "message", f"{where}[0]")
    text = _join(title, f"({message})" if message and message != title else None, details)
    return _optional_str(provider, first, "code", f"{where}[0]"), text
