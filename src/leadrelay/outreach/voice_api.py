"""Twilio's side of a call: it fetches the TwiML (an introduction with a speech gather for a
person, the voicemail after the beep for a machine), posts what the callee said, and posts the
call's status. Every request must carry a valid `X-Twilio-Signature` for the URL we gave it.

"Remove me" takes effect at once: the number is suppressed, consent on the channel withdrawn
and the lead leaves its campaigns.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request, Response

from leadrelay.core.clock import utcnow
from leadrelay.core.errors import Forbidden, ValidationFailed
from leadrelay.core.signatures import verify_twilio
from leadrelay.identity.service import system_principal
from leadrelay.outreach import campaigns, service, suppression
from leadrelay.outreach.api import keys_of
from leadrelay.outreach.models import ConsentState, Message, SuppressionReason
from leadrelay.outreach.unsubscribe import read_token
from leadrelay.outreach.voice import (
    Intent,
    intro_twiml,
    parse_call_callback,
    voicemail_twiml,
)
from leadrelay.telemetry import service as telemetry
from leadrelay.telemetry.events import MalformedPayload, parse_twilio

VOICE_PREFIX = "/voice/"
voice_router = APIRouter(tags=["voice"])
Token = Annotated[str, Path(max_length=200)]
TWIML = "application/xml"
GOODBYE = "Thank you for your time. Goodbye."


class BadTwilioSignature(Forbidden):
    """The request is not signed by our Twilio account."""

    code = "bad-twilio-signature"


async def signed_twilio_form(request: Request) -> dict[str, str]:
    """The POST fields, once the signature over the URL we gave Twilio and them is checked."""
    settings = request.app.state.settings
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        raise BadTwilioSignature("Twilio is not configured here, so no request can be checked.")
    body = await request.body()
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    url = settings.public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("x-twilio-signature", "")
    if not verify_twilio(auth_token=token, url=url, params=form, signature=signature):
        raise BadTwilioSignature()
    return form


async def _message(request: Request, token: str) -> tuple[uuid.UUID, uuid.UUID]:
    return read_token(service.voice_secret(keys_of(request)), token)


def _twiml(document: str) -> Response:
    return Response(content=document, media_type=TWIML)


@voice_router.post(VOICE_PREFIX + "{token}")
async def call_twiml(token: Token, request: Request) -> Response:
    """What the call says: the script inside a speech gather, or, when answering-machine
    detection heard a machine finish its greeting, the script as a voicemail."""
    form = await signed_twilio_form(request)
    tenant_id, message_id = await _message(request, token)
    async with request.app.state.db.session(tenant_id) as session:
        message = await session.get(Message, message_id)
        if message is None:
            return _twiml(voicemail_twiml(GOODBYE))
        script = message.body
    if form.get("AnsweredBy", "").startswith("machine_end"):
        return _twiml(voicemail_twiml(script))
    gather = request.app.state.settings.public_url.rstrip("/") + request.url.path + "/gather"
    return _twiml(intro_twiml(script, gather_action_url=gather))


async def _record(request: Request, token: str, form: Mapping[str, str]) -> Intent | None:
    try:
        outcome = parse_call_callback(form)
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "form", "reason": str(exc)}]) from exc
    tenant_id, message_id = await _message(request, token)
    now = utcnow()
    async with request.app.state.db.session(tenant_id) as session:
        message = await session.get(Message, message_id, with_for_update=True)
        if message is None:
            return None
        seen: dict[str, Any] = dict(message.outcome or {})
        for name, value in (
            ("call_sid", outcome.call_sid),
            ("call_status", outcome.call_status),
            ("duration_seconds", outcome.duration_seconds),
            ("answered_by", outcome.answered_by),
            ("recording_sid", outcome.recording_sid),
            ("recording_url", outcome.recording_url),
            ("speech", outcome.speech_result),
            ("confidence", outcome.confidence),
            ("intent", outcome.intent.value if outcome.intent else None),
        ):
            if value is not None:
                seen[name] = value
        message.outcome = seen
        actor = system_principal(tenant_id)
        if outcome.intent is Intent.REMOVE_ME:
            await suppression.suppress(
                session,
                actor,
                keys=keys_of(request),
                kind="phone",
                normalized=message.recipient,
                reason=SuppressionReason.OPTED_OUT,
                source="voice: asked to be removed",
                now=now,
            )
            await suppression.record_consent(
                session,
                actor,
                lead_id=message.lead_id,
                channel=message.channel,
                state=ConsentState.WITHDRAWN,
                purpose="all outreach",
                method="said so on a call",
                evidence=outcome.speech_result,
                now=now,
            )
        if outcome.intent in (Intent.REMOVE_ME, Intent.NOT_INTERESTED):
            await campaigns.stop_for_lead(session, message.lead_id, outcome.intent.value, now=now)
        return outcome.intent


@voice_router.post(VOICE_PREFIX + "{token}/gather")
async def call_gather(token: Token, request: Request) -> Response:
    """What the callee said, classified (interested, not interested, remove me, call back
    later) and kept on the message."""
    form = await signed_twilio_form(request)
    await _record(request, token, form)
    return _twiml(voicemail_twiml(GOODBYE))


@voice_router.post(VOICE_PREFIX + "{token}/status")
async def call_status(token: Token, request: Request) -> Response:
    """Twilio's call status callback: status, duration, who answered, recording reference;
    the call's delivery state moves with it (ringing, answered, voicemail, busy …)."""
    form = await signed_twilio_form(request)
    await _record(request, token, form)
    try:
        parsed = parse_twilio(form, received_at=utcnow())
    except MalformedPayload:
        parsed = None  # a recording callback: no call status, nothing to move
    if parsed is not None and parsed.events:
        tenant_id, message_id = await _message(request, token)
        async with request.app.state.db.session(tenant_id) as session:
            await telemetry.apply(
                session,
                tenant_id,
                [(message_id, event) for event in parsed.events],
                keys=keys_of(request),
                now=utcnow(),
            )
    return Response(status_code=204)
