"""Leads/s through CSV import — normalize, exact match, persist with provenance, events, audit —
and then through fuzzy dedup (the jobs the import queued), beside a raw COPY of the same rows
into the same database, in the same run. Peak memory is printed at a tenth of the file and at
the end: a streamed import keeps it flat whatever the file size.

A second reference, the storage floor: the leads the import stored, COPied into the leads
table again (its indexes, keys and funnel trigger, nothing else). Raw COPY writes a bare
table; the floor says how much of the gap the schema itself takes before any normalizing,
matching or provenance.

    .venv/bin/python -m bench.capture [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import time
from pathlib import Path

import psycopg

from bench.common import (
    Cluster,
    CpuMeter,
    Figure,
    cluster,
    heading,
    postgres_pids,
    print_statements,
    rate,
    reset_statements,
    table,
)
from leadrelay.capture.csv_import import run_import
from leadrelay.capture.intake import STORED_FIELDS
from leadrelay.capture.models import LegalBasis, Source, SourceKind, SourceStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.jobs import dead_letter_middleware, job_app
from leadrelay.core.runtime import settle_process
from leadrelay.identity.service import create_tenant
from leadrelay.worker import job_runtime

COLUMNS = ("name", "email", "phone", "company", "website", "city", "external_id")
FIRST = ("Ada", "Grace", "Alan", "Maria", "Wei", "Priya", "Lars", "Chloé", "Tomás", "Aisha")
LAST = ("Lovelace", "Hopper", "Turing", "Garcia", "Chen", "Nair", "Berg", "Dubois", "Ruiz", "Khan")
WORDS = (
    "Northwind",
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Soylent",
)
SUFFIX = ("Inc.", "Ltd", "GmbH", "LLC", "Pvt Ltd", "")
CITIES = ("London", "Berlin", "San Francisco", "Paris", "Madrid", "Mumbai", "Stockholm")


def generate(path: Path, rows: int, *, seed: int = 7) -> None:
    """B2B-looking rows: ~8% exact repeats of an earlier e-mail, national phone formats."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            company = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(SUFFIX)}".strip()
            domain = company.split()[0].lower() + f"{n // 7}.com"
            repeat = n > 100 and rng.random() < 0.08
            k = rng.randrange(n) if repeat else n
            email = f"{first.lower()}.{last.lower()}{k}@{domain if not repeat else 'rep.io'}"
            phone = f"+1 415 {rng.randrange(200, 999)} {rng.randrange(1000, 9999)}"
            writer.writerow(
                (
                    f"{first} {last}",
                    email,
                    phone,
                    company,
                    f"https://www.{domain}/",
                    rng.choice(CITIES),
                    f"x-{n}",
                )
            )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _raw_copy(c: Cluster, path: Path) -> tuple[int, float]:
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        await connection.execute(
            "CREATE UNLOGGED TABLE IF NOT EXISTS capture_raw "
            "(name text, email text, phone text, company text, website text, city text, "
            "external_id text)"
        )
        await connection.execute("TRUNCATE capture_raw")
        await connection.commit()
        started = time.perf_counter()
        rows = 0
        statement = f"COPY capture_raw ({', '.join(COLUMNS)}) FROM STDIN"
        async with connection.cursor() as cursor, cursor.copy(statement) as copy:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                next(reader)
                for record in reader:
                    await copy.write_row(record)
                    rows += 1
        await connection.commit()
        return rows, time.perf_counter() - started


# The leads table's own columns an import fills; the floor copies them as the import stored them.
LEAD_COLUMNS = ("source_id", *STORED_FIELDS, "flags", "created_at", "updated_at")


async def _storage_floor(c: Cluster, tenant_id: object, slug: str) -> tuple[int, float]:
    """COPY of the imported leads, as stored, into `leads` again under a second tenant: its
    indexes (trigram GiST ones for fuzzy matching included), keys and the funnel trigger,
    with nothing else — no normalizing, matching, provenance, external ids, events or audit.
    What PostgreSQL alone costs for a lead row of this schema: the import cannot beat it."""
    columns = ", ".join(LEAD_COLUMNS)
    async with await psycopg.AsyncConnection.connect(c.urls.owner) as connection:
        rows = await (
            await connection.execute(
                f"SELECT {columns} FROM leads WHERE tenant_id = %s",
                (tenant_id,),
            )
        ).fetchall()
        other = await (
            await connection.execute(
                "INSERT INTO tenants (name, slug) VALUES ('Floor', %s) RETURNING id", (slug,)
            )
        ).fetchone()
        assert other is not None
        await connection.commit()
        statement = f"COPY leads (tenant_id, {columns}) FROM STDIN"
        started = time.perf_counter()
        async with connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                await copy.write_row((other[0], *row))
        await connection.commit()
        return len(rows), time.perf_counter() - started


