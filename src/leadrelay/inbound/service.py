"""Signed inbound webhooks: verify the signature (constant time, timestamp tolerance), refuse
replays, store the delivery and hand it to a job, all before answering 202."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import record
from leadrelay.core.db import set_tenant
from leadrelay.core.errors import LeadRelayError, Unauthenticated
from leadrelay.core.jobs import defer
from leadrelay.core.replay import remember_delivery
from leadrelay.core.security import SecretBox
from leadrelay.core.signatures import generate_standard_webhook_secret, verify_standard_webhook
from leadrelay.identity.service import Principal
from leadrelay.inbound.models import InboundEndpoint, InboundMessage, InboundProvider, MessageStatus

PROCESS_TASK = "inbound.process"
MAX_DELIVERY_ID = 200  # webhook_receipts.delivery_id


class InvalidSignature(Unauthenticated):
    """The webhook signature is missing, stale or wrong."""

    code = "invalid-signature"


class InvalidPayload(LeadRelayError):
    """The webhook body must be a JSON object."""

    code = "invalid-payload"


async def create_endpoint(
    session: AsyncSession, actor: Principal, box: SecretBox, *, name: str, now: datetime
) -> tuple[InboundEndpoint, str]:
    secret = generate_standard_webhook_secret()
    endpoint = InboundEndpoint(
        tenant_id=actor.tenant_id,
        name=name,
        provider=InboundProvider.STANDARD_WEBHOOKS,
        secret_encrypted=box.encrypt(secret),
    )
    session.add(endpoint)
    await session.flush()
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "inbound_endpoint.created", target_type="inbound_endpoint", target_id=endpoint.id
        ),
        now=now,
    )
    return endpoint, secret


async def list_endpoints(session: AsyncSession) -> list[InboundEndpoint]:
    return list(await session.scalars(select(InboundEndpoint).order_by(InboundEndpoint.created_at)))


async def receive(
    session: AsyncSession,
    box: SecretBox,
    *,
    endpoint_id: uuid.UUID,
    headers: dict[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta,
) -> tuple[InboundMessage | None, bool]:
    """Verify and store one delivery; returns (message, is_new). A replayed delivery id returns
    (None, False) and stores nothing. Unknown endpoint and bad signature look the same."""
    row = (
        (
            await session.execute(
                text("SELECT * FROM auth_find_inbound_endpoint(:id)"), {"id": endpoint_id}
            )
        )
        .mappings()
        .first()
    )
    msg_id = headers.get("webhook-id", "")
    if row is None or not row["is_active"]:
        raise InvalidSignature()
    valid = verify_standard_webhook(
        secrets=[box.decrypt(row["secret_encrypted"])],
        msg_id=msg_id,
        timestamp=headers.get("webhook-timestamp", ""),
        payload=body,
        signature_header=headers.get("webhook-signature", ""),
        now=now,
        tolerance=tolerance,
    )
    if not valid or not msg_id or len(msg_id) > MAX_DELIVERY_ID:
        raise InvalidSignature()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise InvalidPayload()
    tenant_id: uuid.UUID = row["tenant_id"]
    await set_tenant(session, tenant_id)
    if not await remember_delivery(
        session, provider=f"inbound:{endpoint_id.hex}", delivery_id=msg_id
    ):
        return None, False
    message = InboundMessage(
        tenant_id=tenant_id,
        endpoint_id=endpoint_id,
        delivery_id=msg_id,
        payload=payload,
        status=MessageStatus.RECEIVED,
    )
    session.add(message)
    await session.flush()
    await defer(session, PROCESS_TASK, tenant_id=str(tenant_id), message_id=str(message.id))
    return message, True
