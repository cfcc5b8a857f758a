"""The shared verification cache: results kept 30 days per normalized value, in PostgreSQL so
every worker shares them and a restart keeps them. Values are stored as keyed hashes only (an
address is never readable from this table), and a chunk is read and written in one statement
each, with an in-process layer in front."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from leadrelay.capture.verify import (
    CACHE_TTL,
    InMemoryVerificationCache,
    VerificationKind,
    VerificationResult,
    VerificationStatus,
)
from leadrelay.core.db import Base, Database, raw_connection
from leadrelay.core.security import keyed_hasher


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


_PREFETCH = (
    "SELECT value_hash, status, confidence, reason, provider, checked_at "
    "FROM verification_results WHERE kind = %s AND value_hash = ANY(%b::text[]) "
    "AND checked_at > %s"
)
_UPSERT = (
    "INSERT INTO verification_results "
    "(kind, value_hash, status, confidence, reason, provider, checked_at) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::text[], "
    "%b::text[], %b::timestamptz[]) "
    "ON CONFLICT (kind, value_hash) DO UPDATE SET status = excluded.status, "
    "confidence = excluded.confidence, reason = excluded.reason, provider = excluded.provider, "
    "checked_at = excluded.checked_at"
)


class DatabaseVerificationCache:
    def __init__(self, db: Database, keys: str, *, ttl: timedelta = CACHE_TTL) -> None:
        self._db = db
        self._hash = keyed_hasher(keys, "verification")
        self._ttl = ttl
        self._memory = InMemoryVerificationCache(ttl=ttl)
        self._pending: dict[tuple[str, str], VerificationResult] = {}

    async def prefetch(
        self, kind: VerificationKind, values: Iterable[str], *, now: datetime
    ) -> None:
        """Load what the database knows about these values into memory (one query)."""
        by_hash = {self._hash(v): v for v in values}
        if not by_hash:
            return
        async with self._db.session() as session:
            connection = await raw_connection(session)
            async with connection.cursor() as cursor:
                await cursor.execute(_PREFETCH, (str(kind), list(by_hash), now - self._ttl))
                rows = await cursor.fetchall()
        for value_hash, status, confidence, reason, provider, checked_at in rows:
            await self._memory.put(
                VerificationResult(
                    kind=kind,
                    value=by_hash[value_hash],
                    status=VerificationStatus(status),
                    confidence=confidence,
                    reason=reason,
                    provider=provider,
                    checked_at=checked_at,
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
        """Write the results gathered since the last flush (one set-based upsert)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        results = list(pending.values())
        columns = (
            [kind for kind, _ in pending],
            [value_hash for _, value_hash in pending],
            [str(r.status) for r in results],
            [r.confidence for r in results],
            [r.reason[:60] for r in results],
            [r.provider[:40] for r in results],
            [r.checked_at for r in results],
        )
        async with self._db.session() as session:
            connection = await raw_connection(session)
            async with connection.cursor() as cursor:
                await cursor.execute(_UPSERT, columns)
