"""Messages a lead sent us through a provider (WhatsApp Cloud API today)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class MessageChannel(StrEnum):
    WHATSAPP = "whatsapp"
    SMS = "sms"
    EMAIL = "email"


class MessageDirection(StrEnum):
    INBOUND = "inbound"


class LeadMessage(TenantOwned, Base):
    """One provider message, stored when its webhook is accepted. `lead_id` stays empty until
    the `capture.whatsapp_message` job has created or matched the sender's lead."""

    __tablename__ = "lead_messages"
    __table_args__ = (UniqueConstraint("tenant_id", "provider_message_id"),)

    id: Mapped[UUIDPk]
    lead_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    # The capture source a WhatsApp message arrived through; replies to our outreach that
    # come through a provider's inbound route (SMS, e-mail) have none.
    source_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sources.id", ondelete="RESTRICT")
    )
    # Our outbound message this answers, when known (telemetry.inbound).
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    # reply | opt_out | opt_in | help | auto_reply (telemetry.replies); empty until read.
    classification: Mapped[str | None] = mapped_column(String(20))
    channel: Mapped[MessageChannel] = mapped_column(String(20))
    direction: Mapped[MessageDirection] = mapped_column(String(10))
    provider_message_id: Mapped[str] = mapped_column(String(200))
    message_type: Mapped[str] = mapped_column(String(30))
    body: Mapped[str] = mapped_column(Text, server_default=text("''"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The provider's message object with its contact and metadata, as received.
    raw: Mapped[dict[str, object]] = mapped_column(JSONB)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]
