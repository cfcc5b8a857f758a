"""Data-subject requests on the real database: a person seeded into every table that can hold
them, exported (everything of theirs, nothing of anyone else's) and erased (nothing identifying
left anywhere, other people and other tenants untouched, the suppression kept, the audit chain
still verifying)."""

from __future__ import annotations

import io
import json
import random
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from sqlalchemy import select

from leadrelay.compliance import dsar
from leadrelay.compliance.audit import AuditEntry, record, verify_chain
from leadrelay.compliance.models import AuditEvent, DsarRequest
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.outreach.models import Suppression
from leadrelay.outreach.suppression import address_hash
from tests.factories import TenantCtx, TenantFactory
from tests.support import invoke_cli, owner_connection

# Every table a person's data can sit in: erasure empties them of the person.
PERSON_TABLES = (
    "leads",
    "lead_observations",
    "lead_external_ids",
    "lead_merges",
    "match_reviews",
    "lead_import_issues",
    "inbound_messages",
    "lead_messages",
    "drafts",
    "draft_revisions",
    "approvals",
    "messages",
    "delivery_events",
    "unmatched_delivery_events",
    "consents",
    "campaign_members",
    "lead_scores",
    "lead_outcomes",
    "lead_assignments",
    "idempotency_keys",
    "dead_letters",
)
# What refers to the person's records by id only: exported, kept by erasure.
REFERENCE_TABLES = ("outbox_events", "webhook_deliveries", "webhook_delivery_attempts")


def new_phone() -> str:
    """A valid, unused-looking US number (E.164)."""
    rng = random.Random(uuid.uuid4().int)
    return f"+1415{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"


@dataclass
class Who:
    email: str
    phone: str
    name: str

    @classmethod
    def new(cls) -> Who:
        marker = uuid.uuid4().hex[:10]
        return cls(f"zoe.{marker}@example.org", new_phone(), f"Zoe Q{marker}")

    @property
    def needles(self) -> list[str]:
        return [self.email, self.phone, self.phone.lstrip("+"), self.name]


@dataclass
class TenantRows:
    tenant_id: uuid.UUID
    source_id: uuid.UUID = field(default_factory=uuid.uuid4)
    team_id: uuid.UUID = field(default_factory=uuid.uuid4)
    rep_id: uuid.UUID = field(default_factory=uuid.uuid4)
    version_id: uuid.UUID = field(default_factory=uuid.uuid4)
    campaign_id: uuid.UUID = field(default_factory=uuid.uuid4)
    endpoint_id: uuid.UUID = field(default_factory=uuid.uuid4)
    inbound_endpoint_id: uuid.UUID = field(default_factory=uuid.uuid4)
    import_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class Seeded:
    lead_id: uuid.UUID
    duplicate_id: uuid.UUID
    message_id: uuid.UUID


def seed_tenant(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> TenantRows:
    rows = TenantRows(tenant_id)
    t = tenant_id
    conn.execute(
        "INSERT INTO sources (id, tenant_id, name, kind, legal_basis, status) "
        "VALUES (%s, %s, 'Form', 'official_api', 'consent', 'vetted')",
        (rows.source_id, t),
    )
    conn.execute(
        "INSERT INTO teams (id, tenant_id, name) VALUES (%s, %s, 'Team')", (rows.team_id, t)
    )
    conn.execute(
        "INSERT INTO reps (id, tenant_id, team_id, name) VALUES (%s, %s, %s, 'Rep')",
        (rows.rep_id, t, rows.team_id),
    )
    conn.execute(
        "INSERT INTO icp_versions (id, tenant_id, number) VALUES (%s, %s, 1)", (rows.version_id, t)
    )
    conn.execute(
        "INSERT INTO campaigns (id, tenant_id, name, status, audience, steps, send_time, "
        "timezone, created_by) VALUES (%s, %s, 'Spring', 'active', '{}', '[]', '09:00', 'UTC', "
        "'test')",
        (rows.campaign_id, t),
    )
    conn.execute(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, secret_encrypted) "
        "VALUES (%s, %s, 'https://hooks.example/x', '\\x00')",
        (rows.endpoint_id, t),
    )
    conn.execute(
        "INSERT INTO inbound_endpoints (id, tenant_id, name, provider, secret_encrypted) "
        "VALUES (%s, %s, 'in', 'standard_webhooks', '\\x00')",
        (rows.inbound_endpoint_id, t),
    )
    conn.execute(
        "INSERT INTO lead_imports (id, tenant_id, source_id, filename, status) "
        "VALUES (%s, %s, %s, 'leads.csv', 'done')",
        (rows.import_id, t, rows.source_id),
    )
    return rows


