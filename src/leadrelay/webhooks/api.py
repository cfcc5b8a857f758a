from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, status
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from leadrelay.core.clock import utcnow
from leadrelay.core.schemas import Input
from leadrelay.core.security import SecretBox
from leadrelay.identity.deps import CanManageWebhooks, CanReadWebhooks, SessionDep
from leadrelay.webhooks import service
from leadrelay.webhooks.models import DeliveryStatus

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])


class EndpointCreate(Input):
    url: AnyHttpUrl
    event_types: list[str] = Field(default_factory=list, max_length=100)
    description: str = Field(default="", max_length=200)


class EndpointUpdate(Input):
    url: AnyHttpUrl | None = None
    event_types: list[str] | None = Field(default=None, max_length=100)
    is_active: bool | None = None


class EndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    is_active: bool
    created_at: datetime
    previous_secret_expires_at: datetime | None


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_…).")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: datetime


def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_endpoint(
    body: EndpointCreate, request: Request, session: SessionDep, actor: CanManageWebhooks
) -> EndpointWithSecret:
    endpoint, secret = await service.create_endpoint(
        session,
        actor,
        _box(request),
        url=str(body.url),
        event_types=body.event_types,
        description=body.description,
        now=utcnow(),
    )
    return EndpointWithSecret(**EndpointOut.model_validate(endpoint).model_dump(), secret=secret)


@router.get("")
async def list_endpoints(session: SessionDep, _: CanReadWebhooks) -> list[EndpointOut]:
    return [EndpointOut.model_validate(e) for e in await service.list_endpoints(session)]


@router.get("/{endpoint_id}")
async def get_endpoint(
    endpoint_id: uuid.UUID, session: SessionDep, actor: CanReadWebhooks
) -> EndpointOut:
    return EndpointOut.model_validate(await service.access_endpoint(session, actor, endpoint_id))


@router.patch("/{endpoint_id}")
async def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointUpdate, session: SessionDep, actor: CanManageWebhooks
) -> EndpointOut:
    endpoint = await service.update_endpoint(
        session,
        actor,
        endpoint_id,
        url=str(body.url) if body.url else None,
        event_types=body.event_types,
        is_active=body.is_active,
        now=utcnow(),
    )
    return EndpointOut.model_validate(endpoint)


@router.get("/{endpoint_id}/secret")
async def reveal_secret(
    endpoint_id: uuid.UUID, request: Request, session: SessionDep, actor: CanManageWebhooks
) -> EndpointWithSecret:
    """The secret that signs now (after a rotation, the new one)."""
    endpoint = await service.access_endpoint(session, actor, endpoint_id)
    secret = _box(request).decrypt(endpoint.secret_encrypted)
    return EndpointWithSecret(**EndpointOut.model_validate(endpoint).model_dump(), secret=secret)


@router.post("/{endpoint_id}/rotate-secret")
async def rotate_secret(
    endpoint_id: uuid.UUID, request: Request, session: SessionDep, actor: CanManageWebhooks
) -> EndpointWithSecret:
    hours = request.app.state.settings.secret_rotation_overlap_hours
    endpoint, secret = await service.rotate_secret(
        session, actor, _box(request), endpoint_id, overlap=timedelta(hours=hours), now=utcnow()
    )
    return EndpointWithSecret(**EndpointOut.model_validate(endpoint).model_dump(), secret=secret)


@router.get("/{endpoint_id}/deliveries")
async def list_deliveries(
    endpoint_id: uuid.UUID, session: SessionDep, actor: CanReadWebhooks
) -> list[DeliveryOut]:
    await service.access_endpoint(session, actor, endpoint_id)
    deliveries = await service.list_deliveries(session, endpoint_id=endpoint_id)
    return [DeliveryOut.model_validate(d) for d in deliveries]


@router.get("/{endpoint_id}/deliveries/{delivery_id}/attempts")
async def list_delivery_attempts(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, session: SessionDep, actor: CanReadWebhooks
) -> list[AttemptOut]:
    """The delivery log: every HTTP attempt with the endpoint's answer and its duration."""
    attempts = await service.list_attempts(session, actor, endpoint_id, delivery_id)
    return [AttemptOut.model_validate(a) for a in attempts]
