"""Tables of fuzzy deduplication: undoable merges and the review queue, plus the pg_trgm
blocking indexes on leads (migrations 0007, 0009)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.capture.models import Lead
from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk

Index("ix_leads_tenant_id_domain", Lead.tenant_id, Lead.domain)
# Nearest-neighbour probes on company names (migration 0009 explains why GiST, not GIN).
Index(
    "ix_leads_company_key_knn",
    Lead.company_key,
    postgresql_using="gist",
    postgresql_ops={"company_key": "gist_trgm_ops"},
)
Index(
    "ix_leads_company_key_knn_no_domain",
    Lead.company_key,
    postgresql_using="gist",
    postgresql_ops={"company_key": "gist_trgm_ops"},
    postgresql_where=text("domain IS NULL"),
)


class LeadMerge(TenantOwned, Base):
    """One merge, with what it changed, so that it can be undone."""

    __tablename__ = "lead_merges"

    id: Mapped[UUIDPk]
    survivor_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    merged_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    score: Mapped[float | None] = mapped_column()
    reason: Mapped[str] = mapped_column(String(30))  # auto | review | manual
    # {"filled": {field: value}, "children": [ids re-pointed], "contributions": [...]}
    changes: Mapped[dict[str, object]] = mapped_column(JSONB)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReviewStatus(StrEnum):
    OPEN = "open"
    MERGED = "merged"
    KEPT_APART = "kept_apart"


class MatchReview(TenantOwned, Base):
    """A likely duplicate pair between the thresholds, waiting for a person."""

    __tablename__ = "match_reviews"
    __table_args__ = (UniqueConstraint("tenant_id", "lead_a_id", "lead_b_id"),)

    id: Mapped[UUIDPk]
    lead_a_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE")
    )
    lead_b_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE")
    )
    score: Mapped[float] = mapped_column()
    contributions: Mapped[list[dict[str, object]]] = mapped_column(JSONB)
    status: Mapped[ReviewStatus] = mapped_column(String(20), server_default=text("'open'"))
    created_at: Mapped[CreatedAt]
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(64))
