from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from leadrelay.core.clock import utcnow
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import CanManageWebhooks, CanReadWebhooks, SessionDep
from leadrelay.inbound import service
from leadrelay.inbound.batcher import IntakeBatcher, IntakeUnavailable

router = APIRouter(tags=["inbound webhooks"])


class InboundEndpointCreate(Input):
    name: str = Field(min_length=1, max_length=200)


class InboundEndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    provider: str
    is_active: bool
    created_at: datetime


class InboundEndpointWithSecret(InboundEndpointOut):
    secret: str = Field(description="Signing secret (whsec_…), shown once.")
    url: str


class Accepted(BaseModel):
    id: uuid.UUID | None
    status: str


@router.post("/v1/inbound-endpoints", status_code=status.HTTP_201_CREATED)
async def create_inbound_endpoint(
    body: InboundEndpointCreate, request: Request, session: SessionDep, actor: CanManageWebhooks
) -> InboundEndpointWithSecret:
    endpoint, secret = await service.create_endpoint(
        session, actor, request.app.state.secret_box, name=body.name, now=utcnow()
    )
    url = f"{request.app.state.settings.public_url}/v1/inbound/{endpoint.id}"
    out = InboundEndpointOut.model_validate(endpoint)
    return InboundEndpointWithSecret(**out.model_dump(), secret=secret, url=url)


@router.get("/v1/inbound-endpoints")
async def list_inbound_endpoints(
    session: SessionDep, _: CanReadWebhooks
) -> list[InboundEndpointOut]:
    return [InboundEndpointOut.model_validate(e) for e in await service.list_endpoints(session)]


@dataclass
class Intake:
    """Per-app receiver state: the endpoint cache and the group-commit batcher."""

    cache: service.EndpointCache
    batcher: IntakeBatcher


def intake_of(state: Any) -> Intake:
    intake: Intake | None = getattr(state, "intake", None)
    if intake is None:
        intake = Intake(service.EndpointCache(state.secret_box), IntakeBatcher(state.db))
        state.intake = intake
    return intake


async def handle_delivery(
    state: Any, endpoint_id: uuid.UUID, headers: Mapping[str, str], body: bytes
) -> tuple[int, bytes]:
    """Verify, store (group commit) and answer one delivery: (status, JSON body). Raises the
    domain errors (bad signature, bad payload, intake unavailable)."""
    intake = intake_of(state)
    key = await intake.cache.get(state.db, endpoint_id)
    delivery = service.verify_delivery(
        key,
        endpoint_id=endpoint_id,
        headers=headers,
        body=body,
        now=utcnow(),
        tolerance=timedelta(seconds=state.settings.webhook_tolerance_seconds),
    )
    try:
        message_id = await intake.batcher.submit(delivery)
    except IntakeUnavailable:
        raise service.IntakeBusy() from None
    if message_id is None:
        return 200, b'{"id":null,"status":"duplicate"}'
    return 202, b'{"id":"%s","status":"accepted"}' % str(message_id).encode()


@router.post(
    "/v1/inbound/{endpoint_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": Accepted, "description": "Replay of a delivery already accepted"},
        202: {"model": Accepted, "description": "Stored; processed by a job"},
    },
)
async def receive_webhook(endpoint_id: uuid.UUID, request: Request) -> Response:
    """Signed per the Standard Webhooks spec (webhook-id, webhook-timestamp, webhook-signature).
    Stored durably before the answer, then processed by a job; a replayed webhook-id is
    answered 200 and not processed again. (Served by `InboundFastPath` ahead of the router;
    this route documents it and serves it when the fast path is off.)"""
    code, body = await handle_delivery(
        request.app.state, endpoint_id, request.headers, await request.body()
    )
    return Response(body, code, media_type="application/json")
