"""The compliance posture: each item's pass, warn or fail from the state seeded into a tenant of
the real database (RLS-bound sessions), and one tenant's state never showing in another's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from leadrelay.capture.models import Lead, LegalBasis, Source, SourceKind
from leadrelay.compliance import posture
from leadrelay.compliance.audit import AuditEntry, append_events
from leadrelay.compliance.domains import AuthStatus
from leadrelay.compliance.models import DsarRequest
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.settings import Settings
from leadrelay.drafting.compose import UNSUBSCRIBE_PLACEHOLDER
from leadrelay.identity.models import Tenant
from leadrelay.outreach.models import Message, MessageKind, MessageStatus, Suppression
from tests.compliance.dns_zone import ZoneServer, serving
from tests.compliance.test_domains import ZONE, configured
from tests.factories import TenantCtx, TenantFactory
from tests.support import owner_connection

PASS, WARN, FAIL, UNKNOWN = AuthStatus.PASS, AuthStatus.WARN, AuthStatus.FAIL, AuthStatus.UNKNOWN


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with serving(ZONE) as server:
        yield server


async def snapshot(
    tenant: TenantCtx, settings: Settings
) -> tuple[posture.Posture, dict[str, posture.PostureItem]]:
    async with tenant.db.session(tenant.id) as session:
        result = await posture.compliance_posture(session, tenant.id, settings, now=utcnow())
    return result, {item.key: item for item in result.items}


async def set_tenant_settings(tenant: TenantCtx, **values: Any) -> None:
    async with tenant.db.session(tenant.id) as session:
        row = await session.get(Tenant, tenant.id)
        assert row is not None
        row.settings = {**(row.settings or {}), **values}


async def add_emails(
    db: Database, tenant_id: uuid.UUID, *, with_link: int, without: int, dry_run: bool = True
) -> None:
    async with db.session(tenant_id) as session:
        source = Source(
            tenant_id=tenant_id,
            name=f"Form {uuid.uuid4().hex[:6]}",
            kind=SourceKind.OFFICIAL_API,
            legal_basis=LegalBasis.CONSENT,
        )
        session.add(source)
        await session.flush()
        lead = Lead(tenant_id=tenant_id, source_id=source.id, full_name="Dana Scully")
        session.add(lead)
        await session.flush()
        bodies = [f"Hello.\n\nUnsubscribe: {UNSUBSCRIBE_PLACEHOLDER}"] * with_link
        bodies += ["Hello, no footer here."] * without
        for body in bodies:
            session.add(
                Message(
                    tenant_id=tenant_id,
                    lead_id=lead.id,
                    kind=MessageKind.ONE_TO_ONE,
                    channel="email",
                    provider="dryrun" if dry_run else "smtp",
                    dry_run=dry_run,
                    idempotency_key=uuid.uuid4().hex,
                    status=MessageStatus.SENT,
                    recipient="dana@northwind.example",
                    recipient_domain="northwind.example",
                    subject="Hi",
                    body=body,
                    content_sha256="0" * 64,
                    policy_trace=[],
                    created_by="test",
                )
            )


async def add_dsar(tenant: TenantCtx, *, age: timedelta, due_in: timedelta) -> None:
    now = utcnow()
    async with tenant.db.session(tenant.id) as session:
        session.add(
            DsarRequest(
                tenant_id=tenant.id,
                kind="export",
                status="open",
                subject_kind="email",
                subject="dana@northwind.example",
                subject_hash="a" * 64,
                requested_by="test",
                requested_at=now - age,
                due_at=now + due_in,
            )
        )


async def sweep_recorded(tenant: TenantCtx, *, ago: timedelta) -> None:
    async with tenant.db.session(tenant.id) as session:
        await append_events(
            session,
            tenant.id,
            [AuditEntry(action=posture.RETENTION_ACTION, data={"counts": {}})],
            now=utcnow() - ago,
        )


class TestDefaults:
    async def test_a_new_tenant_is_safe_but_has_no_sweep_and_no_sender(
        self, tenants: TenantFactory, settings: Settings
    ) -> None:
        tenant = await tenants.create()

        result, items = await snapshot(tenant, settings)

        assert list(items) == [
            "dry_run",
            "approval",
            "unsubscribe",
            "dsar",
            "retention",
            "audit_chain",
            "domains",
            "suppression",
        ]
        statuses = {key: item.status for key, item in items.items()}
        assert statuses == {
            "dry_run": PASS,
            "approval": PASS,
            "unsubscribe": PASS,
            "dsar": PASS,
            "retention": WARN,  # never ran
            "audit_chain": PASS,
            "domains": WARN,  # no sender e-mail
            "suppression": PASS,
        }
        assert result.status is WARN
        assert items["retention"].value == "never ran"
        assert items["domains"].href == posture.SENDER_URL
        assert all(item.href.startswith("/console/") for item in items.values())


class TestItems:
    async def test_live_sending_warns_and_approval_off_fails_when_live(
        self, tenants: TenantFactory, settings: Settings
    ) -> None:
        tenant = await tenants.create()
        await set_tenant_settings(tenant, approvals={"approval_required": False})

        allowed = settings.model_copy(update={"dry_run": False})  # the server lets mail leave
        _, dry = await snapshot(tenant, allowed)
        await set_tenant_settings(tenant, outreach={"dry_run": False})
        _, live = await snapshot(tenant, allowed)
        _, held = await snapshot(tenant, settings.model_copy(update={"dry_run": True}))

        assert (dry["approval"].status, dry["approval"].value) == (WARN, "off")
        assert (live["dry_run"].status, live["dry_run"].value) == (WARN, "live")
        assert live["approval"].status is FAIL
        assert held["dry_run"].status is PASS
        assert held["dry_run"].value == "dry-run (forced by the server)"

    async def test_four_eyes_is_named(self, tenants: TenantFactory, settings: Settings) -> None:
        tenant = await tenants.create()
        await set_tenant_settings(tenant, approvals={"four_eyes": True})

        _, items = await snapshot(tenant, settings)

        assert (items["approval"].status, items["approval"].value) == (
            PASS,
            "required, four eyes",
        )

    @pytest.mark.parametrize(
        ("with_link", "without", "status", "value"),
        [(5, 0, PASS, "100.0%"), (99, 1, WARN, "99.0%"), (3, 1, FAIL, "75.0%")],
    )
    async def test_unsubscribe_coverage_of_sent_email(
        self,
        tenants: TenantFactory,
        db: Database,
        settings: Settings,
        with_link: int,
        without: int,
        status: AuthStatus,
        value: str,
    ) -> None:
        tenant = await tenants.create()
        await add_emails(db, tenant.id, with_link=with_link, without=without)

        _, items = await snapshot(tenant, settings)

        assert (items["unsubscribe"].status, items["unsubscribe"].value) == (status, value)
        total = with_link + without
        assert f"{with_link} of {total} sent e-mails" in items["unsubscribe"].detail

    async def test_open_requests_by_their_deadline(
        self, tenants: TenantFactory, settings: Settings
    ) -> None:
        tenant = await tenants.create()
        await add_dsar(tenant, age=timedelta(days=3), due_in=timedelta(days=27))
        _, far = await snapshot(tenant, settings)
        await add_dsar(tenant, age=timedelta(days=26), due_in=timedelta(days=4))
        _, soon = await snapshot(tenant, settings)
        await add_dsar(tenant, age=timedelta(days=31), due_in=-timedelta(days=1))
        _, late = await snapshot(tenant, settings)

        assert (far["dsar"].status, far["dsar"].value) == (PASS, "1 open")
        assert (soon["dsar"].status, soon["dsar"].value) == (WARN, "2 open")
        assert (late["dsar"].status, late["dsar"].value) == (FAIL, "1 overdue")
        assert "3 open, the oldest 31 days old" in late["dsar"].detail

    @pytest.mark.parametrize(
        ("ago", "status"),
        [(timedelta(hours=5), PASS), (timedelta(days=3), WARN), (timedelta(days=9), FAIL)],
    )
    async def test_the_last_retention_sweep(
        self, tenants: TenantFactory, settings: Settings, ago: timedelta, status: AuthStatus
    ) -> None:
        tenant = await tenants.create()
        await sweep_recorded(tenant, ago=ago)

        _, items = await snapshot(tenant, settings)

        assert items["retention"].status is status

    async def test_a_broken_audit_chain_fails(
        self, tenants: TenantFactory, settings: Settings, urls: DatabaseUrls
    ) -> None:
        tenant = await tenants.create()
        await sweep_recorded(tenant, ago=timedelta(hours=1))
        _, before = await snapshot(tenant, settings)
        with owner_connection(urls) as connection:  # the head no longer matches its last link
            connection.execute(
                "UPDATE audit_heads SET hash = %s WHERE tenant_id = %s", ("f" * 64, tenant.id)
            )

        result, after = await snapshot(tenant, settings)

        assert before["audit_chain"].status is PASS
        assert (after["audit_chain"].status, after["audit_chain"].value) == (FAIL, "broken")
        assert result.status is FAIL

    async def test_sending_domains_from_dns(
        self, tenants: TenantFactory, settings: Settings, zone: ZoneServer
    ) -> None:
        chosen = configured(settings, zone.port)
        good, bad = await tenants.create(), await tenants.create()
        await set_tenant_settings(good, sender={"email": "sam@good.example"})
        await set_tenant_settings(bad, sender={"email": "sam@twospf.example"})

        _, good_items = await snapshot(good, chosen)
        _, bad_items = await snapshot(bad, chosen)
        _, offline = await snapshot(good, settings)  # no DNS server configured

        assert (good_items["domains"].status, good_items["domains"].value) == (
            PASS,
            "good.example",
        )
        assert bad_items["domains"].status is FAIL
        assert "SPF fails: twospf.example publishes 2 SPF records" in bad_items["domains"].detail
        assert offline["domains"].status is UNKNOWN

    async def test_an_empty_suppression_list_after_live_sending_warns(
        self, tenants: TenantFactory, db: Database, settings: Settings
    ) -> None:
        tenant = await tenants.create()
        await add_emails(db, tenant.id, with_link=1, without=0, dry_run=False)
        _, empty = await snapshot(tenant, settings)
        async with db.session(tenant.id) as session:
            session.add(
                Suppression(
                    tenant_id=tenant.id,
                    address_kind="email",
                    address_hash="b" * 64,
                    reason="opted_out",
                    source="unsubscribe link",
                    created_by="test",
                )
            )
        _, one = await snapshot(tenant, settings)

        assert (empty["suppression"].status, empty["suppression"].value) == (WARN, "empty")
        assert (one["suppression"].status, one["suppression"].value) == (PASS, "1 entry")


class TestTenantIsolation:
    async def test_another_tenants_state_never_shows(
        self, tenants: TenantFactory, db: Database, settings: Settings
    ) -> None:
        quiet, busy = await tenants.create(), await tenants.create()
        await add_emails(db, busy.id, with_link=1, without=3, dry_run=False)
        await add_dsar(busy, age=timedelta(days=40), due_in=-timedelta(days=10))
        await sweep_recorded(busy, ago=timedelta(hours=1))

        _, busy_items = await snapshot(busy, settings)
        _, quiet_items = await snapshot(quiet, settings)

        assert busy_items["unsubscribe"].status is FAIL
        assert busy_items["dsar"].status is FAIL
        assert busy_items["retention"].status is PASS
        assert quiet_items["unsubscribe"].value == "no e-mail sent"
        assert quiet_items["dsar"].value == "none open"
        assert quiet_items["retention"].value == "never ran"
        assert quiet_items["suppression"].status is PASS

    async def test_a_session_bound_to_one_tenant_cannot_read_another(
        self, tenants: TenantFactory, db: Database, settings: Settings
    ) -> None:
        mine, theirs = await tenants.create(), await tenants.create()

        async with db.session(mine.id) as session:
            with pytest.raises(posture.NotFound):
                await posture.compliance_posture(session, theirs.id, settings, now=utcnow())
