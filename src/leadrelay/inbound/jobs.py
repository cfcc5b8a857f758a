from __future__ import annotations

import uuid

from sqlalchemy import select

from leadrelay.core.clock import utcnow
from leadrelay.core.events import emit
from leadrelay.core.jobs import job_app, retry_strategy, runtime
from leadrelay.inbound.models import InboundMessage, MessageStatus
from leadrelay.inbound.service import PROCESS_TASK


@job_app.task(name=PROCESS_TASK, retry=retry_strategy())
async def process_message(
    *, tenant_id: str, message_id: str, correlation_id: str | None = None
) -> None:
    """Hand a stored delivery to the rest of the platform as an `inbound.received` event.
    (Capture turns provider payloads into leads by subscribing to it.)"""
    async with runtime().db.session(uuid.UUID(tenant_id)) as session:
        message = await session.scalar(
            select(InboundMessage)
            .where(InboundMessage.id == uuid.UUID(message_id))
            .with_for_update()
        )
        if message is None or message.status == MessageStatus.PROCESSED:
            return
        await emit(
            session,
            message.tenant_id,
            "inbound.received",
            {"message_id": str(message.id), "endpoint_id": str(message.endpoint_id)},
        )
        message.status, message.processed_at = MessageStatus.PROCESSED, utcnow()
