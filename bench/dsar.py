"""DSAR erasure: one person erased (`compliance.dsar.erase_request`) among 1,000,000 leads,
beside a bare `DELETE FROM leads WHERE id = …` of one row among the same leads in the same run.

Setup (not timed): one tenant with N leads (COPY, as the owner) and the `lead.created` outbox
event intake writes for each, then the persons to erase: each with provenance, an external id,
a draft with its revision and approval, a sent message with a delivery event, a reply, a
consent, a score, an outcome, an assignment, a campaign membership and the message's outbox
event. Then VACUUM ANALYZE, as autovacuum would.

Measured as the app role (row-level security on, the tenant set, as a request runs it), one
transaction per erasure, commit included: the whole use case — find the person by e-mail
address (case-insensitive), collect their ids across every table, delete child tables first
with a count per table, suppress both addresses (keyed hashes), clear the request's subject and
append the audit events. The raw limit: a bare DELETE of one plain lead by primary key under
the same role and tenant, commit included (its foreign keys' cascades checked as usual).

    .venv/bin/python -m bench.dsar [--leads 1000000] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from bench.common import Cluster, Figure, cluster, heading, percentile, start_watchdog, table
from leadrelay.compliance import dsar
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.security import secret_keys
from leadrelay.identity.service import system_principal

TARGET_MS = 1000.0
WARMUP = 2
BATCH = 100_000


@dataclass(frozen=True, slots=True)
class Setup:
    tenant_id: uuid.UUID
    leads: int
    persons: list[str]  # e-mail addresses, one per erasure
    plain: list[uuid.UUID]  # leads with no children, one per raw DELETE
    seconds: float


def _copy(
    cursor: psycopg.Cursor[tuple[object, ...]], statement: str, rows: list[tuple[object, ...]]
) -> None:
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _person(
    cursor: psycopg.Cursor[tuple[object, ...]], t: uuid.UUID, ids: dict[str, uuid.UUID], n: int
) -> str:
    email = f"Person.{n}@Erase-Me.example"
    lead, draft, revision, message = (uuid.uuid4() for _ in range(4))
    phone = f"+1415555{n:04d}"
    statements: list[tuple[str, tuple[object, ...]]] = [
        (
            "INSERT INTO leads (id, tenant_id, source_id, full_name, email, phone_e164) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (lead, t, ids["source"], f"Person {n}", email, phone),
        ),
        (
            "INSERT INTO lead_observations (tenant_id, lead_id, source_id, observed_at, fields) "
            "VALUES (%s, %s, %s, now(), %s)",
            (t, lead, ids["source"], Jsonb({"email": {"value": email, "raw_value": email}})),
        ),
        (
            "INSERT INTO lead_external_ids (tenant_id, lead_id, source_id, external_id) "
            "VALUES (%s, %s, %s, %s)",
            (t, lead, ids["source"], f"ext-{n}"),
        ),
        (
            "INSERT INTO drafts (id, tenant_id, lead_id, channel, template, tone, length, cta, "
            "origin, status, created_by_type, created_by) VALUES (%s, %s, %s, 'email', "
            "'builtin:intro', 'friendly', 'short', 'call', 'template', 'sent', 'user', 'Rep')",
            (draft, t, lead),
        ),
        (
            "INSERT INTO draft_revisions (id, tenant_id, draft_id, number, body, content_sha256, "
            "sentences, gaps, compliance, author_type, author) VALUES (%s, %s, %s, 1, %s, %s, "
            "'[]', '[]', '[]', 'user', 'Rep')",
            (revision, t, draft, f"Dear Person {n}", "a" * 64),
        ),
        (
            "INSERT INTO approvals (tenant_id, draft_id, revision_id, content_sha256, decision, "
            "reviewer_type, reviewer, decided_at) VALUES (%s, %s, %s, %s, 'approved', 'user', "
            "'Reviewer', now())",
            (t, draft, revision, "a" * 64),
        ),
        (
            "INSERT INTO messages (id, tenant_id, lead_id, draft_id, kind, channel, provider, "
            "dry_run, idempotency_key, status, recipient, body, content_sha256, policy_trace, "
            "provider_message_id, created_by) VALUES (%s, %s, %s, %s, 'one_to_one', 'email', "
            "'sendgrid', false, %s, 'sent', %s, 'Dear', %s, '[]', %s, 'Rep')",
            (message, t, lead, draft, f"k-{n}", email.lower(), "a" * 64, f"pm-{n}"),
        ),
        (
            "INSERT INTO delivery_events (tenant_id, message_id, provider, kind, "
            "provider_event_id, occurred_at, received_at, applied, raw) VALUES (%s, %s, "
            "'sendgrid', 'delivered', %s, now(), now(), true, %s)",
            (t, message, f"ev-{n}", Jsonb({"email": email.lower()})),
        ),
        (
            "INSERT INTO lead_messages (tenant_id, lead_id, message_id, channel, direction, "
            "provider_message_id, message_type, body, received_at, raw) VALUES (%s, %s, %s, "
            "'email', 'inbound', %s, 'text', 'Thanks', now(), '{}')",
            (t, lead, message, f"re-{n}"),
        ),
        (
            "INSERT INTO consents (tenant_id, lead_id, channel, state, purpose, method, "
            "recorded_by, recorded_at) VALUES (%s, %s, 'email', 'granted', 'news', 'form', "
            "'Rep', now())",
            (t, lead),
        ),
        (
            "INSERT INTO lead_scores (tenant_id, lead_id, version_id, score, total, qualified, "
            "breakdown, matched, scored_at) VALUES (%s, %s, %s, 70, 100, true, '[]', '[]', now())",
            (t, lead, ids["version"]),
        ),
        (
            "INSERT INTO lead_outcomes (tenant_id, lead_id, source, external_id, label, "
            "closed_at) VALUES (%s, %s, 'hubspot', %s, 'won', now())",
            (t, lead, f"deal-{n}"),
        ),
        (
            "INSERT INTO lead_assignments (tenant_id, lead_id, status, team_id, rep_id, trace, "
            "decided_at) VALUES (%s, %s, 'assigned', %s, %s, '[]', now())",
            (t, lead, ids["team"], ids["rep"]),
        ),
        (
            "INSERT INTO campaign_members (tenant_id, campaign_id, lead_id, due_at, state, "
            "joined_at) VALUES (%s, %s, %s, now(), 'active', now())",
            (t, ids["campaign"], lead),
        ),
        (
            "INSERT INTO outbox_events (tenant_id, type, payload) VALUES (%s, 'lead.created', "
            "%s), (%s, 'message.sent', %s)",
            (
                t,
                Jsonb({"lead_id": str(lead)}),
                t,
                Jsonb({"lead_id": str(lead), "message_id": str(message)}),
            ),
        ),
    ]
    for statement, params in statements:
        cursor.execute(statement, params)
    return email


def _setup(c: Cluster, leads: int, persons: int) -> Setup:
    started = time.perf_counter()
    t = uuid.uuid4()
    ids = {name: uuid.uuid4() for name in ("source", "team", "rep", "version", "campaign")}
    plain: list[uuid.UUID] = []
    emails: list[str] = []
    with psycopg.connect(c.urls.owner) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenants (id, name, slug) VALUES (%s, 'Bench DSAR', %s)",
            (t, f"bench-dsar-{t.hex[:8]}"),
        )
        cursor.execute(
            "INSERT INTO sources (id, tenant_id, name, kind, legal_basis, status) "
            "VALUES (%s, %s, 'Form', 'official_api', 'consent', 'vetted')",
            (ids["source"], t),
        )
        cursor.execute(
            "INSERT INTO teams (id, tenant_id, name) VALUES (%s, %s, 'T')", (ids["team"], t)
        )
        cursor.execute(
            "INSERT INTO reps (id, tenant_id, team_id, name, open_leads) "
            "VALUES (%s, %s, %s, 'R', %s)",
            (ids["rep"], t, ids["team"], persons),
        )
        cursor.execute(
            "INSERT INTO icp_versions (id, tenant_id, number) VALUES (%s, %s, 1)",
            (ids["version"], t),
        )
        cursor.execute(
            "INSERT INTO campaigns (id, tenant_id, name, status, audience, steps, send_time, "
            "timezone, created_by) VALUES (%s, %s, 'C', 'active', '{}', '[]', '09:00', 'UTC', 'b')",
            (ids["campaign"], t),
        )
        for start in range(0, leads, BATCH):
            batch = [uuid.uuid4() for _ in range(min(BATCH, leads - start))]
            _copy(
                cursor,
                "COPY leads (id, tenant_id, source_id, full_name, email, phone_e164, company) "
                "FROM STDIN",
                [
                    (
                        lead,
                        t,
                        ids["source"],
                        f"Lead {start + i}",
                        f"lead{start + i}@company{(start + i) % 5000}.example",
                        f"+1212{(start + i) % 10_000_000:07d}",
                        f"Company {(start + i) % 5000}",
                    )
                    for i, lead in enumerate(batch)
                ],
            )
            _copy(
                cursor,
                "COPY outbox_events (tenant_id, type, payload, dispatched_at) FROM STDIN",
                [
                    (t, "lead.created", Jsonb({"lead_id": str(lead)}), "2026-11-30")
                    for lead in batch
                ],
            )
            if len(plain) < persons:
                plain.extend(batch[: persons - len(plain)])
        emails = [_person(cursor, t, ids, n) for n in range(persons)]
        connection.commit()
        connection.autocommit = True
        for name in ("leads", "outbox_events", "messages", "lead_messages", "drafts"):
            cursor.execute(f"VACUUM ANALYZE {name}")
    return Setup(t, leads, emails, plain, time.perf_counter() - started)


async def _erase(db: Database, setup: Setup, keys: str) -> tuple[list[float], int]:
    """One erasure per person, each in its own transaction (commit included); ms each."""
    samples: list[float] = []
    deleted = 0
    actor = system_principal(setup.tenant_id)
    for email in setup.persons:
        started = time.perf_counter()
        async with db.session(setup.tenant_id) as session:
            request = await dsar.open_request(
                session,
                actor,
                keys=keys,
                kind=dsar.DsarKind.ERASURE,
                subject_kind=dsar.SubjectKind.EMAIL,
                subject=email.lower(),  # asked in another case than stored
                default_region=None,
                now=utcnow(),
            )
            summary = await dsar.erase_request(
                session,
                actor,
                request.id,
                keys=keys,
                confirmation=dsar.confirmation_phrase(request),
                now=utcnow(),
            )
        samples.append((time.perf_counter() - started) * 1000)
        deleted = summary.total
    return samples, deleted


def _raw(c: Cluster, setup: Setup) -> list[float]:
    samples: list[float] = []
    with psycopg.connect(c.urls.app) as connection, connection.cursor() as cursor:
        for lead in setup.plain:
            started = time.perf_counter()
            cursor.execute("SELECT set_config('app.tenant_id', %s, true)", (str(setup.tenant_id),))
            cursor.execute("DELETE FROM leads WHERE id = %s", (lead,))
            if cursor.rowcount != 1:
                raise RuntimeError(f"lead {lead} was not deleted")
            connection.commit()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(c: Cluster, *, leads: int = 1_000_000, runs: int = 7) -> list[Figure]:
    heading(f"dsar: erasure of one person among {leads:,} leads, beside a bare DELETE")
    persons = WARMUP + runs
    setup = _setup(c, leads, persons)
    print(
        f"setup {setup.seconds:.1f}s: {leads:,} leads and their lead.created events, "
        f"{persons} persons with a row in every table; {WARMUP} warm-up + {runs} timed "
        "erasures, as the app role with RLS on, commit included"
    )
    keys = secret_keys(c.settings())

    async def erase_all() -> tuple[list[float], int]:
        db = Database(c.urls)
        try:
            return await _erase(db, setup, keys)
        finally:
            await db.dispose()

    erase_samples, deleted = asyncio.run(erase_all())
    raw_samples = _raw(c, setup)
    erase, raw = erase_samples[WARMUP:], raw_samples[WARMUP:]
    rows = [
        [name, f"{percentile(s, 0.5):.1f}", f"{max(s):.1f}", f"{min(s):.1f}"]
        for name, s in (("raw: DELETE FROM leads WHERE id = …", raw), ("dsar erasure", erase))
    ]
    print(table(["operation", "p50 ms", "max ms", "min ms"], rows))
    p50, worst, raw_p50 = percentile(erase, 0.5), max(erase), percentile(raw, 0.5)
    notes = [
        f"erasure p50 {p50:.0f} ms, max {worst:.0f} ms at {leads:,} leads ({deleted} rows "
        f"deleted per person across their tables; target < {TARGET_MS:.0f} ms: "
        f"{'met' if worst < TARGET_MS else 'NOT met'}); bare DELETE of one lead p50 "
        f"{raw_p50:.1f} ms"
    ]
    print(notes[0])
    return [
        Figure(
            f"DSAR erasure, 1 person of {leads:,} leads",
            1000 / p50,
            "bare DELETE of one lead",
            1000 / raw_p50,
            "ops/s",
            notes=notes,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    start_watchdog(900)
    with cluster() as c:
        run(c, leads=args.leads, runs=args.runs)


if __name__ == "__main__":
    main()