def seed_person(
    conn: psycopg.Connection[Any], rows: TenantRows, who: Who, *, unmatched: bool = True
) -> Seeded:
    """One person in every table that can hold them, as the app would have written it."""
    t, marker = rows.tenant_id, uuid.uuid4().hex
    lead, dup, draft, revision, message = (uuid.uuid4() for _ in range(5))
    event, message_event, delivery = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    domain = who.email.split("@")[1]

    def ins(sql: str, *params: Any) -> None:
        conn.execute(sql, params)

    ins(
        "INSERT INTO leads (id, tenant_id, source_id, full_name, email, phone_e164, company, "
        "city, attributes) VALUES (%s, %s, %s, %s, %s, %s, 'Acme', 'Leeds', %s)",
        lead, t, rows.source_id, who.name, who.email, who.phone,
        Jsonb({"said": f"I am {who.name}"}),
    )  # fmt: skip
    ins(
        "INSERT INTO leads (id, tenant_id, source_id, full_name, status, merged_into_id) "
        "VALUES (%s, %s, %s, %s, 'merged', %s)",
        dup, t, rows.source_id, who.name, lead,
    )  # fmt: skip
    ins(
        "INSERT INTO lead_observations (tenant_id, lead_id, source_id, import_id, observed_at, "
        "fields) VALUES (%s, %s, %s, %s, now(), %s)",
        t, lead, rows.source_id, rows.import_id,
        Jsonb({"email": {"value": who.email, "raw_value": f"  {who.email.upper()} "}}),
    )  # fmt: skip
    ins(
        "INSERT INTO lead_external_ids (tenant_id, lead_id, source_id, external_id) "
        "VALUES (%s, %s, %s, %s)",
        t, lead, rows.source_id, f"ext-{marker}",
    )  # fmt: skip
    ins(
        "INSERT INTO lead_merges (tenant_id, survivor_id, merged_id, reason, changes, "
        "actor_type, merged_at) VALUES (%s, %s, %s, 'auto', %s, 'system', now())",
        t, lead, dup, Jsonb({"filled": {"phone_e164": who.phone}}),
    )  # fmt: skip
    ins(
        "INSERT INTO match_reviews (tenant_id, lead_a_id, lead_b_id, score, contributions) "
        "VALUES (%s, %s, %s, 0.8, %s)",
        t, lead, dup, Jsonb([{"field": "name", "a": who.name, "b": who.name}]),
    )  # fmt: skip
    ins(
        "INSERT INTO lead_import_issues (tenant_id, import_id, line, status, errors, lead_id) "
        "VALUES (%s, %s, 3, 'duplicate', %s, %s)",
        t, rows.import_id, Jsonb([{"field": "email", "reason": "duplicate"}]), lead,
    )  # fmt: skip
    ins(
        "INSERT INTO inbound_messages (tenant_id, endpoint_id, delivery_id, payload, status) "
        "VALUES (%s, %s, %s, %s, 'received')",
        t, rows.inbound_endpoint_id, f"d-{marker}",
        Jsonb({"lead": {"email": who.email.upper(), "name": who.name}}),
    )  # fmt: skip
    ins(
        "INSERT INTO drafts (id, tenant_id, lead_id, channel, template, tone, length, cta, "
        "origin, status, created_by_type, created_by) VALUES (%s, %s, %s, 'email', "
        "'builtin:intro', 'friendly', 'short', 'call', 'template', 'approved', 'user', 'Rep')",
        draft, t, lead,
    )  # fmt: skip
    ins(
        "INSERT INTO draft_revisions (id, tenant_id, draft_id, number, subject, body, "
        "content_sha256, sentences, gaps, compliance, author_type, author) VALUES (%s, %s, %s, "
        "1, %s, %s, %s, %s, '[]', '[]', 'user', 'Rep')",
        revision, t, draft, f"Hello {who.name}", f"Dear {who.name}, write to {who.email}.",
        "a" * 64, Jsonb([{"text": f"Dear {who.name}", "evidence": ["full_name"]}]),
    )  # fmt: skip
    ins(
        "INSERT INTO approvals (tenant_id, draft_id, revision_id, content_sha256, decision, "
        "reviewer_type, reviewer, decided_at) VALUES (%s, %s, %s, %s, 'approved', 'user', "
        "'Reviewer', now())",
        t, draft, revision, "a" * 64,
    )  # fmt: skip
    ins(
        "INSERT INTO messages (id, tenant_id, lead_id, draft_id, kind, channel, provider, "
        "dry_run, idempotency_key, status, recipient, recipient_domain, subject, body, "
        "content_sha256, policy_trace, provider_message_id, created_by, counted_at) VALUES "
        "(%s, %s, %s, %s, 'one_to_one', 'email', 'sendgrid', false, %s, 'sent', %s, %s, %s, %s, "
        "%s, '[]', %s, 'Rep', now())",
        message, t, lead, draft, f"k-{marker}", who.email, domain, f"Hello {who.name}",
        f"Dear {who.name}", "a" * 64, f"pm-{marker}",
    )  # fmt: skip
    ins(
        "INSERT INTO delivery_events (tenant_id, message_id, provider, kind, provider_event_id, "
        "occurred_at, received_at, applied, raw) VALUES (%s, %s, 'sendgrid', 'delivered', %s, "
        "now(), now(), true, %s)",
        t, message, f"ev-{marker}", Jsonb({"email": who.email, "sg_message_id": f"pm-{marker}"}),
    )  # fmt: skip
    if unmatched:
        ins(
            "INSERT INTO unmatched_delivery_events (provider, provider_event_id, "
            "provider_message_id, kind, event) VALUES ('sendgrid', %s, %s, 'open', %s)",
            f"uev-{marker}", f"pm-{marker}", Jsonb({"email": who.email}),
        )  # fmt: skip
    ins(
        "INSERT INTO lead_messages (tenant_id, lead_id, message_id, channel, direction, "
        "provider_message_id, message_type, body, received_at, raw, classification) VALUES "
        "(%s, %s, %s, 'email', 'inbound', %s, 'text', %s, now(), %s, 'reply')",
        t, lead, message, f"re-{marker}", f"Thanks, {who.name}", Jsonb({"from": who.email}),
    )  # fmt: skip
    # A WhatsApp message not yet matched to a lead: only the sender's number names them.
    ins(
        "INSERT INTO lead_messages (tenant_id, channel, direction, provider_message_id, "
        "message_type, body, received_at, raw) VALUES (%s, 'whatsapp', 'inbound', %s, 'text', "
        "'hello?', now(), %s)",
        t, f"wamid.{marker}",
        Jsonb({"from": who.phone.lstrip("+"), "profile": {"name": who.name}}),
    )  # fmt: skip
    ins(
        "INSERT INTO consents (tenant_id, lead_id, channel, state, purpose, method, evidence, "
        "recorded_by, recorded_at) VALUES (%s, %s, 'email', 'granted', 'news', 'web form', %s, "
        "'Rep', now())",
        t, lead, f"{who.name} ticked the box",
    )  # fmt: skip
    ins(
        "INSERT INTO campaign_members (tenant_id, campaign_id, lead_id, due_at, state, "
        "joined_at, last_message_id) VALUES (%s, %s, %s, now(), 'active', now(), %s)",
        t, rows.campaign_id, lead, message,
    )  # fmt: skip
    ins(
        "INSERT INTO lead_scores (tenant_id, lead_id, version_id, score, total, qualified, "
        "breakdown, matched, scored_at) VALUES (%s, %s, %s, 80, 100, true, %s, '[]', now())",
        t, lead, rows.version_id, Jsonb([{"rule": "domain", "value": domain}]),
    )  # fmt: skip
    ins(
        "INSERT INTO lead_outcomes (tenant_id, lead_id, source, external_id, label, closed_at) "
        "VALUES (%s, %s, 'hubspot', %s, 'won', now())",
        t, lead, f"deal-{marker}",
    )  # fmt: skip
    ins(
        "INSERT INTO lead_assignments (tenant_id, lead_id, status, team_id, rep_id, trace, "
        "decided_at) VALUES (%s, %s, 'assigned', %s, %s, %s, now())",
        t, lead, rows.team_id, rows.rep_id, Jsonb([{"fact": "email", "value": who.email}]),
    )  # fmt: skip
    conn.execute("UPDATE reps SET open_leads = open_leads + 1 WHERE id = %s", (rows.rep_id,))
    ins(
        "INSERT INTO outbox_events (id, tenant_id, type, payload) VALUES (%s, %s, "
        "'lead.created', %s), (%s, %s, 'message.sent', %s)",
        event, t, Jsonb({"lead_id": str(lead), "source_id": str(rows.source_id)}),
        message_event, t, Jsonb({"message_id": str(message), "lead_id": str(lead)}),
    )  # fmt: skip
    ins(
        "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, status, "
        "attempts, last_error) VALUES (%s, %s, %s, %s, 'failed', 1, %s)",
        delivery, t, rows.endpoint_id, event, "HTTP 500 from the endpoint",
    )  # fmt: skip
    ins(
        "INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, attempt, status_code, "
        "error, duration_ms, attempted_at) VALUES (%s, %s, 1, 500, %s, 12, now())",
        t, delivery, "HTTP 500",
    )  # fmt: skip
    ins(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, response) "
        "VALUES (%s, %s, %s, 201, %s)",
        t, f"idem-{marker}", "b" * 64, Jsonb({"lead_id": str(lead), "email": who.email}),
    )  # fmt: skip
    ins(
        "INSERT INTO dead_letters (tenant_id, task_name, queue, payload, error, attempts) "
        "VALUES (%s, 'outreach.deliver', 'default', %s, 'boom', 5)",
        t, Jsonb({"tenant_id": str(t), "message_id": str(message)}),
    )  # fmt: skip
    return Seeded(lead, dup, message)


