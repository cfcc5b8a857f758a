"""Retention: a sweep purges exactly what the tenant's policy says is due, keeps everything
newer (and every suppression), audits itself with the counts, leaves the audit chain
verifiable, and never touches another tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance import retention
from leadrelay.compliance.audit import verify_chain
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import ValidationFailed
from leadrelay.core.jobs import JobRuntime
from leadrelay.identity.models import Role, Tenant
from leadrelay.identity.service import system_principal
from tests.factories import TenantCtx, TenantFactory
from tests.support import run_jobs

POLICY = {
    "leads_not_contacted_days": 100,
    "messages_days": 200,
    "telemetry_days": 50,
    "outcomes_days": 300,
    "audit_days": None,
}
# Tables the sweep reports, with what `seed` puts in each and how many of those are due.
SEEDED = {
    "leads": 5,  # old uncontacted ×2, old contacted, new uncontacted, old with a conversation
    "messages": 4,  # old sent, old failed, old queued (in flight), new
    "delivery_events": 3,  # 2 old (on the new message), 1 new
    "lead_messages": 2,  # 1 old (keeps its lead: a conversation), 1 new
    "lead_outcomes": 2,  # 1 old, 1 new
}
DUE = {
    "delivery_events": 2,
    "lead_messages": 1,
    "messages": 2,
    "lead_outcomes": 1,
    "leads": 2,
}


@dataclass
class Seeded:
    kept_leads: set[uuid.UUID] = field(default_factory=set)
    purged_leads: set[uuid.UUID] = field(default_factory=set)


async def _insert(session: AsyncSession, statement: str, **values: Any) -> None:
    await session.execute(text(statement), values)


async def seed(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> Seeded:
    """One of each record type on either side of POLICY's cutoffs, as the app role."""
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    out = Seeded()
    source = uuid.uuid4()
    await _insert(
        session,
        "INSERT INTO sources (id, tenant_id, name, kind, legal_basis, status) "
        "VALUES (:id, :t, :name, 'official_api', 'consent', 'vetted')",
        id=source,
        t=tenant_id,
        name=f"src-{source.hex[:6]}",
    )

    async def lead(created: datetime, *, purged: bool) -> uuid.UUID:
        lead_id = uuid.uuid4()
        await _insert(
            session,
            "INSERT INTO leads (id, tenant_id, source_id, full_name, email, created_at, "
            "updated_at) VALUES (:id, :t, :s, 'Pat Doe', :email, :at, :at)",
            id=lead_id,
            t=tenant_id,
            s=source,
            email=f"{lead_id.hex[:10]}@old.example",
            at=created,
        )
        (out.purged_leads if purged else out.kept_leads).add(lead_id)
        return lead_id

    uncontacted = await lead(days(101), purged=True)
    await lead(days(400), purged=True)
    contacted = await lead(days(500), purged=False)
    await lead(days(99), purged=False)
    talking = await lead(days(150), purged=False)

    # A consent and provenance on a purged lead go with it (ON DELETE CASCADE).
    await _insert(
        session,
        "INSERT INTO consents (tenant_id, lead_id, channel, state, purpose, method, "
        "recorded_by, recorded_at) VALUES (:t, :l, 'email', 'granted', 'newsletter', "
        "'web form', 'test', :at)",
        t=tenant_id,
        l=uncontacted,
        at=days(101),
    )

    async def message(created: datetime, status: str) -> uuid.UUID:
        message_id = uuid.uuid4()
        await _insert(
            session,
            "INSERT INTO messages (id, tenant_id, lead_id, kind, channel, provider, dry_run, "
            "idempotency_key, status, recipient, body, content_sha256, policy_trace, "
            "created_by, created_at) VALUES (:id, :t, :l, 'one_to_one', 'email', 'dryrun', "
            "true, :key, :status, 'pat@old.example', 'Hello', :sha, '[]', 'test', :at)",
            id=message_id,
            t=tenant_id,
            l=contacted,
            key=str(message_id),
            status=status,
            sha="0" * 64,
            at=created,
        )
        return message_id

    await message(days(201), "sent")
    await message(days(365), "failed")
    await message(days(365), "queued")  # in flight: never purged under the sender
    recent = await message(days(10), "sent")

    for n, received in enumerate((days(51), days(80), days(5))):
        await _insert(
            session,
            "INSERT INTO delivery_events (tenant_id, message_id, provider, kind, "
            "provider_event_id, occurred_at, received_at, applied, raw) VALUES (:t, :m, "
            "'sendgrid', 'delivered', :event, :at, :at, true, '{}')",
            t=tenant_id,
            m=recent,
            event=f"ev-{uuid.uuid4().hex}-{n}",
            at=received,
        )
    for received in (days(60), days(3)):
        await _insert(
            session,
            "INSERT INTO lead_messages (tenant_id, lead_id, channel, direction, "
            "provider_message_id, message_type, body, received_at, raw) VALUES (:t, :l, "
            "'whatsapp', 'inbound', :pid, 'text', 'hi', :at, '{}')",
            t=tenant_id,
            l=talking,
            pid=f"wamid.{uuid.uuid4().hex}",
            at=received,
        )
    for closed in (days(301), days(299)):
        await _insert(
            session,
            "INSERT INTO lead_outcomes (tenant_id, lead_id, source, external_id, label, "
            "closed_at) VALUES (:t, :l, 'csv', :ext, 'won', :at)",
            t=tenant_id,
            l=contacted,
            ext=uuid.uuid4().hex,
            at=closed,
        )
    # An opt-out recorded long ago: suppressions outlive every policy.
    await _insert(
        session,
        "INSERT INTO suppressions (tenant_id, address_kind, address_hash, reason, source, "
        "created_by, created_at) VALUES (:t, 'email', :hash, 'opted_out', 'test', 'test', :at)",
        t=tenant_id,
        hash=uuid.uuid4().hex * 2,
        at=days(5000),
    )
    return out


