"""The shared verification cache: results kept 30 days per normalized value, in PostgreSQL so
every worker shares them and a restart keeps them. Values are stored as keyed hashes only (an
address is never readable from this table), and a chunk is read and written in one statement
each, with an in-process layer in front."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Float, String, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.capture.verify import (
    CACHE_TTL,
    InMemoryVerificationCache,
    VerificationKind,
    VerificationResult,
    VerificationStatus,
)
from leadrelay.core.db import Base, Database
from leadrelay.core.security import keyed_hash


class VerificationRecord(Base):
    """Not tenant-owned: whether an address exists is not any tenant's data."""

    __tablename__ = "verification_results"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    value_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(10))
    confidence: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(60))
    provider: Mapped[str] = mapped_column(String(40))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DatabaseVerificationCache:
    def __init__(self, db: Database, keys: str, *, ttl: timedelta = CACHE_TTL) -> None:
        self._db = db
        self._keys = keys
        self._ttl = ttl
        self._memory = InMemoryVerificationCache(ttl=ttl)
        self._pending: dict[tuple[str, str], VerificationResult] = {}

    def _hash(self, value: str) -> str:
        return keyed_hash(self._keys, "verification", value)

    async def prefetch(
        self, kind: VerificationKind, values: Iterable[str], *, now: datetime
    ) -> None:
        """Load what the database knows about these values into memory (one query)."""
        by_hash = {self._hash(v): v for v in values}
        if not by_hash:
            return
        async with self._db.session() as session:
            rows = await session.scalars(
                select(VerificationRecord).where(
                    VerificationRecord.kind == str(kind),
                    VerificationRecord.value_hash.in_(list(by_hash)),
                    VerificationRecord.checked_at > now - self._ttl,
                )
            )
            for row in rows:
                await self._memory.put(
                    VerificationResult(
                        kind=VerificationKind(row.kind),
                        value=by_hash[row.value_hash],
                        status=VerificationStatus(row.status),
                        confidence=row.confidence,
                        reason=row.reason,
                        provider=row.provider,
                        checked_at=row.checked_at,
                    )
                )

    async def get(
        self, kind: VerificationKind, value: str, *, now: datetime
    ) -> VerificationResult | None:
        return await self._memory.get(kind, value, now=now)

    async def put(self, result: VerificationResult) -> None:
        await self._memory.put(result)
        self._pending[(str(result.kind), self._hash(result.value))] = result

    async def flush(self) -> None:
        """Write the results gathered since the last flush (one upsert)."""
        if not self._pending:
            return
        rows = [
            {
                "kind": kind,
                "value_hash": value_hash,
                "status": str(r.status),
                "confidence": r.confidence,
                "reason": r.reason[:60],
                "provider": r.provider[:40],
                "checked_at": r.checked_at,
            }
            for (kind, value_hash), r in self._pending.items()
        ]
        self._pending = {}
        statement = pg_insert(VerificationRecord).values(rows)
        async with self._db.session() as session:
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["kind", "value_hash"],
                    set_={
                        name: statement.excluded[name]
                        for name in ("status", "confidence", "reason", "provider", "checked_at")
                    },
                )
            )
