"""Tables of drafting and approval: tenant templates, drafts, their revisions (each with the
evidence of every sentence and the SHA-256 of its exact content), and review decisions."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
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


class MessageTemplateRow(TenantOwned, Base):
    """A tenant's own template (the built-in ones live in `drafting.templates`)."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    tone: Mapped[str | None] = mapped_column(String(20))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class DraftStatus(StrEnum):
    DRAFT = "draft"  # written, not yet submitted
    PENDING = "pending"  # waiting for a reviewer
    APPROVED = "approved"  # its current revision is approved (see `approvals`)
    REJECTED = "rejected"
    EXPIRED = "expired"  # pending too long
    SENT = "sent"  # handed to a channel (outreach)


class Draft(TenantOwned, Base):
    __tablename__ = "drafts"
    __table_args__ = (
        Index("ix_drafts_tenant_id_status_created_at", "tenant_id", "status", "created_at"),
    )

    id: Mapped[UUIDPk]
    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(20))
    template: Mapped[str] = mapped_column(String(120))  # "builtin:<id>" or a template's id
    tone: Mapped[str] = mapped_column(String(20))
    length: Mapped[str] = mapped_column(String(20))
    cta: Mapped[str] = mapped_column(String(40))
    first_message: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    origin: Mapped[str] = mapped_column(String(20))  # template | llm
    # Why the LLM draft was not used (off, timeout, rejected span…), for the reviewer.
    llm_note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[DraftStatus] = mapped_column(String(20))
    current_revision: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_by_type: Mapped[str] = mapped_column(String(20))
    created_by_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DraftRevision(TenantOwned, Base):
    __tablename__ = "draft_revisions"
    __table_args__ = (UniqueConstraint("draft_id", "number"),)

    id: Mapped[UUIDPk]
    draft_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("drafts.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    sentences: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    gaps: Mapped[list[str]] = mapped_column(JSONB)
    compliance: Mapped[list[str]] = mapped_column(JSONB)
    diff: Mapped[str | None] = mapped_column(Text)  # unified diff against the previous one
    author_type: Mapped[str] = mapped_column(String(20))
    author_id: Mapped[str | None] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class Approval(TenantOwned, Base):
    """A reviewer's decision on one exact revision. The send guard compares the SHA-256 of
    what is about to leave with `content_sha256` here."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_draft_id_decided_at", "draft_id", "decided_at"),)

    id: Mapped[UUIDPk]
    draft_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("drafts.id", ondelete="CASCADE")
    )
    revision_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("draft_revisions.id", ondelete="CASCADE")
    )
    content_sha256: Mapped[str] = mapped_column(String(64))
    decision: Mapped[Decision] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    reviewer_type: Mapped[str] = mapped_column(String(20))
    reviewer_id: Mapped[str | None] = mapped_column(String(64))
    reviewer: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(200))
