from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
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


class Source(TenantOwned, Base):
    __tablename__ = "sources"

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[SourceKind] = mapped_column(String(30))
    legal_basis: Mapped[LegalBasis] = mapped_column(String(30))
    assessment: Mapped[str] = mapped_column(Text, server_default=text("''"))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'vetted'"))
    default_country: Mapped[str] = mapped_column(String(2), server_default=text("'US'"))
    created_at: Mapped[CreatedAt]


class Lead(TenantOwned, Base):
    __tablename__ = "leads"

    id: Mapped[UUIDPk]
    source_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sources.id", ondelete="RESTRICT"), index=True
    )
    full_name: Mapped[str] = mapped_column(String(300), server_default=text("''"))
    email: Mapped[str | None] = mapped_column(String(320))
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    company: Mapped[str | None] = mapped_column(String(300))
    domain: Mapped[str | None] = mapped_column(String(253))
    country: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'new'"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, object]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), nullable=False
    )
    created_at: Mapped[CreatedAt]
