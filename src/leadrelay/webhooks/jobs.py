"""Delivery of outbound webhooks on their own retry schedule (RETRY_SCHEDULE), ending in a
dead letter: a failed delivery is never dropped."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.core.clock import utcnow
from leadrelay.core.events import OutboxEvent
from leadrelay.core.jobs import add_dead_letter, defer, job_app, replay_hook, runtime
from leadrelay.core.logging import get_logger
from leadrelay.core.security import SecretBox
from leadrelay.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)
from leadrelay.webhooks.service import (
    DELIVER_TASK,
    MAX_ATTEMPTS,
    RETRY_SCHEDULE,
    SignedRequest,
    build_request,
    is_private_target,
)

log = get_logger("leadrelay.webhooks")
DONE = {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED}


async def _send(request: SignedRequest, *, timeout_seconds: float) -> tuple[int | None, str | None]:
    client: httpx.AsyncClient | None = runtime().extras.get("http_client")
    try:
        if client is None:
            async with httpx.AsyncClient() as own:
                response = await own.post(
                    request.url,
                    content=request.body,
                    headers=request.headers,
                    timeout=timeout_seconds,
                )
        else:
            response = await client.post(
                request.url, content=request.body, headers=request.headers, timeout=timeout_seconds
            )
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:1000]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:500]}"


@job_app.task(name=DELIVER_TASK, retry=False)
async def deliver(*, tenant_id: str, delivery_id: str, correlation_id: str | None = None) -> None:
    rt = runtime()
    box: SecretBox = rt.extras["secret_box"]
    tenant, delivery_key = uuid.UUID(tenant_id), uuid.UUID(delivery_id)
    # Read and sign in one short transaction; the HTTP call holds no database connection.
    async with rt.db.session(tenant) as session:
        delivery = await session.get(WebhookDelivery, delivery_key)
        if delivery is None or delivery.status in DONE:
            return
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
        event = await session.get(OutboxEvent, delivery.event_id)
        if endpoint is None or event is None:  # deleted meanwhile: nothing left to deliver
            return
        if not endpoint.is_active:
            # The tenant switched the endpoint off: stop, visibly, without a dead letter.
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            delivery.last_error = "cancelled: the endpoint was deactivated"
            return
        request = build_request(endpoint, event, box, now=utcnow())
    status_code: int | None
    error: str | None
    started = time.perf_counter()
    if not rt.settings.webhook_allow_private_targets and await is_private_target(request.url):
        status_code, error = None, "refused: the endpoint resolves to a private address"
    else:
        status_code, error = await _send(
            request, timeout_seconds=rt.settings.webhook_timeout_seconds
        )
    duration_ms = round((time.perf_counter() - started) * 1000)

    now = utcnow()
    async with rt.db.session(tenant) as session:
        delivery = await session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.id == delivery_key).with_for_update()
        )
        if delivery is None or delivery.status in DONE:
            return
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.last_error = error
        session.add(
            WebhookDeliveryAttempt(
                tenant_id=delivery.tenant_id,
                delivery_id=delivery.id,
                attempt=delivery.attempts,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
                attempted_at=now,
            )
        )
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                DeliveryStatus.DELIVERED,
                now,
                None,
            )
        elif delivery.attempts < MAX_ATTEMPTS:
            wait = RETRY_SCHEDULE[delivery.attempts - 1]
            delivery.status = DeliveryStatus.RETRYING
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            await defer(
                session,
                DELIVER_TASK,
                schedule_in_seconds=wait,
                tenant_id=tenant_id,
                delivery_id=delivery_id,
            )
        else:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            add_dead_letter(
                session,
                task_name=DELIVER_TASK,
                payload={"tenant_id": tenant_id, "delivery_id": delivery_id},
                error=error,
                attempts=delivery.attempts,
            )
        log.info(
            "webhook.delivery",
            delivery_id=delivery_id,
            status=str(delivery.status),
            attempt=delivery.attempts,
            status_code=status_code,
        )


@replay_hook(DELIVER_TASK)
async def reset_for_replay(session: AsyncSession, payload: dict[str, Any]) -> None:
    """A replayed dead delivery starts a fresh schedule."""
    delivery = await session.get(WebhookDelivery, uuid.UUID(str(payload["delivery_id"])))
    if delivery is not None and delivery.status == DeliveryStatus.FAILED:
        delivery.status, delivery.attempts = DeliveryStatus.PENDING, 0
