from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class InboundProvider(StrEnum):
    STANDARD_WEBHOOKS = "standard_webhooks"


class InboundEndpoint(TenantOwned, Base):
    """A signed inbound webhook address: POST /v1/inbound/{id}, verified with its secret."""

    __tablename__ = "inbound_endpoints"

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[InboundProvider] = mapped_column(String(40))
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[CreatedAt]


class MessageStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"


class InboundMessage(TenantOwned, Base):
    """A verified delivery, stored before it is answered (202) and processed by a job."""

    __tablename__ = "inbound_messages"

    id: Mapped[UUIDPk]
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("inbound_endpoints.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, object]] = mapped_column(JSONB)
    status: Mapped[MessageStatus] = mapped_column(String(20))
    received_at: Mapped[CreatedAt]
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
