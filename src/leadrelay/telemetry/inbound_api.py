"""Inbound replies from providers: Twilio's incoming-message webhook (SMS and WhatsApp),
SendGrid Inbound Parse and Mailgun route forwards. Each is authenticated before its body is
read as a form, turned into an :class:`InboundReply` and handed to `telemetry.inbound`.

* Twilio: form-encoded, `X-Twilio-Signature` over the public URL and the fields (the auth
  token). Answers TwiML: `<Response/>`, or the tenant's HELP text as a `<Message>`. STOP gets
  the empty answer: Twilio's Advanced Opt-Out sends the carrier confirmation itself.
* SendGrid Inbound Parse signs nothing: the URL carries HTTP Basic credentials from the
  settings (compared in constant time). multipart/form-data with `from`, `to`, `subject`,
  `text`, `html`, `headers` (the raw header block), `envelope` and `charsets` (JSON).
* Mailgun: `timestamp`, `token`, `signature` (HMAC-SHA256 with the webhook signing key),
  `sender`, `from`, `recipient`, `subject`, `body-plain`, `message-headers` (JSON pairs),
  `Message-Id`, `In-Reply-To`, `References`.

An unsigned or badly signed request is a 401/403, a malformed one a 400/422 (problem+json);
a message that matches no lead is still a 200 (kept as a dead letter, see inbound.py).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.parser import HeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from typing import Any
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from leadrelay.capture.provider_models import MessageChannel
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import (
    PROBLEM_JSON,
    Forbidden,
    LeadRelayError,
    Unauthenticated,
    ValidationFailed,
)
from leadrelay.core.signatures import verify_mailgun
from leadrelay.identity.deps import SessionDep
from leadrelay.outreach.api import keys_of
from leadrelay.outreach.voice_api import signed_twilio_form
from leadrelay.telemetry.inbound import (
    InboundReply,
    InboundResult,
    InboundStatus,
    email_reply,
    first_header,
    receive_reply,
    references_of,
    text_of_html,
)
from leadrelay.telemetry.replies import Intent, classify_text

router = APIRouter(tags=["replies"])

TWILIO_PATH = "/v1/telemetry/twilio/inbound"
SENDGRID_PATH = "/v1/telemetry/sendgrid/inbound"
MAILGUN_PATH = "/v1/telemetry/mailgun/inbound"
# These read their own (form) bodies; e-mail with attachments is larger than a JSON call.
RAW_BODY_PATHS: tuple[str, ...] = (TWILIO_PATH, SENDGRID_PATH, MAILGUN_PATH)
INBOUND_EMAIL_LIMIT = 30 * 1024 * 1024  # SendGrid's own cap on a parsed message
BODY_LIMITS: dict[str, int] = {
    SENDGRID_PATH: INBOUND_EMAIL_LIMIT,
    MAILGUN_PATH: INBOUND_EMAIL_LIMIT,
}
TWIML = "application/xml"
MAX_FIELD_CHARS = 200_000
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


class BadMailgunSignature(Forbidden):
    """The request is not signed with our Mailgun webhook signing key, or is too old."""

    code = "bad-mailgun-signature"


class BadInboundCredentials(Unauthenticated):
    """Send the Inbound Parse credentials (HTTP Basic) configured for this deployment."""

    code = "bad-inbound-credentials"


class MalformedBody(LeadRelayError):
    """The body is not the form this provider sends."""

    code = "malformed-body"


class InboundOut(BaseModel):
    status: str = Field(description="stored | duplicate | unmatched (kept for an operator)")
    classification: str | None = Field(description="reply | opt_out | opt_in | help | auto_reply")


def _missing(*names: str) -> ValidationFailed:
    return ValidationFailed(
        "Required fields are missing.",
        errors=[{"field": name, "reason": "missing"} for name in names],
    )


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) else ""


async def _form(request: Request) -> FormData:
    try:
        return await request.form(max_files=100, max_fields=2000)
    except (HTTPException, MultiPartException, ValueError) as error:
        # Starlette reports a broken multipart body as HTTPException(400).
        raise MalformedBody() from error


def _answer(result: InboundResult) -> InboundOut:
    return InboundOut(
        status=result.status.value,
        classification=result.intent.value if result.intent else None,
    )


# --- Twilio -------------------------------------------------------------------------------------


def twilio_reply(form: Mapping[str, str], *, now: datetime) -> InboundReply:
    """An incoming Twilio message (SMS, or WhatsApp when `From` is `whatsapp:+…`)."""
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or ""
    sender = form.get("From", "").strip()
    if not sid or not sender:
        raise _missing(*[n for n, v in (("MessageSid", sid), ("From", sender)) if not v])
    channel = MessageChannel.SMS
    if sender.lower().startswith("whatsapp:"):
        channel, sender = MessageChannel.WHATSAPP, sender.split(":", 1)[1]
    recipient = form.get("To", "").split(":", 1)[-1] or None
    media = form.get("NumMedia", "0")
    kept = {
        name: value[:2000]
        for name, value in form.items()
        if name not in {"AccountSid", "ApiVersion", "Body"} and not name.startswith("MediaUrl")
    }
    return InboundReply(
        channel=channel,
        provider="twilio",
        sender=sender,
        text=form.get("Body", "")[:MAX_FIELD_CHARS],
        provider_message_id=sid[:200],
        received_at=now,
        recipient=recipient,
        message_type="media" if media not in ("", "0") else "text",
        raw={"twilio": kept},
    )


def _twiml(message: str | None = None) -> Response:
    inner = f"<Message>{escape(message)}</Message>" if message else ""
    body = f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'
    return Response(content=body, media_type=TWIML)


@router.post(
    TWILIO_PATH,
    response_class=Response,
    responses={
        200: {"content": {TWIML: {}}, "description": "TwiML: empty, or the HELP answer"},
        403: {**_PROBLEM, "description": "Missing or wrong X-Twilio-Signature"},
        422: {**_PROBLEM, "description": "Not an incoming-message webhook"},
    },
)
async def twilio_inbound(request: Request, session: SessionDep) -> Response:
    """Twilio's incoming-message webhook (SMS, WhatsApp): the reply is placed, stored and
    acted on; HELP is answered with the tenant's HELP text."""
    settings = request.app.state.settings
    form = await signed_twilio_form(request)
    reply = twilio_reply(form, now=utcnow())
    result = await receive_reply(
        session, reply, settings=settings, keys=keys_of(request), now=utcnow()
    )
    if result.status is InboundStatus.UNMATCHED and classify_text(reply.text).intent is Intent.HELP:
        # No tenant known (a number we never texted): HELP still gets an answer (CTIA).
        return _twiml(settings.inbound_help_text)
    return _twiml(result.help_text if result.intent is Intent.HELP else None)


