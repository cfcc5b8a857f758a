"""Column helpers shared by every domain's tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from sqlalchemy import DateTime, ForeignKey, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

UUIDPk = Annotated[
    uuid.UUID,
    mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
]
CreatedAt = Annotated[
    datetime, mapped_column(DateTime(timezone=True), server_default=text("now()"), nullable=False)
]
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]


class TenantOwned:
    """Mixin: a `tenant_id` that RLS policies check (see migrations: `tenant_isolation`)."""

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("tenants.id", ondelete="CASCADE"),
        index=True,
        nullable=False,
    )


# Tables that carry tenant_id and therefore get a row-level-security policy. Kept here so the
# migration and a test can both check that none is forgotten.
TENANT_TABLES: tuple[str, ...] = (
    "tenants",
    "users",
    "api_keys",
    "console_sessions",
    "audit_events",
    "audit_heads",
    "outbox_events",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_delivery_attempts",
    "dead_letters",
    "teams",
    "reps",
    "sources",
    "leads",
    "lead_observations",
    "lead_external_ids",
    "idempotency_keys",
    "lead_imports",
    "lead_import_issues",
    "lead_merges",
    "match_reviews",
    "inbound_endpoints",
    "inbound_messages",
    "lead_messages",
    "job_runs",
    "icp_versions",
    "lead_scores",
    "lead_outcomes",
    "crm_connections",
    "rep_time_off",
    "routing_rules",
    "lead_assignments",
    "message_templates",
    "drafts",
    "draft_revisions",
    "approvals",
    "messages",
    "delivery_events",
    "dsar_requests",
    "lead_funnel",
    "suppressions",
    "dnc_entries",
    "consents",
    "campaigns",
    "campaign_members",
    "campaign_runs",
)
