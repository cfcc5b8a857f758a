"""Tables of outreach: every message (persisted before any provider call, with its policy trace),
the suppression and do-not-call lists (keyed hashes: they outlive erasure), and consent records.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class MessageStatus(StrEnum):
    QUEUED = "queued"  # persisted, guard passed, waiting for its delivery job
    BLOCKED = "blocked"  # the policy guard refused it (`blocked_by`, trace)
    DEFERRED = "deferred"  # a check that clears by itself (cap, window): tried again at retry_at
    SENDING = "sending"  # handed to the channel (a crash here is resolved by the idempotency key)
    SENT = "sent"  # accepted by the provider (or recorded by the dry-run channel)
    FAILED = "failed"  # permanent error, or transient ones past the last attempt


class MessageKind(StrEnum):
    ONE_TO_ONE = "one_to_one"
    CAMPAIGN = "campaign"
    TRANSACTIONAL = "transactional"
    TEST = "test"


class Message(TenantOwned, Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_messages_tenant_id_channel_counted_at", "tenant_id", "channel", "counted_at"),
        Index(
            "ix_messages_tenant_id_recipient_domain_counted_at",
            "tenant_id",
            "recipient_domain",
            "counted_at",
        ),
        Index("ix_messages_tenant_id_lead_id_counted_at", "tenant_id", "lead_id", "counted_at"),
        Index("ix_messages_tenant_id_status_retry_at", "tenant_id", "status", "retry_at"),
        # Provider events name the message by the provider's id, before any tenant is known.
        Index("ix_messages_provider_message_id", "provider_message_id"),
        # An inbound reply names only its sender: the latest message we sent them.
        Index("ix_messages_recipient_created_at", "recipient", "created_at"),
    )

    id: Mapped[UUIDPk]
    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE")
    )
    draft_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("drafts.id", ondelete="SET NULL"), index=True
    )
    approval_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    kind: Mapped[MessageKind] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(20))  # dryrun | smtp | sendgrid | twilio …
    dry_run: Mapped[bool]
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[MessageStatus] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(320))  # the address or E.164 number
    recipient_domain: Mapped[str | None] = mapped_column(String(253))
    recipient_country: Mapped[str | None] = mapped_column(String(2))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    # The guard's decision, every check with its outcome; the first block names the check.
    policy_trace: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    blocked_by: Mapped[str | None] = mapped_column(String(40))
    block_reason: Mapped[str | None] = mapped_column(Text)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    # When the message took its place under the caps and throttles (set as the guard passes it,
    # in the same transaction that counted the others): what caps count.
    counted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What came of it beyond delivery: a call's answer (intent, duration, recording reference).
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What providers reported after the hand-over (telemetry.state): the furthest state
    # reached — it only moves forward — and when each milestone was first seen.
    delivery_status: Mapped[str | None] = mapped_column(String(20))
    delivery_rank: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    delivery_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    clicked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SuppressionReason(StrEnum):
    OPTED_OUT = "opted_out"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    ERASED = "erased"  # the person's data was erased on request (compliance.dsar)


class Suppression(TenantOwned, Base):
    """An address nobody may contact: a keyed hash, so it survives the person's erasure."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("tenant_id", "address_kind", "address_hash"),)

    id: Mapped[UUIDPk]
    address_kind: Mapped[str] = mapped_column(String(10))  # email | phone
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[SuppressionReason] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(100))  # unsubscribe link, bounce, console …
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]


class DncEntry(TenantOwned, Base):
    """A number on a do-not-call registry (a national list imported as CSV, or the tenant's)."""

    __tablename__ = "dnc_entries"
    __table_args__ = (UniqueConstraint("tenant_id", "list_name", "phone_hash"),)

    id: Mapped[UUIDPk]
    list_name: Mapped[str] = mapped_column(String(100))  # "US National DNC", "tenant" …
    phone_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]


class ConsentState(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class Consent(TenantOwned, Base):
    """When, how and for what a person gave or withdrew consent on a channel; the newest row
    per lead and channel is the state."""

    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_lead_id_channel_recorded_at", "lead_id", "channel", "recorded_at"),
    )

    id: Mapped[UUIDPk]
    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(20))
    state: Mapped[ConsentState] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(200))  # web form, reply STOP, call …
    evidence: Mapped[str | None] = mapped_column(Text)  # the wording shown, a reference
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- campaigns ---------------------------------------------------------------------------------


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"  # by a person; final
    HALTED = "halted"  # by a critical error; an operator resumes it once fixed


class Campaign(TenantOwned, Base):
    """An audience (a saved lead filter) walked through ordered steps (channel, delay, tone,
    call to action), run once a day at `send_time` in `timezone`."""

    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[CampaignStatus] = mapped_column(String(20))
    audience: Mapped[dict[str, Any]] = mapped_column(JSONB)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    send_time: Mapped[str] = mapped_column(String(5))  # "HH:MM", local
    timezone: Mapped[str] = mapped_column(String(64))
    halted_reason: Mapped[str | None] = mapped_column(Text)
    last_run_on: Mapped[str | None] = mapped_column(String(10))  # local date of the daily run
    report_to: Mapped[str | None] = mapped_column(String(320))  # the operator's e-mail
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class MemberState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    STOPPED = "stopped"  # opted out, replied, blocked for good, draft rejected …


class CampaignMember(TenantOwned, Base):
    __tablename__ = "campaign_members"
    __table_args__ = (
        UniqueConstraint("campaign_id", "lead_id"),
        Index("ix_campaign_members_campaign_id_state_due_at", "campaign_id", "state", "due_at"),
        Index("ix_campaign_members_lead_id", "lead_id"),
    )

    id: Mapped[UUIDPk]
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE")
    )
    step: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # the next step
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[MemberState] = mapped_column(String(20))
    stop_reason: Mapped[str | None] = mapped_column(Text)
    draft_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))  # this step's
    last_message_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CampaignRun(TenantOwned, Base):
    """One run's report: what was selected and what became of it, blocked counts by check."""

    __tablename__ = "campaign_runs"
    __table_args__ = (
        Index("ix_campaign_runs_campaign_id_started_at", "campaign_id", "started_at"),
    )

    id: Mapped[UUIDPk]
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    trigger: Mapped[str] = mapped_column(String(20))  # schedule | manual
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    report: Mapped[dict[str, Any]] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    # The report e-mailed to the operator: to whom, and what the channel said.
    report_email: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class ProviderCircuit(Base):
    """One provider's circuit breaker, shared by every worker (not a tenant's: the provider
    is down for everyone). Shown on /health."""

    __tablename__ = "provider_circuits"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # closed | open | half_open
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    opened_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
