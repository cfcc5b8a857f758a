"""Outbound webhooks: tenant endpoints, secrets encrypted at rest and rotated with an overlap
window, one delivery per (event, endpoint), signed per the Standard Webhooks spec."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import record
from leadrelay.core.errors import NotFound, ValidationFailed
from leadrelay.core.events import OutboxEvent, on_event
from leadrelay.core.jobs import defer
from leadrelay.core.security import SecretBox
from leadrelay.core.signatures import generate_standard_webhook_secret, sign_standard_webhook
from leadrelay.identity.service import Principal
from leadrelay.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)

DELIVER_TASK = "webhooks.deliver"
# Seconds before each retry: seconds, then minutes, then hours, about a day in all (≈ 25.5 h).
RETRY_SCHEDULE: tuple[int, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 36000)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1


class EndpointNotFound(NotFound):
    """The webhook endpoint does not exist."""


class DeliveryNotFound(NotFound):
    """The webhook delivery does not exist."""


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed(
            "the endpoint URL must be an absolute http(s) URL",
            errors=[{"field": "url", "message": "expected http:// or https:// with a host"}],
        )
    return url


async def is_private_target(url: str) -> bool:
    """True when the host resolves to a loopback, private, link-local or reserved address
    (server-side request forgery guard)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return True
    return False


async def create_endpoint(
    session: AsyncSession,
    actor: Principal,
    box: SecretBox,
    *,
    url: str,
    event_types: list[str],
    description: str,
    now: datetime,
) -> tuple[WebhookEndpoint, str]:
    secret = generate_standard_webhook_secret()
    endpoint = WebhookEndpoint(
        tenant_id=actor.tenant_id,
        url=check_url(url),
        event_types=sorted(set(event_types)),
        description=description,
        secret_encrypted=box.encrypt(secret),
    )
    session.add(endpoint)
    await session.flush()
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "webhook_endpoint.created", target_type="webhook_endpoint", target_id=endpoint.id
        ),
        now=now,
    )
    return endpoint, secret


async def list_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    return list(await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))


async def access_endpoint(
    session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.tenant_id != actor.tenant_id:
        raise EndpointNotFound()
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    actor: Principal,
    endpoint_id: uuid.UUID,
    *,
    url: str | None,
    event_types: list[str] | None,
    is_active: bool | None,
    now: datetime,
) -> WebhookEndpoint:
    endpoint = await access_endpoint(session, actor, endpoint_id)
    if url is not None:
        endpoint.url = check_url(url)
    if event_types is not None:
        endpoint.event_types = sorted(set(event_types))
    if is_active is not None:
        endpoint.is_active = is_active
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "webhook_endpoint.updated", target_type="webhook_endpoint", target_id=endpoint.id
        ),
        now=now,
    )
    return endpoint


async def rotate_secret(
    session: AsyncSession,
    actor: Principal,
    box: SecretBox,
    endpoint_id: uuid.UUID,
    *,
    overlap: timedelta,
    now: datetime,
) -> tuple[WebhookEndpoint, str]:
    """A new signing secret; the old one keeps signing too until `now + overlap`."""
    endpoint = await access_endpoint(session, actor, endpoint_id)
    secret = generate_standard_webhook_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + overlap
    endpoint.secret_encrypted = box.encrypt(secret)
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "webhook_endpoint.secret_rotated",
            target_type="webhook_endpoint",
            target_id=endpoint.id,
            overlap_seconds=int(overlap.total_seconds()),
        ),
        now=now,
    )
    return endpoint, secret


def signing_secrets(endpoint: WebhookEndpoint, box: SecretBox, *, now: datetime) -> list[str]:
    secrets = [box.decrypt(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted is not None
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        secrets.append(box.decrypt(endpoint.previous_secret_encrypted))
    return secrets


def wants(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return endpoint.is_active and (not endpoint.event_types or event_type in endpoint.event_types)


@on_event("*")
async def fan_out(session: AsyncSession, event: OutboxEvent) -> None:
    """One delivery per interested endpoint, each delivered by its own job."""
    # One look-up per transaction: a dispatch of a thousand events reads the endpoints once.
    endpoints = session.info.get("webhook_endpoints")
    if endpoints is None:
        endpoints = session.info["webhook_endpoints"] = await list_endpoints(session)
    interested = [e for e in endpoints if wants(e, event.type)]
    if not interested:
        return
    existing = set(
        await session.scalars(
            select(WebhookDelivery.endpoint_id).where(WebhookDelivery.event_id == event.id)
        )
    )
    for endpoint in interested:
        if endpoint.id in existing:
            continue
        delivery = WebhookDelivery(
            tenant_id=event.tenant_id,
            endpoint_id=endpoint.id,
            event_id=event.id,
            status=DeliveryStatus.PENDING,
        )
        session.add(delivery)
        await session.flush()
        await defer(
            session, DELIVER_TASK, tenant_id=str(event.tenant_id), delivery_id=str(delivery.id)
        )


@dataclass(frozen=True, slots=True)
class SignedRequest:
    url: str
    body: bytes
    headers: dict[str, str]


def build_request(
    endpoint: WebhookEndpoint, event: OutboxEvent, box: SecretBox, *, now: datetime
) -> SignedRequest:
    body = json.dumps(
        {
            "type": event.type,
            "timestamp": event.created_at.isoformat(),
            "data": event.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    timestamp = int(now.timestamp())
    msg_id = f"msg_{event.id.hex}"
    signatures = [
        sign_standard_webhook(secret=s, msg_id=msg_id, timestamp=timestamp, payload=body)
        for s in signing_secrets(endpoint, box, now=now)
    ]
    headers = {
        "content-type": "application/json",
        "user-agent": "LeadRelay-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
    return SignedRequest(url=endpoint.url, body=body, headers=headers)


async def list_deliveries(
    session: AsyncSession, *, endpoint_id: uuid.UUID | None = None, limit: int = 100
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc()).limit(limit)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    return list(await session.scalars(query))


async def list_attempts(
    session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> list[WebhookDeliveryAttempt]:
    await access_endpoint(session, actor, endpoint_id)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint_id:
        raise DeliveryNotFound()
    return list(
        await session.scalars(
            select(WebhookDeliveryAttempt)
            .where(WebhookDeliveryAttempt.delivery_id == delivery_id)
            .order_by(WebhookDeliveryAttempt.attempt)
        )
    )