def text_columns(conn: psycopg.Connection[Any]) -> list[tuple[str, str, bool]]:
    """(table, column, has tenant_id) for every column of every table that can hold text."""
    found = conn.execute(
        "SELECT c.table_name, c.column_name, EXISTS (SELECT 1 FROM information_schema.columns t "
        "WHERE t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "AND t.column_name = 'tenant_id') FROM information_schema.columns c "
        "JOIN information_schema.tables s ON s.table_schema = c.table_schema "
        "AND s.table_name = c.table_name AND s.table_type = 'BASE TABLE' "
        "WHERE c.table_schema = 'public' AND (c.data_type IN ('text', 'character varying', "
        "'jsonb', 'json', 'ARRAY') OR c.udt_name = 'citext') ORDER BY 1, 2"
    ).fetchall()
    return [(row["table_name"], row["column_name"], row["exists"]) for row in found]


def hits(
    urls: DatabaseUrls, needles: list[str], tenant_id: uuid.UUID, *, shared: bool = True
) -> dict[str, int]:
    """Rows holding any needle, per table.column: the tenant's rows where the table has a
    tenant, every row where it has none (unless `shared` is False)."""
    result: dict[str, int] = {}
    patterns = [f"%{n}%" for n in needles]
    with owner_connection(urls) as conn:
        for table, column, tenanted in text_columns(conn):
            if not (tenanted or shared):
                continue
            where = f'"{column}"::text ILIKE ANY(%s)'
            params: list[Any] = [patterns]
            if tenanted:
                where += " AND tenant_id = %s"
                params.append(tenant_id)
            row = conn.execute(
                f'SELECT count(*) AS n FROM "{table}" WHERE {where}', params
            ).fetchone()
            if row and row["n"]:
                result[f"{table}.{column}"] = int(row["n"])
    return result


