"""Compliance settings in a real browser: the consent records (the workspace's list with its
filters, one lead's history and state per channel) and retention (the policy form with its
field errors, a sweep now with its counts, the last runs from the audit trail, and the
read-only view of a role that may not change it)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import text

from leadrelay.compliance.audit import verify_chain
from leadrelay.core.clock import utcnow
from leadrelay.identity.models import Role
from leadrelay.identity.service import system_principal
from leadrelay.outreach.models import ConsentState
from leadrelay.outreach.suppression import record_consent
from tests.compliance.test_retention import DUE, POLICY, seed, set_policy
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import open_from_nav, sign_in
from tests.factories import TenantCtx, TenantFactory

pytestmark = pytest.mark.e2e


async def add_lead(tenant: TenantCtx, name: str) -> uuid.UUID:
    lead_id, source = uuid.uuid4(), uuid.uuid4()
    async with tenant.db.session(tenant.id) as session:
        await session.execute(
            text(
                "INSERT INTO sources (id, tenant_id, name, kind, legal_basis, status) "
                "VALUES (:s, :t, :n, 'official_api', 'consent', 'vetted')"
            ),
            {"s": source, "t": tenant.id, "n": f"Form {source.hex[:6]}"},
        )
        await session.execute(
            text(
                "INSERT INTO leads (id, tenant_id, source_id, full_name, email) "
                "VALUES (:id, :t, :s, :name, :email)"
            ),
            {"id": lead_id, "t": tenant.id, "s": source, "name": name, "email": None},
        )
    return lead_id


@pytest.fixture
async def consenting(tenants: TenantFactory) -> tuple[TenantCtx, uuid.UUID, uuid.UUID]:
    """Ada: e-mail granted then withdrawn, SMS granted. Bob: WhatsApp granted."""
    tenant = await tenants.create("Consent Browser Co")
    ada = await add_lead(tenant, "Ada Lovelace")
    bob = await add_lead(tenant, "Bob Babbage")
    start = utcnow() - timedelta(days=3)
    records = (
        (ada, "email", ConsentState.GRANTED, "newsletter", "web form", start),
        (ada, "sms", ConsentState.GRANTED, "appointment reminders", "call", start),
        (
            ada,
            "email",
            ConsentState.WITHDRAWN,
            "newsletter",
            "unsubscribe link",
            start + timedelta(days=1),
        ),
        (bob, "whatsapp", ConsentState.GRANTED, "quotes", "reply YES", start),
    )
    for lead_id, channel, state, purpose, method, at in records:
        async with tenant.db.session(tenant.id) as session:
            await record_consent(
                session,
                system_principal(tenant.id),
                lead_id=lead_id,
                channel=channel,
                state=state,
                purpose=purpose,
                method=method,
                evidence="Form v3 wording" if method == "web form" else None,
                now=at,
            )
    return tenant, ada, bob


class TestConsentRecords:
    async def test_the_list_filters_and_a_leads_history(
        self,
        page: Page,
        consenting: tuple[TenantCtx, uuid.UUID, uuid.UUID],
        screenshot: Screenshot,
    ) -> None:
        tenant, ada, _ = consenting
        await sign_in(page, await tenant.user(Role.MANAGER))
        await open_from_nav(page, "Consents")
        rows = page.get_by_test_id("consent-row")
        await expect(rows).to_have_count(4)
        await expect(page.get_by_test_id("consent-count")).to_have_text("4")
        await expect(rows.first).to_have_attribute("data-state", "withdrawn")  # newest first
        await expect(rows.first).to_contain_text("unsubscribe link")
        await screenshot(page, "consents")

        await page.get_by_test_id("filter-channel").select_option("email")
        await page.get_by_test_id("filter-apply").click()
        await expect(page).to_have_url(re.compile(r"channel=email"))
        await expect(rows).to_have_count(2)
        await page.get_by_test_id("filter-state").select_option("withdrawn")
        await page.get_by_test_id("filter-apply").click()
        await expect(rows).to_have_count(1)
        await expect(page.get_by_test_id("consent-count")).to_have_text("1")
        await page.get_by_test_id("filter-channel").select_option("voice")
        await page.get_by_test_id("filter-apply").click()
        await expect(page.get_by_test_id("no-consents")).to_be_visible()

        await page.goto("/console/consents")
        await page.get_by_test_id("consent-lead").first.click()
        await expect(page).to_have_url(re.compile(f"/console/consents/leads/{ada}$"))
        await expect(page.get_by_test_id("lead-name")).to_have_text("Ada Lovelace")
        state = page.get_by_test_id("channel-state")
        await expect(state.and_(page.locator("[data-channel=email]"))).to_have_attribute(
            "data-state", "withdrawn"
        )
        await expect(state.and_(page.locator("[data-channel=sms]"))).to_have_attribute(
            "data-state", "granted"
        )
        await expect(state.and_(page.locator("[data-channel=voice]"))).to_have_attribute(
            "data-state", "none"
        )
        history = page.get_by_test_id("history-row")
        await expect(history).to_have_count(3)
        await expect(page.get_by_test_id("consent-history")).to_contain_text("Form v3 wording")
        await screenshot(page, "consents-lead")

        # Another workspace's lead is not found here.
        response = await page.goto(f"/console/consents/leads/{uuid.uuid4()}")
        assert response is not None
        assert response.status == 404


class TestRetention:
    async def test_policy_form_sweep_now_and_last_runs(
        self, page: Page, tenants: TenantFactory, screenshot: Screenshot
    ) -> None:
        tenant = await tenants.create("Retention Browser Co")
        async with tenant.db.session(tenant.id) as session:
            await seed(session, tenant.id, utcnow())
        await sign_in(page, await tenant.user(Role.ADMIN))
        await open_from_nav(page, "Retention")
        await expect(page.get_by_test_id("days-messages_days")).to_have_value("730")
        await expect(page.get_by_test_id("days-audit_days")).to_have_value("")
        await expect(page.get_by_test_id("no-runs")).to_be_visible()
        await screenshot(page, "retention")

        # Too short for messages (the cooldown reads them), and not a number: both marked.
        await page.get_by_test_id("days-messages_days").fill("5")
        await page.get_by_test_id("days-telemetry_days").fill("soon")
        await page.get_by_test_id("retention-save").click()
        await expect(page.locator("#messages_days-error")).to_contain_text("From 30")
        await expect(page.locator("#telemetry_days-error")).to_contain_text("whole number")
        await expect(page.get_by_test_id("days-telemetry_days")).to_have_value("soon")
        await expect(page.get_by_test_id("days-messages_days")).to_have_attribute(
            "aria-invalid", "true"
        )

        for name, days in POLICY.items():
            await page.get_by_test_id(f"days-{name}").fill("" if days is None else str(days))
        await page.get_by_test_id("retention-save").click()
        notices = page.get_by_test_id("retention-notices")
        await expect(notices.locator(".notice--success")).to_contain_text("saved")
        await expect(page.get_by_test_id("days-messages_days")).to_have_value("200")

        await page.get_by_test_id("retention-run-now").click()  # hx-confirm accepted
        await expect(notices.locator(".notice--success")).to_contain_text(
            f"{sum(DUE.values())} records purged"
        )
        counts = page.get_by_test_id("sweep-counts")
        for table, count in DUE.items():
            await expect(counts.locator(f"[data-count={table}]")).to_have_text(str(count))
        run = page.get_by_test_id("retention-run-row")
        await expect(run).to_have_count(1)
        await expect(run.get_by_test_id("run-total")).to_have_text(str(sum(DUE.values())))
        await screenshot(page, "retention-swept")

        await page.reload()
        await expect(page.get_by_test_id("retention-run-row")).to_have_count(1)
        async with tenant.db.session(tenant.id) as session:
            assert (await verify_chain(session, tenant.id)).ok

    async def test_a_manager_reads_the_policy_but_cannot_change_or_run_it(
        self, page: Page, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create("Retention Reader Co")
        await set_policy(tenant, {"messages_days": 90})
        await sign_in(page, await tenant.user(Role.MANAGER))
        await open_from_nav(page, "Retention")
        await expect(page.get_by_test_id("read-only")).to_be_visible()
        await expect(page.get_by_test_id("policy-messages_days")).to_contain_text("90 days")
        await expect(page.get_by_test_id("retention-form")).to_have_count(0)
        await expect(page.get_by_test_id("retention-run")).to_have_count(0)
