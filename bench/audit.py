"""Audit-chain appends/s beside a plain INSERT of the same rows, in the same database.

Both paths go through the app role's engine (`Database`), so the driver, the pool and the
connection are the same; only what happens per transaction differs:

- audit: `append_events` (lock the tenant's chain head, hash every link, insert, move the head)
  into `audit_events` (RLS, four indexes, a foreign key);
- plain: one `INSERT ... VALUES` executemany of rows of the same shape and size into
  `audit_events_plain`, a copy of the columns without indexes, keys or policies;
- twin (for the breakdown only): the same INSERT into `audit_events_twin`, a copy that keeps the
  indexes and the foreign key, so that the gap splits into database work and application work.

Rows: chunks of 1,000 per transaction, then one row per transaction. The paths alternate in
rounds, so drift (checkpoints, other load) falls on all of them alike. Besides rows over total
time, each path shows the rate of its median batch (a chunk, or a round of single-row
transactions), which rare stalls of the machine do not move. Binding the tenant
(`set_config`, needed by RLS) is part of the audit path's cost; the plain path binds none.

    .venv/bin/python -m bench.audit [--profile]   # --profile: cProfile of the audit appends
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import os
import pstats
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Column, MetaData, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import (
    Cluster,
    CpuMeter,
    Figure,
    cluster,
    heading,
    postgres_pids,
    rate,
    start_watchdog,
    table,
)
from leadrelay.compliance.audit import AuditEntry, append_events, verify_chain
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.logging import correlation_id_var, request_id_var
from leadrelay.identity.service import create_tenant

CHUNK = 1_000
CHUNKS = 80  # measured, per path
CHUNK_ROUNDS = 16  # the paths alternate every CHUNKS / CHUNK_ROUNDS chunks
WARMUP_CHUNKS = 2
SINGLES = 2_000
SINGLE_ROUNDS = 10
WARMUP_SINGLES = 100
TARGET_RATIO = 0.5  # issue: audit append ≥ 50% of plain INSERT
SECTION_BUDGET = 45.0  # seconds; later rounds are skipped past it (all paths alike)

PLAIN = "audit_events_plain"
TWIN = "audit_events_twin"

# --- rows ----------------------------------------------------------------------------------


def make_entries(count: int, *, first: int) -> list[AuditEntry]:
    """Entries shaped like the platform's: ids and hashes, never personal data."""
    entries = []
    for index in range(first, first + count):
        entries.append(
            AuditEntry(
                action="lead.scored",
                actor_type="user",
                actor_id=uuid.UUID(int=index).hex,
                target_type="lead",
                target_id=str(uuid.UUID(int=10**12 + index)),
                data={
                    "score": index % 100,
                    "model": "rules-v3",
                    "source_id": str(uuid.UUID(int=index % 97)),
                    "email_sha256": hashlib.sha256(str(index).encode()).hexdigest(),
                },
            )
        )
    return entries


def plain_rows(
    tenant_id: uuid.UUID,
    entries: list[AuditEntry],
    *,
    first_seq: int,
    now: datetime,
    request_id: str,
) -> list[dict[str, Any]]:
    """The rows `append_events` would insert for `entries`, hashes included (same sizes)."""
    rows = []
    prev = "0" * 64
    for offset, entry in enumerate(entries):
        link = hashlib.sha256(f"{prev}{first_seq + offset}".encode()).hexdigest()
        rows.append(
            {
                "tenant_id": tenant_id,
                "seq": first_seq + offset,
                "occurred_at": now,
                "actor_type": entry.actor_type,
                "actor_id": entry.actor_id,
                "action": entry.action,
                "target_type": entry.target_type,
                "target_id": entry.target_id,
                "correlation_id": request_id,
                "request_id": request_id,
                "data": entry.data,
                "prev_hash": prev,
                "hash": link,
            }
        )
        prev = link
    return rows


def copy_table(name: str) -> Table:
    """A Core table with audit_events' columns and types (minus the generated id)."""
    columns = [Column(c.name, c.type) for c in AuditEvent.__table__.columns if c.name != "id"]
    return Table(name, MetaData(), *columns)


def create_copies(c: Cluster) -> None:
    """As the owner: a plain copy (columns and defaults only) and an indexed twin."""
    with psycopg.connect(c.urls.owner, autocommit=True) as connection:
        for statement in (
            f"DROP TABLE IF EXISTS {PLAIN}, {TWIN}",
            # INCLUDING IDENTITY: id stays GENERATED ALWAYS, so the same INSERT (without id)
            # works; no index, no key, no policy, no trigger.
            f"CREATE TABLE {PLAIN} (LIKE audit_events INCLUDING DEFAULTS INCLUDING IDENTITY)",
            # INCLUDING ALL copies the primary key, the unique (tenant_id, seq) and both
            # indexes; LIKE never copies foreign keys, so add it back.
            f"CREATE TABLE {TWIN} (LIKE audit_events INCLUDING ALL)",
            f"ALTER TABLE {TWIN} ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id)"
            " ON DELETE CASCADE",
            f"GRANT SELECT, INSERT ON {PLAIN}, {TWIN} TO {c.urls.app_role}",
        ):
            connection.execute(statement)


