from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class SourceKind(StrEnum):
    OFFICIAL_API = "official_api"
    VETTED_PROVIDER = "vetted_provider"
    SIGNED_WEBHOOK = "signed_webhook"
    CSV_UPLOAD = "csv_upload"
    PUBLIC_DIRECTORY = "public_directory"


class LegalBasis(StrEnum):
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"


class SourceStatus(StrEnum):
    PENDING = "pending"  # registered, not yet vetted: intake refuses it
    VETTED = "vetted"
    BLOCKED = "blocked"


class Source(TenantOwned, Base):
    """Where leads may come from, and on what legal basis. Intake accepts vetted sources only."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[SourceKind] = mapped_column(String(30))
    legal_basis: Mapped[LegalBasis] = mapped_column(String(30))
    # The legitimate-interest assessment (required for that basis).
    assessment: Mapped[str] = mapped_column(Text, server_default=text("''"))
    status: Mapped[SourceStatus] = mapped_column(String(20), server_default=text("'pending'"))
    # Sources built from personal profiles (social networks, people search) are never lawful.
    is_personal_profile: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    default_country: Mapped[str] = mapped_column(String(2), server_default=text("'US'"))
    # Provider secrets (Meta app secret, verify token, page token…), encrypted at rest.
    config_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[CreatedAt]


class LeadStatus(StrEnum):
    NEW = "new"
    MERGED = "merged"  # folded into another lead (merged_into_id); kept for undo and history


class Lead(TenantOwned, Base):
    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_tenant_id_email", "tenant_id", "email"),
        Index("ix_leads_tenant_id_phone_e164", "tenant_id", "phone_e164"),
        Index("ix_leads_tenant_id_created_at", "tenant_id", "created_at"),
        # Data-subject requests name an address in any case (the local part keeps its case).
        Index("ix_leads_tenant_id_lower_email", "tenant_id", text("lower(email)")),
    )

    id: Mapped[UUIDPk]
    # No index of its own: every index above starts with the tenant, and each index is a
    # write per lead an import pays (migration 0025).
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )
    source_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sources.id", ondelete="RESTRICT"), index=True
    )
    full_name: Mapped[str] = mapped_column(String(300), server_default=text("''"))
    email: Mapped[str | None] = mapped_column(String(320))
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    phone_type: Mapped[str | None] = mapped_column(String(30))
    company: Mapped[str | None] = mapped_column(String(300))
    company_key: Mapped[str | None] = mapped_column(String(300))
    domain: Mapped[str | None] = mapped_column(String(253))
    city: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    title: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[LeadStatus] = mapped_column(String(20), server_default=text("'new'"))
    # role_email, free_email, disposable_email, invalid_email, invalid_phone, personal_email…
    flags: Mapped[list[str]] = mapped_column(
        ARRAY(String(40)), server_default=text("'{}'"), nullable=False
    )
    verification: Mapped[dict[str, object]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), nullable=False
    )
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="SET NULL"), index=True
    )
    attributes: Mapped[dict[str, object]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), nullable=False
    )
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class LeadRows:
    """Mixin for the rows a lead owns in bulk (an observation and an external id for each
    imported lead). Only the lead is a foreign key: a key to the tenant as well would be a
    second check per row and a second index, for nothing, since deleting a tenant deletes its
    leads and these go with them. Nothing reads these rows by tenant alone, so tenant_id has
    no index."""

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    lead_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )


class LeadObservation(LeadRows, Base):
    """Provenance: what one source said of a lead at one moment, every field with the value
    kept and the raw value it came from (`{"email": {"value": …, "raw_value": …}, …}`).

    One row per observation rather than per field: an import observes eight fields of a
    lead at once, and a row per field cost six rows, twelve foreign-key checks and twelve
    index entries a lead — half of PostgreSQL's work in an import (see migration 0024).
    `field_observations()` gives them back one field at a time."""

    __tablename__ = "lead_observations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    source_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sources.id", ondelete="RESTRICT")
    )
    import_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fields: Mapped[dict[str, dict[str, str | None]]] = mapped_column(JSONB)

    def field_observations(self) -> list[FieldObservation]:
        return field_observations(
            self.lead_id, self.source_id, self.import_id, self.observed_at, self.fields
        )


# The lead fields provenance records (`intake.PROVENANCE`), in the order they are shown;
# anything else an observation holds (a Meta form's answers) follows by name.
FIELD_ORDER = (
    "full_name",
    "email",
    "phone_e164",
    "company",
    "domain",
    "city",
    "country",
    "title",
)
_FIELD_RANK = {name: rank for rank, name in enumerate(FIELD_ORDER)}


@dataclass(frozen=True, slots=True)
class FieldObservation:
    """One field of an observation: `source_id` saw `field` = `value` (from `raw_value`)."""

    lead_id: uuid.UUID
    field: str
    value: str | None
    raw_value: str | None
    source_id: uuid.UUID
    import_id: uuid.UUID | None
    observed_at: datetime


def field_observations(
    lead_id: uuid.UUID,
    source_id: uuid.UUID,
    import_id: uuid.UUID | None,
    observed_at: datetime,
    fields: Mapping[str, Mapping[str, str | None]],
) -> list[FieldObservation]:
    """An observation's fields, lead fields first in their usual order (jsonb keeps object
    keys in an order of its own)."""
    names = sorted(fields, key=lambda name: (_FIELD_RANK.get(name, len(_FIELD_RANK)), name))
    return [
        FieldObservation(
            lead_id,
            name,
            fields[name].get("value"),
            fields[name].get("raw_value"),
            source_id,
            import_id,
            observed_at,
        )
        for name in names
    ]


class ExternalId(LeadRows, Base):
    """A source's own id for a lead (CSV `external_id`, CRM id, Meta leadgen id)."""

    __tablename__ = "lead_external_ids"
    __table_args__ = (UniqueConstraint("tenant_id", "source_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    source_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sources.id", ondelete="RESTRICT")
    )
    external_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]


class ImportStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class LeadImport(TenantOwned, Base):
    __tablename__ = "lead_imports"

    id: Mapped[UUIDPk]
    source_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sources.id", ondelete="RESTRICT")
    )
    filename: Mapped[str] = mapped_column(String(300))
    status: Mapped[ImportStatus] = mapped_column(String(20))
    dry_run: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    rows_total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rows_accepted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rows_rejected: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rows_duplicate: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImportIssue(TenantOwned, Base):
    """A rejected (or duplicate) row of an import, with its line and reasons: the report."""

    __tablename__ = "lead_import_issues"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    import_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("lead_imports.id", ondelete="CASCADE"), index=True
    )
    line: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    errors: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    lead_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
