"""`Idempotency-Key`: a retried request gets the answer the first one got, and does nothing
twice. The key is reserved at the start of the request's transaction, so a concurrent retry
waits for the first to commit and then replays its answer."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Identity, Integer, String, UniqueConstraint, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.core.db import Base
from leadrelay.core.errors import Conflict, ValidationFailed
from leadrelay.core.models import CreatedAt, TenantOwned

MAX_KEY_LENGTH = 200


class IdempotencyKey(TenantOwned, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]


class IdempotencyKeyReused(Conflict):
    """This Idempotency-Key was already used for a different request."""

    code = "idempotency-key-reused"


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    response: dict[str, Any]


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()


async def reserve(
    session: AsyncSession, tenant_id: uuid.UUID, key: str, fingerprint: str
) -> Replay | None:
    """Reserve `key` for this request, or return the stored answer of an earlier one."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(
            "the Idempotency-Key header must have 1 to 200 characters",
            errors=[{"field": "Idempotency-Key", "message": "1 to 200 characters"}],
        )
    inserted = await session.scalar(
        pg_insert(IdempotencyKey)
        .values(tenant_id=tenant_id, key=key, request_hash=fingerprint, status_code=0, response={})
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.id)
    )
    if inserted is not None:
        return None
    earlier = await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key
        )
    )
    if earlier is None or earlier.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    return Replay(earlier.status_code, earlier.response)


async def remember(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    key: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key)
        .values(status_code=status_code, response=response)
    )
