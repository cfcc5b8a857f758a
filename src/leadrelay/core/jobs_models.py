"""Tables of the job machinery: dead letters, worker heartbeats, inbound replay receipts, and
the progress of long runs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class DeadLetter(Base):
    """A job that failed its last try: enough to inspect it and to replay it as it was."""

    __tablename__ = "dead_letters"

    id: Mapped[UUIDPk]
    # Null for system jobs (periodic tasks without a tenant); RLS shows those only when no
    # tenant is set, i.e. to the operator CLI, never to a tenant's request.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    task_name: Mapped[str] = mapped_column(String(200), index=True)
    queue: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, object]] = mapped_column(JSONB)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replay_job_id: Mapped[int | None] = mapped_column(BigInteger)


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    worker_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookReceipt(Base):
    """Delivery ids of signed inbound webhooks already accepted (replay protection)."""

    __tablename__ = "webhook_receipts"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()"), index=True
    )


class JobRun(TenantOwned, Base):
    """A long piece of work a person started (rescoring a tenant, a dedup run…), with its
    progress, so the console and API can show how far it got."""

    __tablename__ = "job_runs"

    id: Mapped[UUIDPk]
    kind: Mapped[str] = mapped_column(String(50), index=True)
    status: Mapped[str] = mapped_column(String(20), server_default=text("'running'"))
    total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    data: Mapped[dict[str, object]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[CreatedAt]
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
