"""Tables of routing: teams and reps (hours, time off, capacity, skills, territories), ordered
routing rules, and assignments with the trace of the decision that made them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class Team(TenantOwned, Base):
    __tablename__ = "teams"

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(20), server_default=text("'round_robin'"))
    fallback_team_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("teams.id", ondelete="SET NULL")
    )
    required_skills: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), server_default=text("'{}'"), nullable=False
    )
    # First-touch SLA: minutes from assignment to the rep's first contact; None = no SLA.
    sla_minutes: Mapped[int | None] = mapped_column(Integer)
    sla_reassign: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    manager_user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    # The round-robin cursor: bumped under this row's lock, copied to the chosen rep.
    assign_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[CreatedAt]


class Rep(TenantOwned, Base):
    __tablename__ = "reps"

    id: Mapped[UUIDPk]
    team_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    skills: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), server_default=text("'{}'"), nullable=False
    )
    territories: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), server_default=text("'{}'"), nullable=False
    )
    capacity: Mapped[int] = mapped_column(Integer, server_default=text("50"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    weight: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # {"mon": [["09:00", "17:00"]], …} in the rep's time zone; null = always available.
    working_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    last_assigned_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    assigned_total: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Leads assigned and not closed: kept by every path that opens or ends an assignment
    # (relative updates only), so capacity checks read one row per rep, not every assignment.
    open_leads: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[CreatedAt]


class TimeOff(TenantOwned, Base):
    __tablename__ = "rep_time_off"

    id: Mapped[UUIDPk]
    rep_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("reps.id", ondelete="CASCADE"), index=True
    )
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(String(200), server_default=text("''"))


class RoutingRuleRow(TenantOwned, Base):
    __tablename__ = "routing_rules"

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    when: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    team_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("teams.id", ondelete="CASCADE")
    )
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[CreatedAt]


class AssignmentStatus(StrEnum):
    ASSIGNED = "assigned"  # a rep owns the lead
    QUEUED = "queued"  # no rule or rep could take it: the work queue, with the reason
    REASSIGNED = "reassigned"  # superseded by a later assignment (kept for history)


class Assignment(TenantOwned, Base):
    __tablename__ = "lead_assignments"
    __table_args__ = (
        # A lead has one current assignment (or queue entry) at a time.
        Index(
            "uq_lead_assignments_current",
            "lead_id",
            unique=True,
            postgresql_where=text("status <> 'reassigned'"),
        ),
        Index("ix_lead_assignments_rep_id_status", "rep_id", "status"),
        Index(
            "ix_lead_assignments_sla_due_at",
            "sla_due_at",
            postgresql_where=text(
                "status = 'assigned' AND first_touch_at IS NULL AND breached_at IS NULL"
            ),
        ),
    )

    id: Mapped[UUIDPk]
    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[AssignmentStatus] = mapped_column(String(20))
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("teams.id", ondelete="SET NULL")
    )
    rep_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("reps.id", ondelete="SET NULL")
    )
    rule_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("routing_rules.id", ondelete="SET NULL")
    )
    reason: Mapped[str | None] = mapped_column(String(50))
    trace: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sla_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_touch_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
