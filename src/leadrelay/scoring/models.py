"""Tables of scoring: versioned ICP rule sets, the scores they produced, and CRM outcomes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class VersionStatus(StrEnum):
    DRAFT = "draft"  # editable
    ACTIVE = "active"  # immutable; at most one per tenant scores new leads
    RETIRED = "retired"  # was active once; immutable, kept for the scores it produced


class IcpVersion(TenantOwned, Base):
    __tablename__ = "icp_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "number"),
        # One active version per tenant, enforced by the database itself.
        Index(
            "uq_icp_versions_one_active",
            "tenant_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[UUIDPk]
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[VersionStatus] = mapped_column(String(20), server_default=text("'draft'"))
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    threshold: Mapped[int] = mapped_column(Integer, server_default=text("60"))
    note: Mapped[str] = mapped_column(Text, server_default=text("''"))
    based_on_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("icp_versions.id", ondelete="SET NULL")
    )
    # A draft proposed by "suggest weights" keeps its backtest beside the active version.
    suggestion: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activated_by: Mapped[str | None] = mapped_column(String(100))


class LeadScore(TenantOwned, Base):
    """The score one version gave one lead, with its breakdown. Rescoring with the same version
    replaces the row; another version adds its own."""

    __tablename__ = "lead_scores"
    __table_args__ = (
        UniqueConstraint("lead_id", "version_id"),
        Index("ix_lead_scores_version_id_score", "version_id", "score"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE")
    )
    version_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("icp_versions.id", ondelete="CASCADE")
    )
    score: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    qualified: Mapped[bool] = mapped_column(Boolean)
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    matched: Mapped[list[str]] = mapped_column(JSONB)
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When `lead.qualified` was emitted for this lead and version (once only).
    qualified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutcomeLabelColumn(StrEnum):
    WON = "won"
    LOST = "lost"
    DISQUALIFIED = "disqualified"


class LeadOutcome(TenantOwned, Base):
    """A CRM outcome for a lead. (source, external_id) makes every import idempotent."""

    __tablename__ = "lead_outcomes"
    __table_args__ = (UniqueConstraint("tenant_id", "source", "external_id"),)

    id: Mapped[UUIDPk]
    lead_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class CrmConnection(TenantOwned, Base):
    """A tenant's CRM account (HubSpot): token encrypted, custom stage labels, sync cursor."""

    __tablename__ = "crm_connections"
    __table_args__ = (UniqueConstraint("tenant_id", "kind"),)

    id: Mapped[UUIDPk]
    kind: Mapped[str] = mapped_column(String(20))
    base_url: Mapped[str] = mapped_column(String(300))
    token_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    stage_labels: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    synced_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
