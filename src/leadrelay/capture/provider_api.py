"""Provider webhooks: the per-source provider configuration, and Meta's two inbound routes
(Lead Ads and WhatsApp Cloud API), each with its GET verification challenge and its signed
POST. The POSTs read their raw body (they sit under /v1/inbound/) and answer 200, as Meta
expects, with what was accepted, repeated and ignored."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from leadrelay.capture import meta, sources, whatsapp
from leadrelay.capture.meta import Provider, ProviderConfig
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import PROBLEM_JSON
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import CanManageSources, SessionDep
from leadrelay.outreach.api import keys_of
from leadrelay.telemetry import service as telemetry
from leadrelay.telemetry.events import DeliveryEvent, MalformedPayload, parse_whatsapp

router = APIRouter(tags=["provider webhooks"])

_PATH_SEGMENT = {Provider.META_LEAD_ADS: "meta", Provider.WHATSAPP: "whatsapp"}
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


class ProviderConfigIn(Input):
    provider: Provider
    app_secret: str = Field(min_length=1, max_length=200, description="The Meta app's secret")
    verify_token: str = Field(
        min_length=1, max_length=200, description="The Verify Token set in the App Dashboard"
    )
    access_token: str = Field(
        default="",
        max_length=2000,
        description="Page access token with leads_retrieval (required for meta_lead_ads)",
    )
    graph_base_url: str | None = Field(
        default=None,
        max_length=300,
        description="Graph API base URL; default LEADRELAY_META_GRAPH_BASE_URL",
    )


class ProviderConfigOut(BaseModel):
    source_id: uuid.UUID
    provider: Provider
    callback_url: str = Field(description="The URL to give Meta as the webhook callback")
    graph_base_url: str
    configured: dict[str, bool] = Field(description="Which secrets are set (never echoed)")


class DeliveryOut(BaseModel):
    accepted: int = Field(description="New leads or messages, each handed to a job")
    duplicates: int = Field(description="Replays of ids already accepted")
    ignored: int = Field(description="Changes this endpoint does not take (see ignored_fields)")
    ignored_fields: dict[str, int]
    delivery_events: dict[str, int] | None = Field(
        default=None,
        description="WhatsApp: statuses of our own messages, as telemetry took them "
        "(stored, duplicates, unmatched, moved, suppressed)",
    )


@router.put(
    "/v1/sources/{source_id}/provider-config",
    responses={404: _PROBLEM, 422: _PROBLEM},
)
async def put_provider_config(
    source_id: uuid.UUID,
    body: ProviderConfigIn,
    request: Request,
    session: SessionDep,
    actor: CanManageSources,
) -> ProviderConfigOut:
    """Set the source's provider secrets (encrypted at rest, audited, never echoed)."""
    settings = request.app.state.settings
    config = ProviderConfig(
        provider=body.provider,
        app_secret=body.app_secret,
        verify_token=body.verify_token,
        access_token=body.access_token,
        graph_base_url=body.graph_base_url or None,
    )
    source, stored = await meta.update_provider_config(
        session,
        actor,
        request.app.state.secret_box,
        source_id,
        config,
        allow_plain_http=settings.webhook_allow_private_targets,
        now=utcnow(),
    )
    segment = _PATH_SEGMENT[body.provider]
    return ProviderConfigOut(
        source_id=source.id,
        provider=body.provider,
        callback_url=f"{settings.public_url}/v1/inbound/{segment}/{source.id}",
        graph_base_url=stored.graph_base_url or settings.meta_graph_base_url,
        configured={
            "app_secret": bool(stored.app_secret),
            "verify_token": bool(stored.verify_token),
            "access_token": bool(stored.access_token),
        },
    )


HubMode = Annotated[str | None, Query(alias="hub.mode", max_length=50)]
HubVerifyToken = Annotated[str | None, Query(alias="hub.verify_token", max_length=200)]
HubChallenge = Annotated[str | None, Query(alias="hub.challenge", max_length=256)]


async def _verify(
    request: Request,
    session: SessionDep,
    source_id: uuid.UUID,
    provider: Provider,
    *,
    mode: str | None,
    verify_token: str | None,
    challenge: str | None,
) -> PlainTextResponse:
    found = await meta.find_provider_source(session, request.app.state.secret_box, source_id)
    answer = meta.check_verification(
        found, provider, mode=mode, verify_token=verify_token, challenge=challenge
    )
    return PlainTextResponse(answer, headers={"x-content-type-options": "nosniff"})


