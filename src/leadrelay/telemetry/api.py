"""Delivery webhooks: SendGrid's Event Webhook (ECDSA), Mailgun's webhooks (HMAC) and Twilio's
message status callbacks (X-Twilio-Signature). Each checks its signature over the raw body
before reading it, parses with the pure `telemetry.events` parser, and hands the events to
`telemetry.service.receive_batch` through the group-commit `telemetry.batcher`: placed,
de-duplicated, applied — answered 200 with counts once committed.

A forged or unsigned request gets 401 (Twilio's: 403, as on the voice routes) and changes
nothing; a body that is not the provider's
shape gets 400 naming the field (the provider then shows the failure in its own console); an
event type we do not know is counted as ignored, never an error, so a provider adding one
cannot make it retry a whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from leadrelay.core.clock import utcnow
from leadrelay.core.errors import PROBLEM_JSON, LeadRelayError, Unauthenticated
from leadrelay.core.security import app_secret_keys
from leadrelay.core.signatures import verify_mailgun, verify_sendgrid
from leadrelay.outreach.voice_api import signed_twilio_form
from leadrelay.telemetry.batcher import DeliveryBatcher
from leadrelay.telemetry.events import (
    MalformedPayload,
    ParseResult,
    parse_mailgun,
    parse_sendgrid,
    parse_twilio,
)

router = APIRouter(prefix="/v1/telemetry", tags=["telemetry"])

# Twilio posts a form body: served raw, past the app's JSON-only check, like the voice routes.
TWILIO_STATUS_PATH = "/v1/telemetry/twilio/status"
SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


class BadWebhookSignature(Unauthenticated):
    """The request is not signed by the provider account configured here."""

    code = "bad-webhook-signature"


class MalformedWebhook(LeadRelayError):
    """The body is not the provider's documented shape."""

    code = "malformed-webhook"


class Received(BaseModel):
    stored: int = Field(description="New events placed on their message")
    duplicates: int = Field(description="Events seen before (provider retries), ignored")
    unmatched: int = Field(description="Events for a message not known yet, kept for later")
    moved: int = Field(description="Events that moved a message's delivery state forward")
    suppressed: int = Field(description="Addresses barred by these events")
    ignored: list[str] = Field(description="Provider event types with no meaning here")


_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Received, "description": "Stored and applied"},
    400: {**_PROBLEM, "description": "Not the provider's documented shape"},
    401: {**_PROBLEM, "description": "Missing or wrong signature, or no key configured"},
    403: {**_PROBLEM, "description": "Twilio: missing or wrong X-Twilio-Signature"},
}


def _parsed(parse: Any, *args: Any) -> ParseResult:
    try:
        result: ParseResult = parse(*args)
    except MalformedPayload as error:
        raise MalformedWebhook(
            str(error), errors=[{"field": "body", "reason": str(error)}]
        ) from None
    return result


def batcher_of(state: Any) -> DeliveryBatcher:
    """The app's delivery-event batcher, made on first use."""
    batcher: DeliveryBatcher | None = getattr(state, "delivery_batcher", None)
    if batcher is None:
        batcher = DeliveryBatcher(state.db, keys=app_secret_keys(state))
        state.delivery_batcher = batcher
    return batcher


async def _received(state: Any, result: ParseResult) -> bytes:
    # Stored with the other webhooks arriving meanwhile, in one transaction; answered once
    # that transaction has committed (`telemetry.batcher`).
    receipt = await batcher_of(state).submit(result.events)
    return orjson.dumps({**receipt.as_json(), "ignored": list(result.ignored)})


async def sendgrid_delivery(state: Any, headers: Mapping[str, str], body: bytes) -> bytes:
    """SendGrid's Event Webhook: a JSON array of events, signed with the account's ECDSA key.
    Served by the webhook fast path (`inbound.fastpath`) and by the route below alike."""
    key = state.settings.sendgrid_webhook_public_key
    if not key:
        raise BadWebhookSignature("No SendGrid verification key is configured here.")
    try:
        valid = verify_sendgrid(
            public_key=key,
            payload=body,
            signature=headers.get(SENDGRID_SIGNATURE, ""),
            timestamp=headers.get(SENDGRID_TIMESTAMP, ""),
            now=utcnow(),
        )
    except ValueError:  # the configured key is no P-256 public key: nothing can verify
        raise BadWebhookSignature("The SendGrid verification key configured is unusable.") from None
    if not valid:
        raise BadWebhookSignature()
    return await _received(state, _parsed(parse_sendgrid, body))


async def mailgun_delivery(state: Any, headers: Mapping[str, str], body: bytes) -> bytes:
    """Mailgun's webhooks: one event per request, its `signature` object an HMAC of the
    timestamp and a one-time token with the HTTP webhook signing key."""
    key = state.settings.mailgun_webhook_signing_key.get_secret_value()
    if not key:
        raise BadWebhookSignature("No Mailgun webhook signing key is configured here.")
    try:
        signature = json.loads(body).get("signature")
    except (ValueError, AttributeError):
        signature = None
    if not isinstance(signature, dict):
        raise BadWebhookSignature("The body carries no Mailgun signature object.")
    fields = [signature.get(name) for name in ("timestamp", "token", "signature")]
    if not all(isinstance(value, str) for value in fields):
        raise BadWebhookSignature("The Mailgun signature object is incomplete.")
    timestamp, token, digest = (str(value) for value in fields)
    if not verify_mailgun(
        signing_key=key, timestamp=timestamp, token=token, signature=digest, now=utcnow()
    ):
        raise BadWebhookSignature()
    return await _received(state, _parsed(parse_mailgun, body))


SENDGRID_EVENTS_PATH = "/v1/telemetry/sendgrid/events"
MAILGUN_EVENTS_PATH = "/v1/telemetry/mailgun/events"
# Answered ahead of FastAPI's routing by `inbound.fastpath` (providers post many small
# deliveries); the routes below document them and serve them when the fast path is off.
FAST_PATHS = {SENDGRID_EVENTS_PATH: sendgrid_delivery, MAILGUN_EVENTS_PATH: mailgun_delivery}


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.post(SENDGRID_EVENTS_PATH.removeprefix("/v1/telemetry"), responses=_RESPONSES)
async def sendgrid_events(request: Request) -> Response:
    """SendGrid's Event Webhook: a JSON array of events, signed with the account's ECDSA key."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return _json(await sendgrid_delivery(request.app.state, headers, await request.body()))


@router.post(MAILGUN_EVENTS_PATH.removeprefix("/v1/telemetry"), responses=_RESPONSES)
async def mailgun_events(request: Request) -> Response:
    """Mailgun's webhooks: one event per request, its `signature` object an HMAC of the
    timestamp and a one-time token with the HTTP webhook signing key."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return _json(await mailgun_delivery(request.app.state, headers, await request.body()))


@router.post(TWILIO_STATUS_PATH.removeprefix("/v1/telemetry"), responses=_RESPONSES)
async def twilio_status(request: Request) -> Response:
    """Twilio's message status callback (SMS, MMS, WhatsApp through Twilio)."""
    form = await signed_twilio_form(request)
    return _json(await _received(request.app.state, _parsed(parse_twilio_now, form)))


def parse_twilio_now(form: dict[str, str]) -> ParseResult:
    # Messaging callbacks carry no event time: the time we received it stands in.
    return parse_twilio(form, received_at=utcnow())