@dataclass
class World:
    a: TenantCtx
    b: TenantCtx
    person: Who
    other: Who
    seeded: Seeded
    other_seeded: Seeded
    rows: TenantRows


@pytest.fixture
async def world(tenants: TenantFactory, urls: DatabaseUrls) -> World:
    """Tenant A holds the person and someone else; tenant B holds a namesake with the same
    e-mail address and phone number (erasure in A must not reach them)."""
    a, b = await tenants.create(), await tenants.create()
    person, other = Who.new(), Who.new()
    with owner_connection(urls) as conn:
        rows = seed_tenant(conn, a.id)
        seeded = seed_person(conn, rows, person)
        other_seeded = seed_person(conn, rows, other)
        seed_person(conn, seed_tenant(conn, b.id), person, unmatched=False)
    # The audit trail's references: ids only.
    async with a.db.session(a.id) as session:
        await record(
            session,
            a.id,
            AuditEntry("lead.created", target_type="lead", target_id=str(seeded.lead_id)),
            now=utcnow(),
        )
    return World(a, b, person, other, seeded, other_seeded, rows)


@pytest.fixture
def keys(settings: Settings) -> str:
    return secret_keys(settings)


async def open_and(
    db: Database, tenant: TenantCtx, keys: str, kind: dsar.DsarKind, subject: str, **how: Any
) -> uuid.UUID:
    async with db.session(tenant.id) as session:
        row = await dsar.open_request(
            session,
            tenant.owner,
            keys=keys,
            kind=kind,
            subject_kind=how.pop("subject_kind", dsar.SubjectKind.EMAIL),
            subject=subject,
            default_region=None,
            now=utcnow(),
        )
        return row.id


