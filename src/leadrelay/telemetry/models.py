"""What providers told us about each message: delivery events, and those not yet matched."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class DeliveryEventRow(TenantOwned, Base):
    """One provider event about one of our messages, kept whether or not it moved the
    message's state (`applied`): a late `delivered` after `read` is history, not a change."""

    __tablename__ = "delivery_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_key"),
        Index("ix_delivery_events_tenant_id_message_id", "tenant_id", "message_id"),
    )

    # No index of its own (unlike `TenantOwned`'s): both indexes above lead with it, and one
    # index fewer is one write fewer for every event stored.
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    id: Mapped[UUIDPk]
    message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE")
    )
    provider: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))
    provider_event_id: Mapped[str] = mapped_column(String(300))
    # What duplicates are recognized by, unique per tenant: 16 bytes (the MD5 of provider and
    # event id, `telemetry.service.event_key`) where the id may run to 300 characters.
    event_key: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        Computed("md5(provider::text || ':' || provider_event_id::text)::uuid", persisted=True),
    )
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    bounce: Mapped[str | None] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(100))
    applied: Mapped[bool] = mapped_column(Boolean)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB)


class UnmatchedDeliveryEvent(Base):
    """An event for a message we cannot place yet — its provider id is recorded only once
    the provider's answer to the send has been committed, and a fast webhook can overtake
    it. No tenant is known, so this is deployment data: kept until the message turns up
    (`finish_delivery` looks here) or the retention sweep drops it."""

    __tablename__ = "unmatched_delivery_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index("ix_unmatched_delivery_events_provider_message_id", "provider_message_id"),
    )

    id: Mapped[UUIDPk]
    provider: Mapped[str] = mapped_column(String(20))
    provider_event_id: Mapped[str] = mapped_column(String(300))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    our_message_id: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the normalized event, to replay
    received_at: Mapped[CreatedAt]


class LeadFunnel(Base):
    """Each lead's funnel in one row: when it first reached each stage. Kept by statement-level
    triggers on the tables that stand for the stages (migration 0019), so the dashboard
    aggregates one narrow row per lead instead of grouping every table by lead; every path
    that writes a stage — API, job, import, COPY — keeps it, with no code of its own."""

    __tablename__ = "lead_funnel"
    __table_args__ = (
        Index("ix_lead_funnel_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_lead_funnel_tenant_id_sample_key", "tenant_id", "sample_key"),
    )

    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True
    )
    # RLS checks it; no key to the tenant nor index of its own: the row goes with its lead,
    # and the indexes above start with the tenant (migration 0025).
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    source_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    merged: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    rep_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))  # current assignee
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    qualified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    drafted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Sent, delivered and replied, for live messages and dry-run ones apart: the dashboard
    # shows either or both.
    sent_live_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_dry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_live_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_dry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replied_live_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replied_dry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    won_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A hash of the lead id, uniform over 32 bits whatever the ids look like: the funnel reads
    # a large cohort's hours between stages from the leads below a threshold of it, through
    # the index above (`telemetry.funnel.SAMPLE_LEADS`). Never changes, so never costs an
    # index update of its own.
    sample_key: Mapped[int] = mapped_column(Integer, Computed("uuid_hash(lead_id)", persisted=True))