async def counts(session: AsyncSession) -> dict[str, int]:
    tables = [*SEEDED, "suppressions", "consents"]
    return {
        table: int(await session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
        for table in tables
    }


async def set_policy(tenant: TenantCtx, policy: dict[str, int | None]) -> None:
    async with tenant.db.session(tenant.id) as session:
        await retention.set_retention_policy(
            session, system_principal(tenant.id), policy, now=utcnow()
        )


@pytest.fixture
async def seeded(tenants: TenantFactory) -> tuple[TenantCtx, Seeded, datetime]:
    tenant = await tenants.create()
    await set_policy(tenant, POLICY)
    now = utcnow()
    async with tenant.db.session(tenant.id) as session:
        rows = await seed(session, tenant.id, now)
    return tenant, rows, now


class TestPolicy:
    def test_defaults_keep_audit_forever_and_purge_the_rest_on_time(self) -> None:
        policy = retention.DEFAULT_POLICY.as_dict()
        assert policy == {
            "leads_not_contacted_days": 365,
            "messages_days": 730,
            "telemetry_days": 365,
            "outcomes_days": 1095,
            "audit_days": None,
        }

    def test_refuses_bad_values_field_by_field(self) -> None:
        with pytest.raises(ValidationFailed) as refused:
            retention.check_policy(
                {"messages_days": 7, "telemetry_days": "soon", "leads_days": 3, "audit_days": 0}
            )
        fields = sorted(e["field"] for e in refused.value.errors)
        assert fields == ["audit_days", "leads_days", "messages_days", "telemetry_days"]

    async def test_a_tenant_without_a_policy_gets_the_defaults(
        self, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        async with tenant.db.session(tenant.id) as session:
            row = await session.get(Tenant, tenant.id)
            assert row is not None
            assert retention.retention_policy(row) == retention.DEFAULT_POLICY

    async def test_a_change_is_stored_in_the_settings_and_audited(
        self, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        await set_policy(tenant, {"messages_days": 90, "audit_days": None})
        async with tenant.db.session(tenant.id) as session:
            row = await session.get(Tenant, tenant.id)
            assert row is not None
            assert row.settings["retention"]["messages_days"] == 90
            assert row.settings["retention"]["leads_not_contacted_days"] == 365
            event = await session.scalar(
                select(AuditEvent).where(AuditEvent.action == "retention.policy_changed")
            )
            assert event is not None
            assert event.data["before"]["messages_days"] == 730
            assert event.data["after"]["messages_days"] == 90


class TestSweep:
    async def test_purges_exactly_what_is_due_and_keeps_the_rest(
        self, seeded: tuple[TenantCtx, Seeded, datetime]
    ) -> None:
        tenant, rows, now = seeded
        async with tenant.db.session(tenant.id) as session:
            before = await counts(session)
        assert {k: before[k] for k in SEEDED} == SEEDED
        async with tenant.db.session(tenant.id) as session:
            result = await retention.sweep_tenant(session, tenant.id, now=now)
        assert result.counts == {**DUE, "audit_events": 0}
        async with tenant.db.session(tenant.id) as session:
            after = await counts(session)
            left = set(await session.scalars(text("SELECT id FROM leads")))
        assert after == {
            **{table: SEEDED[table] - DUE[table] for table in SEEDED},
            "suppressions": 1,  # never purged
            "consents": 0,  # went with its lead
        }
        assert left == rows.kept_leads

    async def test_a_second_sweep_finds_nothing_more(
        self, seeded: tuple[TenantCtx, Seeded, datetime]
    ) -> None:
        tenant, _, now = seeded
        for expected in (sum(DUE.values()), 0):
            async with tenant.db.session(tenant.id) as session:
                result = await retention.sweep_tenant(session, tenant.id, now=now)
            assert result.total == expected

    async def test_audits_the_counts_and_the_chain_still_verifies(
        self, seeded: tuple[TenantCtx, Seeded, datetime]
    ) -> None:
        tenant, _, now = seeded
        async with tenant.db.session(tenant.id) as session:
            result = await retention.sweep_tenant(session, tenant.id, now=now)
        async with tenant.db.session(tenant.id) as session:
            (event,) = await retention.recent_sweeps(session)
            report = await verify_chain(session, tenant.id)
        assert event.action == "retention.swept"
        assert event.hash == result.event_hash
        assert event.data["counts"] == {**DUE, "audit_events": 0}
        assert event.data["checkpoint_seq"] == 0
        assert set(event.data["cutoffs"]) == {k for k, v in POLICY.items() if v is not None}
        assert "@" not in str(event.data)  # ids and counts only, no addresses
        assert report.ok, report.reason
        assert report.checked >= 2  # the policy change and the sweep

    async def test_null_keeps_a_record_type_forever(
        self, seeded: tuple[TenantCtx, Seeded, datetime]
    ) -> None:
        tenant, _, now = seeded
        await set_policy(tenant, dict.fromkeys(POLICY))
        async with tenant.db.session(tenant.id) as session:
            result = await retention.sweep_tenant(session, tenant.id, now=now)
            after = await counts(session)
        assert result.total == 0
        assert result.cutoffs == {}
        assert {k: after[k] for k in SEEDED} == SEEDED

    async def test_another_tenant_is_untouched(
        self, seeded: tuple[TenantCtx, Seeded, datetime], tenants: TenantFactory
    ) -> None:
        tenant, _, now = seeded
        other = await tenants.create()
        await set_policy(other, dict.fromkeys(POLICY))  # keeps everything
        async with other.db.session(other.id) as session:
            await seed(session, other.id, now)
        async with tenant.db.session(tenant.id) as session:
            await retention.sweep_tenant(session, tenant.id, now=now)
        async with other.db.session(other.id) as session:
            after = await counts(session)
            swept = await session.scalar(
                select(func.count()).where(AuditEvent.action == "retention.swept")
            )
        assert {k: after[k] for k in SEEDED} == SEEDED
        assert swept == 0

    async def test_audit_links_past_the_cutoff_are_cut_and_the_chain_still_verifies(
        self, seeded: tuple[TenantCtx, Seeded, datetime]
    ) -> None:
        """The chain's prefix goes through `audit_cut_prefix`: the checkpoint moves to the last
        link older than the cutoff, those links go, the newest stays, verification passes. The
        app role cannot delete a link itself (it holds no DELETE on the table at all)."""
        tenant, _, now = seeded
        await set_policy(tenant, {**POLICY, "audit_days": 30})
        later = now + timedelta(days=31)  # every link so far is past the cutoff
        async with tenant.db.session(tenant.id) as session:
            links = await session.scalar(select(func.count()).select_from(AuditEvent))
            result = await retention.sweep_tenant(session, tenant.id, now=later)
        assert links is not None
        assert links >= 2
        assert result.counts["audit_events"] == links - 1  # the newest link stays
        async with tenant.db.session(tenant.id) as session:
            (event,) = await retention.recent_sweeps(session)
            report = await verify_chain(session, tenant.id)
            left = await session.scalar(select(func.count()).select_from(AuditEvent))
        assert event.data["counts"]["audit_events"] == links - 1
        assert event.data["checkpoint_seq"] == links - 1
        assert left == 2  # the kept link and the sweep's own event
        assert report.ok, report.reason
        with pytest.raises(DBAPIError, match=r"permission denied|append-only"):
            async with tenant.db.session(tenant.id) as session:
                await session.execute(text("DELETE FROM audit_events"))


class TestPeriodicJob:
    async def test_the_daily_job_sweeps_every_tenant(
        self,
        seeded: tuple[TenantCtx, Seeded, datetime],
        job_runtime: JobRuntime,
    ) -> None:
        tenant, rows, _ = seeded
        assert retention.sweep_retention.name == "compliance.sweep_retention"
        await retention.sweep_retention.defer_async(timestamp=int(utcnow().timestamp()))
        await run_jobs()
        async with tenant.db.session(tenant.id) as session:
            (event,) = await retention.recent_sweeps(session)
            left = set(await session.scalars(text("SELECT id FROM leads")))
        assert event.actor_type == "system"
        assert event.data["counts"] == {**DUE, "audit_events": 0}
        assert left == rows.kept_leads


async def test_a_manager_cannot_change_the_policy(tenants: TenantFactory) -> None:
    """The permission is an admin's (COMPLIANCE_MANAGE): checked in test_retention_api too."""
    from leadrelay.identity.permissions import MATRIX, Permission

    assert Permission.COMPLIANCE_MANAGE in MATRIX[Role.ADMIN]
    assert Permission.COMPLIANCE_MANAGE in MATRIX[Role.OWNER]
    assert Permission.COMPLIANCE_MANAGE not in MATRIX[Role.MANAGER]
