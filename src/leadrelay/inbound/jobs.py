from __future__ import annotations

import uuid

from sqlalchemy import select

from leadrelay.core.clock import utcnow
from leadrelay.core.events import emit_many
from leadrelay.core.jobs import job_app, retry_strategy, runtime
from leadrelay.inbound.models import InboundMessage, MessageStatus
from leadrelay.inbound.service import PROCESS_TASK


@job_app.task(name=PROCESS_TASK, retry=retry_strategy())
async def process_messages(
    *, tenant_id: str, message_ids: list[str], correlation_id: str | None = None
) -> None:
    """Hand stored deliveries (one intake batch of one tenant) to the rest of the platform as
    `inbound.received` events. Capture turns provider payloads into leads by subscribing to
    it. Idempotent: processed messages are skipped."""
    async with runtime().db.session(uuid.UUID(tenant_id)) as session:
        messages = await session.scalars(
            select(InboundMessage)
            .where(
                InboundMessage.id.in_([uuid.UUID(m) for m in message_ids]),
                InboundMessage.status == MessageStatus.RECEIVED,
            )
            .with_for_update(skip_locked=True)
        )
        now = utcnow()
        events = []
        for message in messages:
            events.append(
                (
                    "inbound.received",
                    {"message_id": str(message.id), "endpoint_id": str(message.endpoint_id)},
                )
            )
            message.status, message.processed_at = MessageStatus.PROCESSED, now
        await emit_many(session, uuid.UUID(tenant_id), events)
