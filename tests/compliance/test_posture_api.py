"""The posture and sending-domain routes over HTTP, and leaving dry-run refused while the sending
domain fails its checks (unless the risk is accepted, which is audited); the app under test asks
a real DNS server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from leadrelay.app import create_app
from leadrelay.core.db import Database
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.identity.service import get_tenant
from leadrelay.outreach import service
from tests.compliance.dns_zone import ZoneServer, serving
from tests.compliance.test_domains import ZONE, configured
from tests.factories import TenantCtx, TenantFactory

LIVE = {"dry_run": False, "confirmation": service.LIVE_CONFIRMATION}


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with serving(ZONE) as server:
        yield server


@pytest.fixture
async def dns_client(
    zone: ZoneServer, settings: Settings, db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its resolver pointed at the loopback zone."""
    app = create_app(configured(settings, zone.port), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client


async def with_sender(client: httpx.AsyncClient, tenant: TenantCtx, email: str) -> None:
    response = await client.patch(
        "/v1/drafting/sender",
        json={"name": "Sam", "company": "Relay Ltd", "postal_address": "1 Main St", "email": email},
        headers=await tenant.headers(Role.ADMIN),
    )
    assert response.status_code == 200, response.text


async def audit_actions(client: httpx.AsyncClient, tenant: TenantCtx) -> list[str]:
    events = (await client.get("/v1/audit", headers=await tenant.headers())).json()
    return sorted(e["action"] for e in events)


class TestPosture:
    async def test_a_manager_reads_every_item(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()

        response = await client.get(
            "/v1/compliance/posture", headers=await tenant.headers(Role.MANAGER)
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "warn"  # no retention sweep yet, no sender
        assert [i["key"] for i in body["items"]] == [
            "dry_run",
            "approval",
            "unsubscribe",
            "dsar",
            "retention",
            "audit_chain",
            "domains",
            "suppression",
        ]
        first = body["items"][0]
        assert set(first) == {"key", "label", "status", "value", "detail", "href"}
        assert (first["status"], first["href"]) == ("pass", "/console/outreach/policy")

    @pytest.mark.parametrize("role", [Role.REVIEWER, Role.REP, Role.OPERATOR])
    async def test_roles_without_compliance_read_are_refused(
        self, client: httpx.AsyncClient, tenants: TenantFactory, role: Role
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers(role)

        for path in ("/v1/compliance/posture", "/v1/compliance/domains"):
            assert (await client.get(path, headers=headers)).status_code == 403


class TestDomains:
    async def test_the_senders_domain_checked_against_dns(
        self, dns_client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        await with_sender(dns_client, tenant, "sam@good.example")

        response = await dns_client.get("/v1/compliance/domains", headers=await tenant.headers())

        assert response.status_code == 200, response.text
        (domain,) = response.json()
        assert (domain["domain"], domain["status"]) == ("good.example", "pass")
        assert domain["spf"]["record"] == "v=spf1 include:_spf.mail.example -all"
        assert domain["dmarc"]["detail"] == "p=reject"
        assert domain["dkim"]["status"] == "pass"

    async def test_unknown_without_dns_and_empty_without_a_sender(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant, bare = await tenants.create(), await tenants.create()
        await with_sender(client, tenant, "sam@good.example")

        checked = await client.get("/v1/compliance/domains", headers=await tenant.headers())
        nothing = await client.get("/v1/compliance/domains", headers=await bare.headers())

        assert [d["status"] for d in checked.json()] == ["unknown"]
        assert nothing.json() == []


class TestLeavingDryRun:
    async def test_refused_while_the_domain_fails_then_allowed_when_the_risk_is_accepted(
        self, dns_client: httpx.AsyncClient, tenants: TenantFactory, db: Database
    ) -> None:
        tenant = await tenants.create()
        await with_sender(dns_client, tenant, "sam@twospf.example")
        admin = await tenant.headers(Role.ADMIN)

        refused = await dns_client.patch("/v1/outreach/policy", json=LIVE, headers=admin)
        accepted = await dns_client.patch(
            "/v1/outreach/policy", json={**LIVE, "accept_domain_risk": True}, headers=admin
        )

        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        (error,) = refused.json()["errors"]
        assert error["field"] == "accept_domain_risk"
        assert "twospf.example: SPF fails" in error["reason"]
        assert "DMARC fails: no DMARC record" in error["reason"]
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["tenant_dry_run"] is False
        actions = await audit_actions(dns_client, tenant)
        assert actions.count("compliance.domain_risk_accepted") == 1
        assert actions.count("outreach.policy_changed") == 1  # the refused one left nothing

    async def test_a_passing_domain_and_an_unknown_one_do_not_block(
        self,
        dns_client: httpx.AsyncClient,
        client: httpx.AsyncClient,
        tenants: TenantFactory,
        settings: Settings,
        db: Database,
    ) -> None:
        good, offline = await tenants.create(), await tenants.create()
        await with_sender(dns_client, good, "sam@good.example")
        await with_sender(client, offline, "sam@twospf.example")  # no DNS server: unknown

        passed = await dns_client.patch(
            "/v1/outreach/policy", json=LIVE, headers=await good.headers(Role.ADMIN)
        )
        unknown = await client.patch(
            "/v1/outreach/policy", json=LIVE, headers=await offline.headers(Role.ADMIN)
        )

        assert passed.status_code == 200, passed.text
        assert unknown.status_code == 200, unknown.text
        async with db.session(offline.id) as session:
            tenant = await get_tenant(session, offline.id)
            assert service.outreach_policy(tenant, settings).tenant_dry_run is False
        assert "compliance.domain_risk_accepted" not in await audit_actions(client, offline)

    async def test_going_back_to_dry_run_never_asks_dns(
        self, dns_client: httpx.AsyncClient, tenants: TenantFactory, zone: ZoneServer
    ) -> None:
        tenant = await tenants.create()
        await with_sender(dns_client, tenant, "sam@nowhere-else.example")
        admin = await tenant.headers(Role.ADMIN)
        asked = len(zone.questions)

        back = await dns_client.patch("/v1/outreach/policy", json={"dry_run": True}, headers=admin)
        caps = await dns_client.patch(
            "/v1/outreach/policy", json={"daily_caps": {"email": 3}}, headers=admin
        )

        assert (back.status_code, caps.status_code) == (200, 200)
        assert len(zone.questions) == asked
