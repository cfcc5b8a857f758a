"""Signed inbound webhooks: verify the signature (constant time, timestamp tolerance), refuse
replays, store the delivery and hand it to a job, all before answering 202.

The receiver works in sets: verified deliveries from concurrent requests are stored together
by `IntakeBatcher` (group commit), and each request is answered once its batch committed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import record
from leadrelay.core.db import Database, raw_connection, set_tenant
from leadrelay.core.errors import LeadRelayError, Unauthenticated
from leadrelay.core.jobs import defer
from leadrelay.core.schemas import contains_nul
from leadrelay.core.security import SecretBox
from leadrelay.core.signatures import generate_standard_webhook_secret, verify_standard_webhook
from leadrelay.identity.service import Principal
from leadrelay.inbound.models import InboundEndpoint, InboundProvider, MessageStatus

PROCESS_TASK = "inbound.process"
MAX_DELIVERY_ID = 200  # webhook_receipts.delivery_id


class InvalidSignature(Unauthenticated):
    """The webhook signature is missing, stale or wrong."""

    code = "invalid-signature"


class IntakeBusy(LeadRelayError):
    """The delivery could not be stored right now; retry later."""

    status = 503
    code = "intake-unavailable"
    title = "Service unavailable"


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


@dataclass(frozen=True, slots=True)
class EndpointKey:
    tenant_id: uuid.UUID
    secret: str
    is_active: bool


class EndpointCache:
    """Endpoint tenant and secret by id, kept `ttl` in memory: the receiver's hot path then
    needs no database round trip before it can verify. A deactivated or deleted endpoint is
    refused at most `ttl` later."""

    def __init__(self, box: SecretBox, *, ttl: timedelta = timedelta(seconds=10)) -> None:
        self._box = box
        self._ttl = ttl.total_seconds()
        self._entries: dict[uuid.UUID, tuple[float, EndpointKey | None]] = {}

    async def get(self, db: Database, endpoint_id: uuid.UUID) -> EndpointKey | None:
        now = time.monotonic()
        cached = self._entries.get(endpoint_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        async with db.session() as session:
            row = (
                (
                    await session.execute(
                        text("SELECT * FROM auth_find_inbound_endpoint(:id)"), {"id": endpoint_id}
                    )
                )
                .mappings()
                .first()
            )
        key = (
            EndpointKey(
                row["tenant_id"], self._box.decrypt(row["secret_encrypted"]), row["is_active"]
            )
            if row is not None
            else None
        )
        if len(self._entries) > 10_000:  # unknown ids must not grow it without bound
            self._entries.clear()
        self._entries[endpoint_id] = (now, key)
        return key


@dataclass(frozen=True, slots=True)
class VerifiedDelivery:
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    delivery_id: str
    payload: dict[str, Any]
    # The body as received (already proven to parse to `payload`): stored as is, so the batch
    # does not serialize every payload again.
    raw: str = ""


def verify_delivery(
    key: EndpointKey | None,
    *,
    endpoint_id: uuid.UUID,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta,
) -> VerifiedDelivery:
    """Check the Standard Webhooks signature and the body. Unknown endpoint and bad signature
    look the same to the caller."""
    msg_id = headers.get("webhook-id", "")
    if key is None or not key.is_active or not msg_id or len(msg_id) > MAX_DELIVERY_ID:
        raise InvalidSignature()
    valid = verify_standard_webhook(
        secrets=[key.secret],
        msg_id=msg_id,
        timestamp=headers.get("webhook-timestamp", ""),
        payload=body,
        signature_header=headers.get("webhook-signature", ""),
        now=now,
        tolerance=tolerance,
    )
    if not valid:
        raise InvalidSignature()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise InvalidPayload()
    if contains_nul(payload):  # PostgreSQL's jsonb cannot hold it
        raise InvalidPayload("the JSON body must not contain NUL (\\u0000) characters")
    return VerifiedDelivery(key.tenant_id, endpoint_id, msg_id, payload, body.decode())


# Constant statements over arrays: prepared once per connection, whatever the batch size.
_REMEMBER = (
    "INSERT INTO webhook_receipts (provider, delivery_id) "
    "SELECT * FROM unnest(%b::text[], %b::text[]) "
    "ON CONFLICT DO NOTHING RETURNING provider, delivery_id"
)
_STORE = (
    "INSERT INTO inbound_messages (id, tenant_id, endpoint_id, delivery_id, payload, status) "
    "SELECT id, %s, endpoint_id, delivery_id, payload, %s "
    "FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::text[]::jsonb[]) "
    "AS t(id, endpoint_id, delivery_id, payload)"
)


async def store_deliveries(
    session: AsyncSession, deliveries: Sequence[VerifiedDelivery]
) -> list[uuid.UUID | None]:
    """Store a batch (any tenants) in the caller's transaction: per tenant, one receipt insert,
    one message insert and one job. Returns each delivery's message id, or None for a replay
    (a delivery id seen before, in an earlier batch or earlier in this one)."""
    results: dict[int, uuid.UUID | None] = {}
    by_tenant: dict[uuid.UUID, list[int]] = {}
    for index, delivery in enumerate(deliveries):
        by_tenant.setdefault(delivery.tenant_id, []).append(index)
    connection = await raw_connection(session)
    for tenant_id, indexes in by_tenant.items():
        await set_tenant(session, tenant_id)
        receipts: dict[tuple[str, str], int] = {}
        for i in reversed(indexes):  # the first of two equal ids in a batch wins
            receipts[(f"inbound:{deliveries[i].endpoint_id.hex}", deliveries[i].delivery_id)] = i
        async with connection.cursor() as cursor:
            await cursor.execute(_REMEMBER, ([p for p, _ in receipts], [d for _, d in receipts]))
            new_indexes = sorted(receipts[(p, d)] for p, d in await cursor.fetchall())
            if not new_indexes:
                continue
            ids = [uuid.uuid4() for _ in new_indexes]  # known before the insert: no RETURNING
            await cursor.execute(
                _STORE,
                (
                    tenant_id,
                    MessageStatus.RECEIVED.value,
                    ids,
                    [deliveries[i].endpoint_id for i in new_indexes],
                    [deliveries[i].delivery_id for i in new_indexes],
                    [deliveries[i].raw or json.dumps(deliveries[i].payload) for i in new_indexes],
                ),
            )
        results.update(zip(new_indexes, ids, strict=True))
        await defer(
            session,
            PROCESS_TASK,
            tenant_id=str(tenant_id),
            message_ids=[str(message_id) for message_id in ids],
        )
    return [results.get(i) for i in range(len(deliveries))]
