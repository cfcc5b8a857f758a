from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadrelay.capture.models import LegalBasis, SourceKind, SourceStatus
from leadrelay.core.schemas import Input

MAX_BATCH = 1000


class SourceCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    kind: SourceKind
    legal_basis: LegalBasis
    assessment: str = Field(default="", max_length=10_000)
    default_country: str = Field(default="US", pattern=r"^[A-Za-z]{2}$")
    is_personal_profile: bool = False


class SourceUpdate(Input):
    status: SourceStatus | None = None
    assessment: str | None = Field(default=None, max_length=10_000)
    default_country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    kind: SourceKind
    legal_basis: LegalBasis
    assessment: str
    status: SourceStatus
    is_personal_profile: bool
    default_country: str
    created_at: datetime


class Thresholds(Input):
    email: float = Field(default=0.7, ge=0, le=1)
    phone: float = Field(default=0.6, ge=0, le=1)


AllowedField = Literal[
    "full_name", "email", "phone", "company", "website", "city", "country", "title"
]


class CapturePolicyIn(Input):
    business_email_policy: Literal["allow", "flag", "refuse"] | None = None
    verification_thresholds: Thresholds | None = None
    allowed_fields: list[AllowedField] | None = Field(
        default=None,
        description="The lead fields stored (data minimization); others are dropped at intake "
        "and reported per row. null: every field.",
    )


class CapturePolicyOut(BaseModel):
    business_email_policy: str
    verification_thresholds: dict[str, float]
    allowed_fields: list[str] | None


class LeadIn(Input):
    """One lead as a source sends it; values are normalized by the platform."""

    source: str = Field(min_length=1, max_length=200, description="The source's registered name")
    full_name: str | None = Field(default=None, max_length=300)
    first_name: str | None = Field(default=None, max_length=150)
    last_name: str | None = Field(default=None, max_length=150)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)
    company: str | None = Field(default=None, max_length=300)
    website: str | None = Field(default=None, max_length=2000)
    city: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=100)
    title: str | None = Field(default=None, max_length=200)
    external_id: str | None = Field(default=None, max_length=200)

    def fields(self) -> dict[str, str | None]:
        return self.model_dump(exclude={"source"})


class LeadBatchIn(Input):
    source: str = Field(min_length=1, max_length=200)
    # Rows are validated one by one (a bad row is reported, never fails the batch).
    leads: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class RowError(BaseModel):
    field: str
    reason: str


class CaptureResult(BaseModel):
    index: int
    status: str
    lead_id: uuid.UUID | None
    errors: list[RowError]
    lead: dict[str, Any]
    dropped_fields: list[str] = Field(
        default_factory=list, description="Fields sent but not stored: the tenant's allowlist"
    )


class BatchResult(BaseModel):
    accepted: int
    duplicate: int
    rejected: int
    results: list[CaptureResult]


class Observation(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    field: str
    value: str | None
    raw_value: str | None
    source_id: uuid.UUID
    import_id: uuid.UUID | None
    observed_at: datetime


class LeadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    source_id: uuid.UUID
    full_name: str
    email: str | None
    phone_e164: str | None
    phone_type: str | None
    company: str | None
    domain: str | None
    city: str | None
    country: str | None
    title: str | None
    status: str
    flags: list[str]
    verification: dict[str, Any]
    merged_into_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ExternalIdOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    source_id: uuid.UUID
    external_id: str


class LeadDetail(LeadOut):
    provenance: list[Observation]
    external_ids: list[ExternalIdOut]
    duplicates: list[uuid.UUID] = Field(description="Leads merged into this one")