def archive_tables(content: bytes) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        tables = {
            name.removeprefix("json/").removesuffix(".json"): json.loads(archive.read(name))
            for name in archive.namelist()
            if name.startswith("json/")
        }
        for name in tables:
            assert f"csv/{name}.csv" in archive.namelist()
    return manifest, tables


class TestExport:
    async def test_holds_every_table_of_the_person_and_nothing_of_anyone_else(
        self, world: World, db: Database, keys: str
    ) -> None:
        # Asked in capitals: e-mail addresses match whatever their case.
        request_id = await open_and(
            db, world.a, keys, dsar.DsarKind.EXPORT, world.person.email.upper()
        )
        async with db.session(world.a.id) as session:
            export = await dsar.export_request(
                session, world.a.owner, request_id, keys=keys, now=utcnow()
            )
        manifest, tables = archive_tables(export.content)
        for table in PERSON_TABLES + REFERENCE_TABLES:
            assert tables[table], f"{table} missing from the export"
            assert manifest["tables"][table] == len(tables[table])
        assert {r["id"] for r in tables["leads"]} == {
            str(world.seeded.lead_id),
            str(world.seeded.duplicate_id),
        }
        assert [r["target_id"] for r in tables["audit_events"]] == [str(world.seeded.lead_id)]
        dumped = json.dumps(tables)
        assert world.person.email in dumped
        for needle in world.other.needles:
            assert needle not in dumped
        assert str(world.b.id) not in dumped
        async with db.session(world.a.id) as session:
            request = await dsar.access_request(session, request_id)
            assert request.status == "completed"
            assert request.result == {"tables": export.counts}
            exported = await session.scalar(
                select(AuditEvent).where(AuditEvent.action == "dsar.exported")
            )
        assert exported is not None
        assert exported.data["sha256"] == export.sha256
        assert world.person.email not in json.dumps(exported.data)

    async def test_csv_cells_are_neutralized(
        self, world: World, db: Database, urls: DatabaseUrls, keys: str
    ) -> None:
        with owner_connection(urls) as conn:
            conn.execute(
                "UPDATE leads SET company = '=HYPERLINK(\"http://evil\")' WHERE id = %s",
                (world.seeded.lead_id,),
            )
        request_id = await open_and(db, world.a, keys, dsar.DsarKind.EXPORT, world.person.phone,
                                    subject_kind=dsar.SubjectKind.PHONE)  # fmt: skip
        async with db.session(world.a.id) as session:
            export = await dsar.export_request(
                session, world.a.owner, request_id, keys=keys, now=utcnow()
            )
        with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
            leads_csv = archive.read("csv/leads.csv").decode()
        assert "'=HYPERLINK" in leads_csv