def checkpoint(c: Cluster) -> None:
    with psycopg.connect(c.urls.owner, autocommit=True) as connection:
        connection.execute("CHECKPOINT")


# --- timing --------------------------------------------------------------------------------


@dataclass
class WritePath:
    """One way of writing rows: its transactions, and the time and CPU they took."""

    name: str
    rows: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    io_stalled: float = 0.0
    batch_rates: list[float] = field(default_factory=list)  # rows/s of each timed batch

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def median_rate(self) -> float:
        """Rows/s of the median batch: blind to the rare stalls of a few hundred ms that
        this kind of virtual machine shows now and then, whichever transaction they hit."""
        return statistics.median(self.batch_rates) if self.batch_rates else 0.0

    @property
    def foreign_load(self) -> float:
        return self.cpu.get("foreign", 0.0) / self.seconds if self.seconds else 0.0

    @property
    def io_stall(self) -> float:
        return self.io_stalled / self.seconds if self.seconds else 0.0

    async def timed(self, meter: CpuMeter, rows: int, write: Awaitable[None]) -> None:
        meter.start()
        started = time.perf_counter()
        await write
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self.batch_rates.append(rows / elapsed)
        for group, used in meter.stop().items():
            self.cpu[group] = self.cpu.get(group, 0.0) + used
        self.io_stalled += meter.io_stalled
        self.rows += rows

    def row(self, raw: WritePath) -> list[str]:
        per_k = {group: used / self.rows * 1000 * 1000 for group, used in self.cpu.items()}
        return [
            self.name,
            f"{self.rows:,}",
            f"{self.seconds:.2f}",
            rate(self.rate),
            f"{self.rate / raw.rate:.0%}" if raw.rate else "-",
            rate(self.median_rate),
            f"{self.median_rate / raw.median_rate:.0%}" if raw.median_rate else "-",
            f"{per_k.get('client', 0):.1f}",
            f"{per_k.get('postgres', 0):.1f}",
            f"{self.foreign_load:.2f}",
            f"{self.io_stall:.0%}",
        ]


