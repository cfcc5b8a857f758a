"""Retention: a sweep (`compliance.retention.sweep_tenant`) of N messages past their cutoff,
beside a plain `DELETE FROM messages WHERE created_at < cutoff` of the same rows, in the same
run.

Setup (not timed), before each path: one tenant, N/100 leads and N messages created 400 days
ago (COPY, as the owner), plus N/10 recent messages that must stay; then VACUUM ANALYZE. Both
paths run on freshly loaded, identical data, as the app role with the tenant bound (RLS on),
in one transaction each, committed (fsync on): the sweep through the app's engine with its
whole policy (every record type checked, the audit event appended), the plain DELETE on a
psycopg connection. The paths alternate for `rounds` rounds; each figure is rows purged per
second of its median round.

    .venv/bin/python -m bench.retention [--messages 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from bench.common import Cluster, Figure, cluster, heading, rate, start_watchdog, table
from leadrelay.compliance.audit import verify_chain
from leadrelay.compliance.retention import sweep_tenant
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database

TARGET_RATIO = 0.5  # issue: a retention sweep ≥ 50% of a plain DELETE of the same rows
OLD_DAYS = 400
POLICY = {
    "leads_not_contacted_days": None,
    "messages_days": 365,
    "telemetry_days": 365,
    "outcomes_days": 365,
    "audit_days": None,
}
SHA = "0" * 64


def _load(c: Cluster, tenant_id: uuid.UUID, messages: int) -> None:
    """Empty the tenant's messages, then load N old and N/10 recent ones."""
    now = utcnow()
    old, recent = now - timedelta(days=OLD_DAYS), now - timedelta(days=1)
    with psycopg.connect(c.urls.owner) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM messages WHERE tenant_id = %s", (tenant_id,))
        leads = [
            row[0]
            for row in cursor.execute(
                "SELECT id FROM leads WHERE tenant_id = %s ORDER BY id", (tenant_id,)
            ).fetchall()
        ]
        statement = (
            "COPY messages (tenant_id, lead_id, kind, channel, provider, dry_run, "
            "idempotency_key, status, recipient, body, content_sha256, policy_trace, "
            "created_by, created_at) FROM STDIN"
        )
        with cursor.copy(statement) as copy:
            for n in range(messages + messages // 10):
                copy.write_row(
                    (
                        tenant_id,
                        leads[n % len(leads)],
                        "one_to_one",
                        "email",
                        "dryrun",
                        True,
                        f"bench-{n}",
                        "sent",
                        f"lead{n % 997}@example.com",
                        "Hello, a short note about your enquiry.",
                        SHA,
                        "[]",
                        "bench",
                        old if n < messages else recent,
                    )
                )
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE messages")


def _setup(c: Cluster, messages: int) -> uuid.UUID:
    tenant_id, source = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(c.urls.owner) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenants (id, name, slug, settings) VALUES (%s, 'Bench retention', %s, %s)",
            (tenant_id, f"bench-retention-{tenant_id.hex[:8]}", Jsonb({"retention": POLICY})),
        )
        cursor.execute(
            "INSERT INTO sources (id, tenant_id, name, kind, legal_basis, status) "
            "VALUES (%s, %s, 'Bench', 'official_api', 'consent', 'vetted')",
            (source, tenant_id),
        )
        with cursor.copy("COPY leads (tenant_id, source_id, full_name) FROM STDIN") as copy:
            for n in range(max(messages // 100, 1)):
                copy.write_row((tenant_id, source, f"Lead {n}"))
        connection.commit()
    return tenant_id


def _plain(c: Cluster, tenant_id: uuid.UUID) -> tuple[int, float]:
    cutoff = utcnow() - timedelta(days=POLICY["messages_days"] or 0)
    with psycopg.connect(c.urls.app) as connection, connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        cursor.execute("DELETE FROM messages WHERE created_at < %s", (cutoff,))
        deleted = cursor.rowcount
        connection.commit()
        return deleted, time.perf_counter() - started


async def _sweep(db: Database, tenant_id: uuid.UUID) -> tuple[int, float]:
    started = time.perf_counter()
    async with db.session(tenant_id) as session:
        result = await sweep_tenant(session, tenant_id, now=utcnow())
    return result.counts["messages"], time.perf_counter() - started


async def _measure(c: Cluster, messages: int, rounds: int) -> tuple[list[float], list[float]]:
    tenant_id = _setup(c, messages)
    db = Database(c.urls)
    sweep_times: list[float] = []
    plain_times: list[float] = []
    try:
        for round_ in range(rounds):
            order = ("plain", "sweep") if round_ % 2 == 0 else ("sweep", "plain")
            for path in order:
                _load(c, tenant_id, messages)
                if path == "plain":
                    deleted, seconds = _plain(c, tenant_id)
                    plain_times.append(seconds)
                else:
                    deleted, seconds = await _sweep(db, tenant_id)
                    sweep_times.append(seconds)
                if deleted != messages:
                    raise RuntimeError(f"{path} purged {deleted:,} rows, expected {messages:,}")
                print(f"  round {round_ + 1} {path:<6} {deleted:,} rows in {seconds:.2f}s")
        async with db.session(tenant_id) as session:
            report = await verify_chain(session, tenant_id)
        if not report.ok:
            raise RuntimeError(f"audit chain broken after the sweeps: {report.reason}")
    finally:
        await db.dispose()
    return sweep_times, plain_times


def run(c: Cluster, *, messages: int = 1_000_000, rounds: int = 2) -> list[Figure]:
    heading(f"retention: a sweep of {messages:,} old messages beside a plain DELETE")
    sweep_times, plain_times = asyncio.run(_measure(c, messages, rounds))
    sweep_rate = messages / statistics.median(sweep_times)
    plain_rate = messages / statistics.median(plain_times)
    print(
        table(
            ["path", "median s", "rows/s"],
            [
                ["retention sweep", f"{statistics.median(sweep_times):.2f}", rate(sweep_rate)],
                ["plain DELETE", f"{statistics.median(plain_times):.2f}", rate(plain_rate)],
            ],
        )
    )
    return [
        Figure(
            f"retention sweep ({messages:,} messages)",
            sweep_rate,
            "plain DELETE of the same rows",
            plain_rate,
            "rows/s",
            target_ratio=TARGET_RATIO,
            notes=[f"{messages // 10:,} recent messages kept; chain verified after the sweeps"],
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    watchdog = start_watchdog(1800)  # 1M rows: four COPY loads of 1.1M rows dominate
    try:
        with cluster(fast_unsafe=False) as c:
            for figure in run(c, messages=args.messages, rounds=args.rounds):
                print(
                    f"{figure.name}: {rate(figure.value)} {figure.unit} = {figure.ratio:.1%} of "
                    f"{figure.raw_name} (target ≥ {TARGET_RATIO:.0%}, met: {figure.met})"
                )
    finally:
        watchdog.cancel()


if __name__ == "__main__":
    main()