async def _measure(c: Cluster, rows: int, statements: bool) -> tuple[list[list[str]], list[Figure]]:
    settings = c.settings()
    db = Database(c.urls)
    path = c.data_dir / "leads.csv"
    generate(path, rows)
    now = utcnow()
    async with db.session() as session:
        tenant = await create_tenant(session, name="Bench", slug="bench-capture", now=now)
        session.add(
            Source(
                tenant_id=tenant.id,
                name="Fair",
                kind=SourceKind.CSV_UPLOAD,
                legal_basis=LegalBasis.CONSENT,
                status=SourceStatus.VETTED,
            )
        )
    memory_at_tenth = 0.0
    seen = 0
    size = path.stat().st_size

    def progress(n: int) -> None:
        nonlocal seen, memory_at_tenth
        seen += n
        if not memory_at_tenth and seen >= size / 10:
            memory_at_tenth = peak_rss_mb()

    meter = CpuMeter({"bench": [__import__("os").getpid()], "postgres": postgres_pids(c)})
    if statements:
        reset_statements(c)
    meter.start()
    started = time.perf_counter()
    summary = await run_import(
        db, tenant.id, source_name="Fair", path=path, mapping={}, progress=progress
    )
    import_seconds = time.perf_counter() - started
    meter.stop()
    import_cpu = meter.describe(import_seconds)
    memory_at_end = peak_rss_mb()
    if statements:
        print_statements(c)  # the import's
        reset_statements(c)

    async with job_runtime(settings, c.urls):
        started = time.perf_counter()
        await job_app.run_worker_async(
            wait=False,
            install_signal_handlers=False,
            concurrency=2,
            listen_notify=False,
            worker_middleware=[dead_letter_middleware],
        )
        jobs_seconds = time.perf_counter() - started
    if statements:
        print_statements(c)  # the jobs'
    async with db.session(tenant.id) as session:
        from sqlalchemy import func, select

        from leadrelay.capture.models import Lead, LeadStatus

        live = await session.scalar(select(func.count()).where(Lead.status == LeadStatus.NEW))
        merged = await session.scalar(select(func.count()).where(Lead.status == LeadStatus.MERGED))
    await db.dispose()
    copied, copy_seconds = await _raw_copy(c, path)
    floored, floor_seconds = await _storage_floor(c, tenant.id, "bench-capture-floor")

    import_rate = summary.rows / import_seconds
    pipeline_rate = summary.rows / (import_seconds + jobs_seconds)
    copy_rate = copied / copy_seconds
    floor_rate = floored / floor_seconds
    lines = [
        [
            "import (normalize, match, persist, provenance, events, audit)",
            f"{summary.rows:,}",
            f"{import_seconds:.1f}",
            rate(import_rate),
            import_cpu,
        ],
        [
            "queued jobs after it (fuzzy dedup, event dispatch)",
            f"{summary.accepted:,}",
            f"{jobs_seconds:.1f}",
            rate(summary.rows / jobs_seconds),
            "",
        ],
        ["raw COPY of the same rows", f"{copied:,}", f"{copy_seconds:.1f}", rate(copy_rate), ""],
        [
            "COPY of the stored leads into leads (indexes, keys, funnel trigger)",
            f"{floored:,}",
            f"{floor_seconds:.1f}",
            rate(floor_rate),
            "",
        ],
    ]
    print(
        f"rows {summary.rows:,}: accepted {summary.accepted:,}, duplicates {summary.duplicate:,}, "
        f"rejected {summary.rejected:,}; after dedup {live:,} live leads, {merged:,} merged"
    )
    print(
        f"peak memory: {memory_at_tenth:.0f} MB at a tenth of the file, {memory_at_end:.0f} MB "
        "at the end (flat: the file is streamed a chunk at a time)"
    )
    print(
        f"import {import_rate / copy_rate:.1%} of raw COPY (target ≥ 10%); the storage floor "
        f"{floor_rate / copy_rate:.1%} of raw COPY; the import {import_rate / floor_rate:.0%} "
        "of the storage floor"
    )
    figures = [
        Figure("capture import", import_rate, "raw COPY", copy_rate, "rows/s", target_ratio=0.10),
        Figure("capture import + dedup jobs", pipeline_rate, "raw COPY", copy_rate, "rows/s"),
        # The schema's own ceiling beside the same raw COPY: how much of the 10 % a lead row
        # of this table leaves before any of the import's work.
        Figure("COPY into leads (storage floor)", floor_rate, "raw COPY", copy_rate, "rows/s"),
        Figure("capture import", import_rate, "COPY into leads", floor_rate, "rows/s"),
    ]
    return lines, figures


def run(c: Cluster, *, rows: int = 100_000, statements: bool = False) -> list[Figure]:
    heading(f"capture: {rows:,} generated leads through CSV import, beside raw COPY")
    settle_process()  # the start-up every worker runs before its first job
    lines, figures = asyncio.run(_measure(c, rows, statements))
    print(table(["path", "rows", "seconds", "rows/s", "CPU cores"], lines))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--statements",
        action="store_true",
        help="print PostgreSQL's costliest statements of the import and of the jobs",
    )
    args = parser.parse_args()
    with cluster(statements=args.statements) as c:
        run(c, rows=args.rows, statements=args.statements)


if __name__ == "__main__":
    main()
