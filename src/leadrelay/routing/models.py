from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Integer, String, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.models import CreatedAt, TenantOwned, UUIDPk


class Team(TenantOwned, Base):
    __tablename__ = "teams"

    id: Mapped[UUIDPk]
    name: Mapped[str] = mapped_column(String(200))
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
    created_at: Mapped[CreatedAt]
