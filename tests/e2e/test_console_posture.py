"""The compliance posture in a real browser, against an app whose resolver asks a real DNS server
on loopback: a manager opens it from the navigation and reads each safeguard as a pass, warn or
fail card with its link; the sending domain fails SPF and DMARC, which the outreach policy shows
beside the dry-run switch and which stops an admin leaving dry-run until the risk is accepted
(audited); a reviewer neither sees the page in the navigation nor may open it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.outreach import service
from tests.compliance.dns_zone import ZoneServer, serving
from tests.compliance.test_domains import ZONE, configured
from tests.conftest import free_port
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import open_from_nav, sign_in
from tests.e2e.test_console_outreach import save_policy, shoot
from tests.factories import TenantCtx, TenantFactory
from tests.live import serve

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def zone() -> Iterator[ZoneServer]:
    with serving(ZONE) as server:
        yield server


@pytest.fixture(scope="module")
def dns_server(zone: ZoneServer, settings: Settings) -> Iterator[str]:
    """The app served on loopback, its resolver pointed at the zone."""
    with serve(configured(settings, zone.port), free_port()) as base:
        yield base


@pytest.fixture
async def dns_page(browser: Browser, dns_server: str) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=dns_server, viewport={"width": 1360, "height": 860}
    )
    context.set_default_timeout(10_000)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def tenant(tenants: TenantFactory, client: httpx.AsyncClient) -> TenantCtx:
    """A workspace sending from twospf.example: two SPF records, no DMARC record."""
    created = await tenants.create("Posture Co")
    response = await client.patch(
        "/v1/drafting/sender",
        json={
            "name": "Sam Patel",
            "company": "Posture Co",
            "postal_address": "1 Market Street, Springfield",
            "email": "sam@twospf.example",
        },
        headers=await created.headers(Role.ADMIN),
    )
    assert response.status_code == 200, response.text
    return created


def card(page: Page, key: str) -> Locator:
    return page.locator(f"[data-testid=posture-item][data-key={key}]")


class TestPosture:
    async def test_a_manager_reads_the_cards_and_an_admin_meets_the_domain_gate(
        self,
        dns_page: Page,
        tenant: TenantCtx,
        client: httpx.AsyncClient,
        screenshot: Screenshot,
    ) -> None:
        page = dns_page
        await sign_in(page, await tenant.user(Role.MANAGER))
        await open_from_nav(page, "Compliance posture")
        await expect(page.get_by_test_id("posture-item")).to_have_count(8)
        await expect(page.get_by_test_id("posture-status")).to_have_attribute("data-status", "fail")
        await expect(card(page, "dry_run")).to_have_attribute("data-status", "pass")
        await expect(card(page, "approval")).to_have_attribute("data-status", "pass")
        await expect(card(page, "audit_chain")).to_have_attribute("data-status", "pass")
        retention = card(page, "retention")
        await expect(retention).to_have_attribute("data-status", "warn")
        await expect(retention.get_by_test_id("item-value")).to_have_text("never ran")
        domains = card(page, "domains")
        await expect(domains).to_have_attribute("data-status", "fail")
        await expect(domains.get_by_test_id("item-value")).to_have_text("twospf.example")
        await expect(domains.get_by_test_id("item-detail")).to_contain_text("2 SPF records")
        await expect(domains.get_by_test_id("item-fix")).to_have_attribute(
            "href", "/console/outreach/policy"
        )
        report = page.locator("[data-testid=domain-report][data-domain='twospf.example']")
        await expect(report.locator("[data-check=spf]")).to_have_attribute("data-status", "fail")
        await expect(report.locator("[data-check=dmarc]")).to_contain_text("no DMARC record")
        await expect(report.locator("[data-check=dkim]")).to_have_attribute("data-status", "fail")
        await shoot(page, screenshot, "compliance-posture")

        # The fix link leads to the outreach policy, the domain's checks beside the switch.
        await domains.get_by_test_id("item-fix").click()
        await expect(page.locator("h1")).to_have_text("Outreach policy")
        policy_report = page.get_by_test_id("dry-run-state").get_by_test_id("domain-report")
        await expect(policy_report).to_have_attribute("data-status", "fail")

        # --- an admin: leaving dry-run is refused until the risk is accepted -----------------
        await page.context.clear_cookies()  # signed out
        await sign_in(page, await tenant.user(Role.ADMIN))
        await page.goto("/console/outreach/policy")
        panel = page.get_by_test_id("policy")
        await page.get_by_test_id("mode-live").check()
        await page.get_by_test_id("confirmation").fill(service.LIVE_CONFIRMATION)
        assert await save_policy(page) == 422
        await expect(page.locator("#accept_domain_risk-error")).to_contain_text(
            "twospf.example: SPF fails"
        )
        await expect(panel).to_have_attribute("data-tenant-dry-run", "true")
        await shoot(page, screenshot, "outreach-policy-domain-refused")

        await page.get_by_test_id("accept-domain-risk").locator("input").check()
        await page.get_by_test_id("confirmation").fill(service.LIVE_CONFIRMATION)
        assert await save_policy(page) == 200
        await expect(panel).to_have_attribute("data-tenant-dry-run", "false")
        events = (await client.get("/v1/audit", headers=await tenant.headers())).json()
        actions = [e["action"] for e in events]
        assert actions.count("compliance.domain_risk_accepted") == 1

        # Live now (the server still forces dry-run, which the posture counts as safe).
        await page.goto("/console/posture")
        await expect(card(page, "dry_run").get_by_test_id("item-value")).to_have_text(
            "dry-run (forced by the server)"
        )

    async def test_a_reviewer_has_no_posture_page(self, dns_page: Page, tenant: TenantCtx) -> None:
        page = dns_page
        await sign_in(page, await tenant.user(Role.REVIEWER))
        nav = page.locator("nav.sidebar")
        await expect(nav.get_by_role("link", name="Outreach", exact=True)).to_be_visible()
        await expect(nav.get_by_role("link", name="Compliance posture")).to_have_count(0)

        response = await page.goto("/console/posture")

        assert response is not None
        assert response.status == 403