class TestErasure:
    async def test_nothing_identifying_remains_and_nobody_else_is_touched(
        self, world: World, db: Database, urls: DatabaseUrls, keys: str
    ) -> None:
        assert hits(urls, world.person.needles, world.a.id)  # the seed is really there
        other_before = hits(urls, world.other.needles, world.a.id)
        b_before = hits(urls, world.person.needles, world.b.id, shared=False)
        export_id = await open_and(db, world.a, keys, dsar.DsarKind.EXPORT, world.person.email)
        request_id = await open_and(db, world.a, keys, dsar.DsarKind.ERASURE, world.person.email)
        async with db.session(world.a.id) as session:
            summary = await dsar.erase_request(
                session,
                world.a.owner,
                request_id,
                keys=keys,
                confirmation=f"erase {world.person.email}",
                now=utcnow(),
            )
        assert set(summary.deleted) == set(PERSON_TABLES)
        assert summary.deleted["leads"] == 2
        assert summary.deleted["lead_messages"] == 2  # the unmatched WhatsApp one too
        assert summary.suppressed == {"email": 1, "phone": 1}
        assert summary.requests_cleared == 2  # this request and the earlier export request

        remaining = hits(urls, world.person.needles, world.a.id)
        assert remaining == {}, remaining
        assert hits(urls, world.other.needles, world.a.id) == other_before
        assert hits(urls, world.person.needles, world.b.id, shared=False) == b_before

        async with db.session(world.a.id) as session:
            assert (await verify_chain(session, world.a.id)).ok
            suppressed = list(await session.scalars(select(Suppression)))
            assert {(s.address_kind, s.address_hash, s.reason) for s in suppressed} == {
                ("email", address_hash(keys, "email", world.person.email), "erased"),
                ("phone", address_hash(keys, "phone", world.person.phone), "erased"),
            }
            requests = {r.id: r for r in await session.scalars(select(DsarRequest))}
            assert requests[request_id].subject is None
            assert requests[export_id].subject is None
            assert requests[request_id].status == "completed"
            assert requests[request_id].result == summary.as_result()
            erased = await session.scalar(
                select(AuditEvent).where(AuditEvent.action == "dsar.erased")
            )
            assert erased is not None
            assert erased.data["deleted"] == summary.deleted
        async with db.session(world.b.id) as session:
            assert (await verify_chain(session, world.b.id)).ok
        with owner_connection(urls) as conn:
            rep = conn.execute(
                "SELECT open_leads FROM reps WHERE id = %s", (world.rows.rep_id,)
            ).fetchone()
        assert rep is not None
        assert rep["open_leads"] == 1  # the other person's assignment

    async def test_by_lead_id_and_by_phone(
        self, world: World, db: Database, urls: DatabaseUrls, keys: str
    ) -> None:
        by_lead = await open_and(
            db, world.a, keys, dsar.DsarKind.ERASURE, str(world.other_seeded.lead_id),
            subject_kind=dsar.SubjectKind.LEAD,
        )  # fmt: skip
        async with db.session(world.a.id) as session:
            summary = await dsar.erase_request(
                session, world.a.owner, by_lead, keys=keys,
                confirmation=f"  ERASE {world.other_seeded.lead_id} ", now=utcnow(),
            )  # fmt: skip
        assert summary.deleted["leads"] == 2
        assert hits(urls, world.other.needles, world.a.id) == {}
        national = "(415) " + world.person.phone[5:8] + "-" + world.person.phone[8:]
        async with db.session(world.a.id) as session:
            row = await dsar.open_request(
                session, world.a.owner, keys=keys, kind=dsar.DsarKind.ERASURE,
                subject_kind=dsar.SubjectKind.PHONE, subject=national, default_region="US",
                now=utcnow(),
            )  # fmt: skip
            assert row.subject == world.person.phone
            await dsar.erase_request(
                session, world.a.owner, row.id, keys=keys,
                confirmation=f"erase {world.person.phone}", now=utcnow(),
            )  # fmt: skip
        assert hits(urls, world.person.needles, world.a.id) == {}

    async def test_refuses_a_wrong_confirmation_and_a_second_erasure(
        self, world: World, db: Database, keys: str
    ) -> None:
        request_id = await open_and(db, world.a, keys, dsar.DsarKind.ERASURE, world.person.email)
        with pytest.raises(dsar.ConfirmationMismatch):
            async with db.session(world.a.id) as session:
                await dsar.erase_request(
                    session, world.a.owner, request_id, keys=keys, confirmation="erase",
                    now=utcnow(),
                )  # fmt: skip
        async with db.session(world.a.id) as session:
            await dsar.erase_request(
                session, world.a.owner, request_id, keys=keys,
                confirmation=f"erase {world.person.email}", now=utcnow(),
            )  # fmt: skip
        with pytest.raises(dsar.DsarNotOpen):
            async with db.session(world.a.id) as session:
                await dsar.erase_request(
                    session, world.a.owner, request_id, keys=keys, confirmation="erase x",
                    now=utcnow(),
                )  # fmt: skip

    async def test_the_kept_suppression_blocks_the_person_arriving_again(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        from tests.outreach.test_send import approved_draft, send, setup

        tenant = await tenants.create()
        await setup(client, tenant)
        address = f"back.{uuid.uuid4().hex[:8]}@northwind.example"
        first = await send(client, tenant, await approved_draft(client, tenant, address))
        assert first.json()["status"] == "queued", first.text
        admin = await tenant.headers(Role.ADMIN)
        opened = await client.post(
            "/v1/dsar",
            json={"kind": "erasure", "subject_kind": "email", "subject": address},
            headers=admin,
        )
        assert opened.status_code == 201, opened.text
        erased = await client.post(
            f"/v1/dsar/{opened.json()['id']}/erase",
            json={"confirmation": opened.json()["confirmation"]},
            headers=admin,
        )
        assert erased.status_code == 200, erased.text
        assert erased.json()["deleted"]["messages"] == 1
        # The same person comes back through a form: a new lead, and the guard says no.
        again = await send(client, tenant, await approved_draft(client, tenant, address))
        assert again.status_code == 202, again.text
        assert again.json()["status"] == "blocked"
        assert again.json()["blocked_by"] == "suppression"


class TestCommandLine:
    async def test_export_then_erase(
        self, world: World, urls: DatabaseUrls, tmp_path: Path
    ) -> None:
        out = tmp_path / "person.zip"
        exported = await invoke_cli(
            urls, str(tmp_path), "dsar", "export", "--tenant", world.a.slug,
            "--email", world.person.email, "--out", str(out),
        )  # fmt: skip
        assert exported.exit_code == 0, exported.output
        manifest, tables = archive_tables(out.read_bytes())
        assert manifest["tables"]["leads"] == 2
        assert len(tables["messages"]) == 1
        preview = await invoke_cli(
            urls, str(tmp_path), "dsar", "erase", "--tenant", world.a.slug,
            "--email", world.person.email,
        )  # fmt: skip
        assert preview.exit_code == 1, preview.output
        assert "pass --yes" in preview.output
        assert hits(urls, [world.person.email], world.a.id)  # nothing erased yet
        both = await invoke_cli(
            urls, str(tmp_path), "dsar", "erase", "--tenant", world.a.slug,
            "--email", world.person.email, "--phone", world.person.phone, "--yes",
        )  # fmt: skip
        assert both.exit_code == 2, both.output
        erased = await invoke_cli(
            urls, str(tmp_path), "dsar", "erase", "--tenant", world.a.slug,
            "--email", world.person.email, "--yes",
        )  # fmt: skip
        assert erased.exit_code == 0, erased.output
        assert "lead_messages" in erased.output
        assert hits(urls, world.person.needles, world.a.id) == {}