# --- e-mail -------------------------------------------------------------------------------------


def _header_pairs(block: str) -> list[tuple[str, str]]:
    """A raw header block ("Name: value" lines, folded) as (name, value) pairs in order."""
    if not block.strip():
        return []
    parsed = HeaderParser(policy=default_policy).parsestr(block.lstrip() + "\n\n")
    return [(str(name), str(value)) for name, value in parsed.raw_items()]


def _recode(value: str, charset: str | None) -> str:
    """A field decoded as UTF-8 (or, failing that, Latin-1) by the form parser, re-read in the
    charset SendGrid declares for it."""
    if not charset or charset.lower().replace("_", "-") in {"utf-8", "utf8", "us-ascii"}:
        return value
    try:
        return value.encode("latin-1").decode(charset)
    except (LookupError, UnicodeError):
        return value


def _json_field(form: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = _field(form, name)
    if not value:
        return {}
    try:
        loaded = json.loads(value)
    except ValueError:
        raise ValidationFailed(
            f"'{name}' is not JSON.", errors=[{"field": name, "reason": "invalid"}]
        ) from None
    return loaded if isinstance(loaded, dict) else {}


def _check_basic(request: Request) -> None:
    settings = request.app.state.settings
    user = settings.sendgrid_inbound_username
    password = settings.sendgrid_inbound_password.get_secret_value()
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    given_user, _, given_password = given.partition(":")
    expected = f"{user}:{password}".encode()
    matches = hmac.compare_digest(expected, f"{given_user}:{given_password}".encode())
    if not (user and password and scheme.lower() == "basic" and matches):
        raise BadInboundCredentials()


@router.post(
    SENDGRID_PATH,
    responses={
        401: {**_PROBLEM, "description": "Missing or wrong HTTP Basic credentials"},
        422: {**_PROBLEM, "description": "Not an Inbound Parse post"},
    },
)
async def sendgrid_inbound(request: Request, session: SessionDep) -> InboundOut:
    """SendGrid Inbound Parse (the default, parsed form): an e-mail reply."""
    _check_basic(request)
    form = await _form(request)
    charsets = {k: str(v) for k, v in _json_field(form, "charsets").items()}
    envelope = _json_field(form, "envelope")

    def field(name: str) -> str:
        return _recode(_field(form, name), charsets.get(name))

    headers = _header_pairs(field("headers"))
    sender = field("from") or first_header(headers, "from") or str(envelope.get("from") or "")
    if not sender:
        raise _missing("from")
    text = field("text")
    if not text and field("html"):
        text = text_of_html(field("html"))
    to = envelope.get("to")
    recipient = str(to[0]) if isinstance(to, list) and to else _first_address(field("to"))
    attachments = sum(1 for _, value in form.multi_items() if isinstance(value, UploadFile))
    reply = email_reply(
        provider="sendgrid",
        sender=sender,
        recipient=recipient,
        subject=field("subject") or first_header(headers, "subject"),
        text=text,
        headers=headers,
        now=utcnow(),
        raw={"sendgrid": {"attachments": attachments, "spam_score": _field(form, "spam_score")}},
    )
    settings = request.app.state.settings
    result = await receive_reply(
        session, reply, settings=settings, keys=keys_of(request), now=utcnow()
    )
    return _answer(result)


@router.post(
    MAILGUN_PATH,
    responses={
        403: {**_PROBLEM, "description": "Missing, wrong or stale Mailgun signature"},
        422: {**_PROBLEM, "description": "Not a route forward"},
    },
)
async def mailgun_inbound(request: Request, session: SessionDep) -> InboundOut:
    """A Mailgun route's forward(): an e-mail reply, signed with the webhook signing key."""
    settings = request.app.state.settings
    key = settings.mailgun_webhook_signing_key.get_secret_value()
    if not key:
        raise BadMailgunSignature("Mailgun is not configured here, so no request can be checked.")
    form = await _form(request)
    now = utcnow()
    if not verify_mailgun(
        signing_key=key,
        timestamp=_field(form, "timestamp"),
        token=_field(form, "token"),
        signature=_field(form, "signature"),
        now=now,
        tolerance=timedelta(seconds=settings.webhook_tolerance_seconds),
    ):
        raise BadMailgunSignature()
    headers: list[tuple[str, str]] = []
    listed = _field(form, "message-headers")
    if listed:
        try:
            pairs = json.loads(listed)
        except ValueError:
            raise ValidationFailed(
                "'message-headers' is not JSON.",
                errors=[{"field": "message-headers", "reason": "invalid"}],
            ) from None
        if not isinstance(pairs, list):
            raise ValidationFailed(
                "'message-headers' must be a list of [name, value] pairs.",
                errors=[{"field": "message-headers", "reason": "invalid"}],
            )
        headers = [
            (str(pair[0]), str(pair[1]))
            for pair in pairs
            if isinstance(pair, list) and len(pair) == 2
        ]
    sender = _field(form, "from") or _field(form, "sender")
    if not sender:
        raise _missing("sender")
    references = references_of(headers, _field(form, "In-Reply-To"), _field(form, "References"))
    reply = email_reply(
        provider="mailgun",
        sender=sender,
        recipient=_field(form, "recipient") or None,
        subject=_field(form, "subject"),
        text=_field(form, "body-plain"),
        headers=headers,
        references=references,
        message_id=_field(form, "Message-Id") or first_header(headers, "message-id"),
        now=datetime.fromtimestamp(int(_field(form, "timestamp")), UTC),
        raw={"mailgun": {"envelope_sender": _field(form, "sender")[:320]}},
    )
    result = await receive_reply(session, reply, settings=settings, keys=keys_of(request), now=now)
    return _answer(result)


def _first_address(value: str) -> str | None:
    found = [address for _, address in getaddresses([value]) if address]
    return found[0] if found else None