async def _receive(
    request: Request, session: SessionDep, source_id: uuid.UUID, provider: Provider
) -> Response:
    body = await request.body()
    box = request.app.state.secret_box
    found = meta.check_signature(
        await meta.find_provider_source(session, box, source_id),
        provider,
        body=body,
        signature_header=request.headers.get("x-hub-signature-256", ""),
    )
    source = await meta.access_receiving_source(session, found)
    now = utcnow()
    try:
        sources.check_source_accepts(source)
    except sources.SourceRefused as refused:
        await meta.record_refused_delivery(session, source, provider, refused, now=now)
        # Returned, not raised: the transaction commits, so the refusal is audited.
        return JSONResponse(
            refused.problem(request.url.path), refused.status, media_type=PROBLEM_JSON
        )
    delivery_events: dict[str, int] | None = None
    if provider == Provider.META_LEAD_ADS:
        notification = meta.load_notification(body, expected_object=meta.PAGE_OBJECT)
        leadgens, ignored = meta.parse_leadgen_changes(notification)
        result = await meta.accept_leadgen_changes(session, source, leadgens, ignored, now=now)
    else:
        notification = meta.load_notification(body, expected_object=whatsapp.WHATSAPP_OBJECT)
        messages, ignored = whatsapp.parse_messages(notification)
        result = await whatsapp.accept_messages(session, source, messages, ignored, now=now)
        statuses = _statuses(body)
        if statuses:  # delivery reports of our messages, for telemetry, in this tenant only
            receipt = await telemetry.receive_for_tenant(
                session, source.tenant_id, statuses, keys=keys_of(request), now=now
            )
            delivery_events = receipt.as_json()
    out: dict[str, Any] = DeliveryOut(
        accepted=result.accepted,
        duplicates=result.duplicates,
        ignored=sum(result.ignored.values()),
        ignored_fields=result.ignored,
        delivery_events=delivery_events,
    ).model_dump(exclude_none=True)
    return JSONResponse(out)


def _statuses(body: bytes) -> tuple[DeliveryEvent, ...]:
    try:
        return parse_whatsapp(body).events
    except MalformedPayload:
        # A status this parser cannot read is still counted as ignored by the capture
        # side above; the message webhook itself was valid.
        return ()


_RECEIVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": DeliveryOut, "description": "Accepted; leads are captured by jobs"},
    400: {**_PROBLEM, "description": "Not JSON, or not this provider's object"},
    401: {**_PROBLEM, "description": "Missing or wrong X-Hub-Signature-256"},
    422: {**_PROBLEM, "description": "The source is not vetted, or blocked"},
}
_VERIFY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}, "description": "The hub.challenge, echoed"},
    403: {**_PROBLEM, "description": "Not a subscription with this source's verify token"},
}


@router.get(
    "/v1/inbound/meta/{source_id}",
    response_class=PlainTextResponse,
    responses=_VERIFY_RESPONSES,
)
async def verify_meta_subscription(
    source_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    mode: HubMode = None,
    verify_token: HubVerifyToken = None,
    challenge: HubChallenge = None,
) -> PlainTextResponse:
    """Meta's verification request for a Lead Ads (`page`) webhook."""
    return await _verify(
        request,
        session,
        source_id,
        Provider.META_LEAD_ADS,
        mode=mode,
        verify_token=verify_token,
        challenge=challenge,
    )


@router.post("/v1/inbound/meta/{source_id}", responses=_RECEIVE_RESPONSES)
async def receive_meta_leadgen(
    source_id: uuid.UUID, request: Request, session: SessionDep
) -> Response:
    """Lead Ads `leadgen` changes, signed with the app secret: one fetch job per new lead."""
    return await _receive(request, session, source_id, Provider.META_LEAD_ADS)


@router.get(
    "/v1/inbound/whatsapp/{source_id}",
    response_class=PlainTextResponse,
    responses=_VERIFY_RESPONSES,
)
async def verify_whatsapp_subscription(
    source_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    mode: HubMode = None,
    verify_token: HubVerifyToken = None,
    challenge: HubChallenge = None,
) -> PlainTextResponse:
    """Meta's verification request for a WhatsApp Cloud API webhook."""
    return await _verify(
        request,
        session,
        source_id,
        Provider.WHATSAPP,
        mode=mode,
        verify_token=verify_token,
        challenge=challenge,
    )


@router.post("/v1/inbound/whatsapp/{source_id}", responses=_RECEIVE_RESPONSES)
async def receive_whatsapp_messages(
    source_id: uuid.UUID, request: Request, session: SessionDep
) -> Response:
    """WhatsApp `messages` changes, signed with the app secret: each new inbound message is
    stored and handed to a job; delivery statuses are ignored (counted)."""
    return await _receive(request, session, source_id, Provider.WHATSAPP)