@dataclass
class Bench:
    """The three write paths over one tenant, fed identical entries and rows."""

    db: Database
    tenant_id: uuid.UUID
    meter: CpuMeter
    plain: Table = field(default_factory=lambda: copy_table(PLAIN))
    twin: Table = field(default_factory=lambda: copy_table(TWIN))
    next_entry: int = 0
    next_seq: dict[str, int] = field(default_factory=lambda: {PLAIN: 1, TWIN: 1})
    profile: cProfile.Profile | None = None  # when set, enabled around each audit append

    def entries(self, count: int) -> list[AuditEntry]:
        made = make_entries(count, first=self.next_entry)
        self.next_entry += count
        return made

    def rows_for(self, table: Table, entries: list[AuditEntry], request_id: str) -> list[Any]:
        first = self.next_seq[table.name]
        self.next_seq[table.name] += len(entries)
        return plain_rows(
            self.tenant_id, entries, first_seq=first, now=utcnow(), request_id=request_id
        )

    async def append(self, entries: list[AuditEntry], request_id: str) -> None:
        """The platform's path: one transaction, the tenant bound, the chain appended."""
        tokens = request_id_var.set(request_id), correlation_id_var.set(request_id)
        if self.profile is not None:
            self.profile.enable()
        try:
            async with self.db.session(self.tenant_id) as session:
                await append_events(session, self.tenant_id, entries, now=utcnow())
        finally:
            if self.profile is not None:
                self.profile.disable()
            request_id_var.reset(tokens[0])
            correlation_id_var.reset(tokens[1])

    async def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """The raw limit: one transaction, one INSERT (executemany when several rows)."""
        async with self.db.session() as session:
            await session.execute(insert(table), rows if len(rows) > 1 else rows[0])

    async def chunked(self, paths: dict[str, WritePath], *, chunks: int, rounds: int) -> None:
        per_round = max(1, chunks // rounds)
        deadline = time.monotonic() + SECTION_BUDGET
        for _ in range(rounds):
            if time.monotonic() > deadline:
                break
            batches = [(self.entries(CHUNK), uuid.uuid4().hex) for _ in range(per_round)]
            plain = [self.rows_for(self.plain, e, rid) for e, rid in batches]
            twin = [self.rows_for(self.twin, e, rid) for e, rid in batches]
            for entries, rid in batches:
                await paths["audit"].timed(self.meter, len(entries), self.append(entries, rid))
            for rows in plain:
                await paths["plain"].timed(self.meter, len(rows), self.insert(self.plain, rows))
            for rows in twin:
                await paths["twin"].timed(self.meter, len(rows), self.insert(self.twin, rows))

    async def singles(self, paths: dict[str, WritePath], *, count: int, rounds: int) -> None:
        per_round = max(1, count // rounds)
        deadline = time.monotonic() + SECTION_BUDGET
        for _ in range(rounds):
            if time.monotonic() > deadline:
                break
            batch = [(self.entries(1), uuid.uuid4().hex) for _ in range(per_round)]
            plain = [self.rows_for(self.plain, e, rid) for e, rid in batch]
            twin = [self.rows_for(self.twin, e, rid) for e, rid in batch]

            async def audit_all(batch: list[tuple[list[AuditEntry], str]] = batch) -> None:
                for entries, rid in batch:
                    await self.append(entries, rid)

            async def insert_all(table: Table, rows: list[list[dict[str, Any]]]) -> None:
                for one in rows:
                    await self.insert(table, one)

            await paths["audit"].timed(self.meter, per_round, audit_all())
            await paths["plain"].timed(self.meter, per_round, insert_all(self.plain, plain))
            await paths["twin"].timed(self.meter, per_round, insert_all(self.twin, twin))


def new_paths(kind: str) -> dict[str, WritePath]:
    return {
        "audit": WritePath(f"audit append_events, {kind}"),
        "plain": WritePath(f"plain INSERT, {kind}"),
        "twin": WritePath(f"plain INSERT + same indexes/FK, {kind}"),
    }


async def _measure(
    c: Cluster, *, profile: cProfile.Profile | None
) -> tuple[dict[str, WritePath], dict[str, WritePath], str]:
    create_copies(c)
    db = Database(c.urls, pool_size=2)
    try:
        async with db.session() as session:
            slug = f"bench-audit-{secrets.token_hex(4)}"
            tenant = await create_tenant(session, name="Bench audit", slug=slug, now=utcnow())
        # A connection is opened by the warm-up; the meter needs its backend's pid.
        meter = CpuMeter({"client": [], "postgres": []})
        bench = Bench(db, tenant.id, meter)
        await bench.chunked(new_paths("warm-up"), chunks=WARMUP_CHUNKS, rounds=1)
        await bench.singles(new_paths("warm-up"), count=WARMUP_SINGLES, rounds=1)
        meter.groups = {"client": [os.getpid()], "postgres": postgres_pids(c)}
        checkpoint(c)

        chunked = new_paths(f"{CHUNK:,} per tx")
        bench.profile = profile
        await bench.chunked(chunked, chunks=CHUNKS, rounds=CHUNK_ROUNDS)
        bench.profile = None
        singles = new_paths("1 per tx")
        await bench.singles(singles, count=SINGLES, rounds=SINGLE_ROUNDS)

        async with db.session(tenant.id) as session:
            report = await verify_chain(session, tenant.id)
            stored = await _count(session, tenant.id)
        verdict = (
            f"chain verified: {report.checked:,} links intact, {stored:,} audit rows stored"
            if report.ok
            else f"CHAIN BROKEN at {report.first_bad_seq}: {report.reason}"
        )
    finally:
        await db.dispose()
    return chunked, singles, verdict


async def _count(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
    )
    return int(count or 0)


def _figure(paths: dict[str, WritePath], name: str, raw_name: str) -> Figure:
    audit, plain, twin = paths["audit"], paths["plain"], paths["twin"]
    return Figure(
        name=name,
        value=audit.rate,
        raw_name=raw_name,
        raw_value=plain.rate,
        unit="rows/s",
        target_ratio=TARGET_RATIO,
        notes=[
            f"median batch: {audit.median_rate / plain.median_rate:.0%} of plain",
            f"same indexes+FK: {rate(twin.rate)} rows/s ({twin.rate / plain.rate:.0%})",
        ],
        foreign_load=max(path.foreign_load for path in paths.values()),
        io_stall=max(path.io_stall for path in paths.values()),
    )


def run(c: Cluster, *, profile: cProfile.Profile | None = None) -> list[Figure]:
    heading("audit: append_events beside a plain INSERT of the same rows")
    chunked, singles, verdict = asyncio.run(_measure(c, profile=profile))
    print(
        f"one connection of the app role ({c.urls.app_role}), SQLAlchemy async + psycopg; "
        f"{c.durability}"
    )
    headers = [
        "path",
        "rows",
        "seconds",
        "rows/s",
        "vs plain",
        "median rows/s",
        "vs plain",
        "client CPU ms/1k",
        "postgres ms/1k",
        "foreign load",
        "io stall",
    ]
    print(table(headers, [p.row(chunked["plain"]) for p in chunked.values()]))
    print()
    print(table(headers, [p.row(singles["plain"]) for p in singles.values()]))
    print(verdict)
    return [
        _figure(chunked, f"audit append, {CHUNK:,} per tx", f"plain INSERT, {CHUNK:,} per tx"),
        _figure(singles, "audit append, 1 per tx", "plain INSERT, 1 per tx"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the chunked audit appends with cProfile (slows them down)",
    )
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    start_watchdog(150)
    with cluster() as c:
        run(c, profile=profile)
    if profile is not None:
        heading("audit profile: append_events, 1,000 per tx (cProfile; skews absolute figures)")
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
