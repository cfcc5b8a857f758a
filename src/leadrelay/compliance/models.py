from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class AuditEvent(TenantOwned, Base):
    """One link of a tenant's hash chain. UPDATE, DELETE and TRUNCATE are refused by triggers.

    `data` holds ids and hashes, never raw PII.
    """

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("tenant_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target_type: Mapped[str | None] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, object]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The last link of each tenant's chain; appends lock this row so links never fork."""

    __tablename__ = "audit_heads"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    # Retention may cut a prefix of the chain; the checkpoint is where verification starts.
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    checkpoint_hash: Mapped[str] = mapped_column(String(64))


class DsarRequest(TenantOwned, Base):
    """A data-subject request (access/export or erasure), from intake to its answer.

    `subject` is the e-mail, phone (E.164) or lead id the person gave; erasure replaces it
    with its keyed hash (`subject_hash`, kept) once done, so the request itself holds nothing
    identifying afterwards. `result` is what was found or purged, counts per table."""

    __tablename__ = "dsar_requests"
    __table_args__ = (Index("ix_dsar_requests_tenant_id_status", "tenant_id", "status"),)

    id: Mapped[UUIDPk]
    kind: Mapped[str] = mapped_column(String(20))  # export | erasure
    status: Mapped[str] = mapped_column(String(20))  # open | completed | rejected | failed
    subject_kind: Mapped[str] = mapped_column(String(10))  # email | phone | lead
    subject: Mapped[str | None] = mapped_column(Text)
    subject_hash: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[CreatedAt]
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the legal deadline
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, object] | None] = mapped_column(JSONB)
    note: Mapped[str | None] = mapped_column(Text)
