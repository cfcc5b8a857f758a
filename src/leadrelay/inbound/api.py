from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from leadrelay.core.clock import utcnow
from leadrelay.core.schemas import Input
from leadrelay.identity.deps import CanManageWebhooks, CanReadWebhooks, SessionDep
from leadrelay.inbound import service

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


@router.post(
    "/v1/inbound/{endpoint_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": Accepted, "description": "Replay of a delivery already accepted"}},
)
async def receive_webhook(
    endpoint_id: uuid.UUID, request: Request, session: SessionDep
) -> JSONResponse:
    """Signed per the Standard Webhooks spec (webhook-id, webhook-timestamp, webhook-signature).
    Stored, then processed by a job; a replayed webhook-id is answered 200 and not processed."""
    settings = request.app.state.settings
    message, is_new = await service.receive(
        session,
        request.app.state.secret_box,
        endpoint_id=endpoint_id,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
        now=utcnow(),
        tolerance=timedelta(seconds=settings.webhook_tolerance_seconds),
    )
    if not is_new or message is None:
        return JSONResponse({"id": None, "status": "duplicate"}, status_code=200)
    return JSONResponse({"id": str(message.id), "status": "accepted"}, status_code=202)
