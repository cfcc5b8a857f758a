"""Outreach in a real browser: an approved draft sent and delivered by the dry-run channel, and
an unapproved one the policy guard blocked, listed newest first with the dry-run marker and
filtered; each message with its text as recorded (the unsubscribe placeholder shown) and its
trace, the blocked step highlighted; the policy form refusing to leave dry-run without the typed
confirmation, then accepting it while the server's setting still forces dry-run; suppressions
added, found by a check, lifted after a confirm; a do-not-call file imported with its row
report; and a reviewer who reads all of it and is refused every change."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from leadrelay.capture.provider_models import LeadMessage, MessageChannel, MessageDirection
from leadrelay.console import outreach as outreach_console
from leadrelay.console import suppressions as suppressions_console
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.identity.service import get_tenant
from leadrelay.outreach import service
from leadrelay.outreach.models import Message
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import open_from_nav, sign_in
from tests.e2e.test_console_scoring_routing import csrf_token
from tests.factories import TenantCtx, TenantFactory
from tests.outreach import test_send as sending
from tests.support import run_jobs

pytestmark = pytest.mark.e2e

CHECKS = [
    "consent",
    "suppression",
    "dnc",
    "approval",
    "daily_cap",
    "domain_throttle",
    "country_call_cap",
    "cooldown",
    "schedule",
    "local_time",
]
DNC_CSV = "phone,name\n+12127365000,Front desk\n(415) 555-2671,Sales\nnot a number,Broken\n"
DNC_CSV += "+1 212 736 5000,Front desk again\n"


@dataclass
class Workspace:
    tenant: TenantCtx
    db: Database
    client: httpx.AsyncClient
    settings: Settings
    sent_id: str
    blocked_id: str


@pytest.fixture
async def workspace(
    tenants: TenantFactory,
    db: Database,
    client: httpx.AsyncClient,
    settings: Settings,
    job_runtime: JobRuntime,
) -> Workspace:
    """A sender, a source, an approved draft sent and delivered (dry-run), then an unapproved
    draft for another lead, which the guard blocks."""
    tenant = await tenants.create("Outreach Co")
    await sending.setup(client, tenant)
    approved = await sending.approved_draft(client, tenant, "dana@northwind.example")
    queued = await sending.send(client, tenant, approved)
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "queued"
    await run_jobs()  # the dry-run channel records it
    pending = await sending.approved_draft(client, tenant, "fox@acme.example", approve=False)
    blocked = await sending.send(client, tenant, pending)
    assert blocked.json()["status"] == "blocked", blocked.text
    return Workspace(tenant, db, client, settings, queued.json()["id"], blocked.json()["id"])


def message_row(page: Page, message_id: str) -> Any:
    return page.locator(f"[data-testid=message-row][data-message-id='{message_id}']")


def csv_upload(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "mimeType": "text/csv", "buffer": text.encode()}


async def shoot(page: Page, screenshot: Screenshot, name: str) -> None:
    """A full-page screenshot from the top (an htmx swap may have scrolled the page)."""
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, name)


async def save_policy(page: Page) -> int:
    """Click save and wait for the answer (the panel is swapped when it arrives)."""
    async with page.expect_response(
        lambda r: r.url.endswith("/console/outreach/policy") and r.request.method == "POST"
    ) as answer:
        await page.get_by_test_id("policy-save").click()
    return (await answer.value).status


async def audit_actions(workspace: Workspace, prefix: str) -> list[str]:
    admin = await workspace.tenant.headers(Role.ADMIN)
    events = (await workspace.client.get("/v1/audit", headers=admin)).json()
    return sorted(e["action"] for e in events if e["action"].startswith(prefix))


class TestOutreach:
    async def test_history_detail_trace_and_the_policy_form(
        self,
        page: Page,
        workspace: Workspace,
        screenshot: Screenshot,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.ADMIN))
        await open_from_nav(page, "Outreach")
        await expect(page.get_by_test_id("mode-banner")).to_have_attribute("data-mode", "dry-run")
        await expect(page.get_by_test_id("mode-banner")).to_contain_text("LEADRELAY_DRY_RUN")
        summary = page.get_by_test_id("summary")
        await expect(summary.locator("[data-count=sent] .counts__value")).to_have_text("1")
        await expect(summary.locator("[data-count=blocked] .counts__value")).to_have_text("1")
        await expect(summary.locator("[data-count=queued] .counts__value")).to_have_text("0")
        await expect(summary.locator("[data-count=deferred] .counts__value")).to_have_text("0")

        rows = page.get_by_test_id("message-row")
        await expect(rows).to_have_count(2)
        # Newest first: the blocked one was decided last.
        await expect(rows.first).to_have_attribute("data-message-id", workspace.blocked_id)
        sent = message_row(page, workspace.sent_id)
        await expect(sent.get_by_test_id("message-status")).to_have_text("sent")
        await expect(sent.get_by_test_id("dry-run-marker")).to_have_text("dry run")
        await expect(sent).to_contain_text("@northwind.example")
        await expect(sent.get_by_role("link", name="Dana Scully")).to_have_attribute(
            "href", re.compile(r"/console/leads/[0-9a-f-]{36}$")
        )
        await expect(sent).to_contain_text("every check passed")
        blocked = message_row(page, workspace.blocked_id)
        await expect(blocked.get_by_test_id("message-status")).to_have_text("blocked")
        await expect(blocked.get_by_test_id("blocked-by")).to_have_text("Approval")
        await expect(blocked).to_contain_text("approv")
        assert "dana@northwind.example" not in await page.content()  # leads, not addresses
        await shoot(page, screenshot, "outreach")

        # A page at a time: "Load more" brings the older ones under the first.
        monkeypatch.setattr(outreach_console, "PAGE_SIZE", 1)
        await page.reload()
        await expect(rows).to_have_count(1)
        await expect(page.get_by_test_id("messages-count")).to_have_text("1+")
        await page.locator("#messages-more").get_by_role("link", name="Load more").click()
        await expect(rows).to_have_count(2)
        await expect(rows.nth(1)).to_have_attribute("data-message-id", workspace.sent_id)
        await expect(page.locator("#messages-more")).to_have_count(0)
        monkeypatch.undo()

        await page.get_by_test_id("status-filter").select_option("blocked")
        await expect(rows).to_have_count(1)
        await expect(page).to_have_url(re.compile(r"status=blocked"))
        await page.get_by_test_id("status-filter").select_option("")
        await page.get_by_test_id("blocked-by-filter").select_option("daily_cap")
        await expect(page.get_by_test_id("no-messages")).to_be_visible()
        await page.get_by_test_id("blocked-by-filter").select_option("")
        await page.get_by_test_id("dry-run-filter").check()
        await expect(page.locator("#messages-list h2")).to_contain_text("Dry-run outbox")
        await expect(rows).to_have_count(2)
        await expect(page).to_have_url(re.compile(r"dry_run=only"))
        await shoot(page, screenshot, "outreach-dry-run-outbox")

        # --- the sent message: its text as recorded and a trace that passed ------------------
        await message_row(page, workspace.sent_id).get_by_test_id("message-link").click()
        await expect(page).to_have_url(
            re.compile(f"/console/outreach/messages/{workspace.sent_id}$")
        )
        await expect(page.locator("h1")).to_contain_text("E-mail to Dana Scully")
        await expect(page.get_by_test_id("message-status")).to_have_text("sent")
        await expect(page.get_by_test_id("dry-run-marker")).to_be_visible()
        await expect(page.get_by_test_id("provider-id")).to_have_text(f"dryrun-{workspace.sent_id}")
        await expect(page.get_by_test_id("attempts")).to_have_text("1")
        await expect(page.get_by_test_id("message-subject")).not_to_be_empty()
        placeholder = page.get_by_test_id("message-body").get_by_test_id("placeholder")
        await expect(placeholder).to_have_text("{{unsubscribe_url}}")
        await expect(page.get_by_test_id("placeholder-note")).to_contain_text("signed unsubscribe")
        steps = page.get_by_test_id("trace-step")
        await expect(steps).to_have_count(len(CHECKS))
        for index, check in enumerate(CHECKS):
            await expect(steps.nth(index)).to_have_attribute("data-check", check)
        await expect(page.locator("[data-testid=trace-step][data-outcome=block]")).to_have_count(0)
        await expect(page.locator("[data-check=consent]")).to_contain_text("passed")
        await shoot(page, screenshot, "outreach-message-sent")

        # --- the blocked one: the approval step highlighted, the rest not reached ------------
        await page.goto(f"/console/outreach/messages/{workspace.blocked_id}")
        await expect(page.get_by_test_id("block")).to_contain_text("Blocked by approval")
        step = page.locator("[data-testid=trace-step][data-outcome=block]")
        await expect(step).to_have_count(1)
        await expect(step).to_have_attribute("data-check", "approval")
        await expect(step).to_have_class(re.compile(r"\bis-blocked\b"))
        await expect(step).to_contain_text("blocked")
        reached = page.locator("[data-testid=trace-step][data-outcome=not_reached]")
        await expect(reached).to_have_count(len(CHECKS) - 4)
        await expect(reached.first).to_have_attribute("data-check", "daily_cap")
        await expect(page.get_by_test_id("provider-id")).to_have_text("—")
        await expect(page.get_by_test_id("attempts")).to_have_text("0")
        await shoot(page, screenshot, "outreach-message-blocked")

        # --- the policy: leaving dry-run needs the typed confirmation -------------------------
        await page.goto("/console/outreach")
        await page.get_by_test_id("policy-link").click()
        await expect(page.locator("h1")).to_have_text("Outreach policy")
        panel = page.get_by_test_id("policy")
        await expect(page.get_by_test_id("mode-effective")).to_contain_text("Dry-run")
        await expect(page.get_by_test_id("mode-tenant")).to_contain_text("dry-run")
        await expect(page.get_by_test_id("mode-server")).to_contain_text("LEADRELAY_DRY_RUN=true")
        await shoot(page, screenshot, "outreach-policy")

        await page.get_by_test_id("mode-live").check()
        assert await save_policy(page) == 422
        error = page.locator("#confirmation-error")
        await expect(error).to_contain_text(f"Type exactly: {service.LIVE_CONFIRMATION}")
        await expect(page.get_by_test_id("confirmation")).to_have_attribute("aria-invalid", "true")
        await expect(panel).to_have_attribute("data-tenant-dry-run", "true")
        await expect(page.get_by_test_id("mode-live")).to_be_checked()  # the form kept its values
        await shoot(page, screenshot, "outreach-policy-refused")

        # A wrong phrase is refused the same way.
        await page.get_by_test_id("confirmation").fill("yes please")
        assert await save_policy(page) == 422
        await expect(error).to_contain_text("Type exactly")
        await expect(panel).to_have_attribute("data-tenant-dry-run", "true")

        await page.get_by_test_id("confirmation").fill(service.LIVE_CONFIRMATION)
        assert await save_policy(page) == 200
        notices = page.get_by_test_id("policy-notices")
        await expect(notices.locator(".notice--success")).to_contain_text("saved")
        await expect(notices.locator(".notice--warning")).to_contain_text("still forces dry-run")
        await expect(panel).to_have_attribute("data-tenant-dry-run", "false")
        await expect(panel).to_have_attribute("data-dry-run", "true")
        await expect(page.get_by_test_id("mode-tenant")).to_contain_text("live allowed")
        await expect(page.get_by_test_id("mode-effective")).to_contain_text("Dry-run")
        await expect(page.get_by_test_id("forced-note")).to_contain_text("still forces dry-run")
        await expect(page.get_by_test_id("confirmation")).to_have_value("")
        await shoot(page, screenshot, "outreach-policy-live-but-forced")

        # Lowering a cap needs no confirmation; raising one above its default does.
        await page.locator("input[name=cap_email]").fill("50")
        assert await save_policy(page) == 200
        await expect(notices.locator(".notice--success")).to_contain_text("saved")
        await expect(page.locator("input[name=cap_email]")).to_have_value("50")
        await page.locator("input[name=cap_email]").fill("5000")
        assert await save_policy(page) == 422
        await expect(error).to_contain_text("Type exactly")
        await expect(page.get_by_test_id("mode-tenant")).to_contain_text("live allowed")
        async with workspace.db.session(workspace.tenant.id) as session:
            tenant = await get_tenant(session, workspace.tenant.id)
            view = service.outreach_policy(tenant, workspace.settings)
            assert view.tenant_dry_run is False
            assert view.daily_caps["email"] == 50
        assert await audit_actions(workspace, "outreach.") == [
            "outreach.policy_changed",
            "outreach.policy_changed",
        ]

        # Back on the list, the banner still says dry-run: the server forces it.
        await open_from_nav(page, "Outreach")
        await expect(page.get_by_test_id("mode-banner")).to_have_attribute("data-mode", "dry-run")


async def post_policy(page: Page, act: Callable[[], Awaitable[None]]) -> int:
    """Submit the policy form (save, add a row, remove one, Enter) and wait for the answer."""
    async with page.expect_response(
        lambda r: r.url.endswith("/console/outreach/policy") and r.request.method == "POST"
    ) as answer:
        await act()
    return (await answer.value).status


class TestCountryRules:
    async def test_add_refuse_save_see_back_and_remove_country_rows(
        self,
        page: Page,
        tenants: TenantFactory,
        db: Database,
        client: httpx.AsyncClient,
        settings: Settings,
        screenshot: Screenshot,
    ) -> None:
        tenant = await tenants.create("Countries Co")
        await sign_in(page, await tenant.user(Role.ADMIN))
        await page.goto("/console/outreach/policy")
        await expect(page.get_by_test_id("no-country-rules")).to_be_visible()
        rows = page.get_by_test_id("country-row")

        # --- a row added, filled wrongly: each mistake at its field -------------------------
        assert await post_policy(page, page.get_by_test_id("country-add").click) == 200
        await expect(rows).to_have_count(1)
        await expect(page.get_by_test_id("policy-notices")).to_contain_text("Row added")
        first = rows.nth(0)
        # A new row starts with the default windows' days: calls on weekdays, messages daily.
        await expect(first.locator("[data-testid=country-day]:checked")).to_have_count(5)
        await expect(first.locator("[data-testid=country-message-day]:checked")).to_have_count(7)
        await first.get_by_test_id("country-code").fill("ZZ")
        await first.get_by_test_id("country-cap").fill("3")
        await first.get_by_test_id("country-start").fill("18:00")
        await first.get_by_test_id("country-end").fill("09:00")
        await first.get_by_test_id("country-message-start").fill("9h")
        await first.get_by_test_id("country-message-end").fill("20:00")
        assert await post_policy(page, page.get_by_test_id("policy-save").click) == 422
        await expect(page.locator("#country-0-code-error")).to_have_text(
            "ZZ is not an ISO 3166 alpha-2 country code."
        )
        await expect(page.locator("#country-0-end-error")).to_contain_text("Ends before it starts")
        await expect(page.locator("#country-0-message_start-error")).to_have_text(
            "A time as HH:MM, such as 09:30."
        )
        await expect(first.get_by_test_id("country-message-start")).to_have_attribute(
            "aria-invalid", "true"
        )
        await expect(first.get_by_test_id("country-message-end")).to_have_value("20:00")  # kept
        await expect(first.get_by_test_id("country-code")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#country-0-cap-error")).to_have_count(0)
        await expect(first.get_by_test_id("country-start")).to_have_value("18:00")  # kept
        await first.get_by_test_id("country-code").fill("uk")
        assert await post_policy(page, page.get_by_test_id("policy-save").click) == 422
        await expect(page.locator("#country-0-code-error")).to_contain_text("Did you mean GB?")
        await shoot(page, screenshot, "outreach-policy-country-refused")

        # --- fixed, a second country added, saved, and read back ----------------------------
        await first.get_by_test_id("country-code").fill("GB")
        await first.get_by_test_id("country-start").fill("11:00")
        await first.get_by_test_id("country-end").fill("12:00")
        await first.locator("[data-testid=country-day][data-day='4']").uncheck()  # no Friday
        await first.get_by_test_id("country-message-start").fill("")
        await first.get_by_test_id("country-message-end").fill("")
        assert (
            await post_policy(page, page.get_by_test_id("country-add").click) == 200
        )  # what was typed stays
        await expect(rows).to_have_count(2)
        await expect(first.get_by_test_id("country-code")).to_have_value("GB")
        second = rows.nth(1)
        await second.get_by_test_id("country-code").fill("FR")
        await second.get_by_test_id("country-cap").fill("2")
        # SMS and WhatsApp to France from 07:30: earlier than the default 08:00.
        await second.get_by_test_id("country-message-start").fill("07:30")
        await second.get_by_test_id("country-message-end").fill("20:00")
        await second.locator("[data-testid=country-message-day][data-day='6']").uncheck()
        assert await post_policy(page, page.get_by_test_id("policy-save").click) == 422
        await expect(page.locator("#confirmation-error")).to_contain_text("Type exactly")
        await expect(page.locator("#country-1-message_start-error")).to_have_text(
            "Mon–Sat 07:30–20:00 is wider than the default (every day 08:00–21:00)"
        )
        await expect(second.get_by_test_id("country-message-start")).to_have_value("07:30")
        await page.get_by_test_id("confirmation").fill(service.LIVE_CONFIRMATION)
        assert await post_policy(page, page.get_by_test_id("policy-save").click) == 200
        await expect(page.get_by_test_id("policy-notices")).to_contain_text("saved")
        await page.reload()
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0)).to_have_attribute("data-country", "FR")  # in code order
        await expect(rows.nth(0).get_by_test_id("country-cap")).to_have_value("2")
        await expect(rows.nth(0).get_by_test_id("country-start")).to_have_value("")
        await expect(rows.nth(0).get_by_test_id("country-message-start")).to_have_value("07:30")
        await expect(rows.nth(0).get_by_test_id("country-message-end")).to_have_value("20:00")
        await expect(
            rows.nth(0).locator("[data-testid=country-message-day]:checked")
        ).to_have_count(6)
        gb = page.locator("[data-testid=country-row][data-country=GB]")
        await expect(gb.get_by_test_id("country-cap")).to_have_value("3")
        await expect(gb.get_by_test_id("country-end")).to_have_value("12:00")
        await expect(gb.locator("[data-testid=country-day]:checked")).to_have_count(4)
        await expect(gb.get_by_test_id("country-message-start")).to_have_value("")
        await shoot(page, screenshot, "outreach-policy-countries")
        async with db.session(tenant.id) as session:
            view = service.outreach_policy(await get_tenant(session, tenant.id), settings)
        assert view.country_call_caps == {"FR": 2, "GB": 3}
        assert view.country_call_windows == {
            "GB": {"start": "11:00", "end": "12:00", "days": [0, 1, 2, 3]}
        }
        assert view.country_message_windows == {
            "FR": {"start": "07:30", "end": "20:00", "days": [0, 1, 2, 3, 4, 5]}
        }

        # Enter in a field saves (nothing changed), it does not remove the first row.
        assert (
            await post_policy(page, lambda: gb.get_by_test_id("country-cap").press("Enter")) == 200
        )
        await expect(page.get_by_test_id("policy-notices")).to_contain_text("Nothing changed")
        await expect(rows).to_have_count(2)

        # --- removed from the form, then saved ----------------------------------------------
        fr_remove = page.get_by_role("button", name="Remove the row for FR")
        assert await post_policy(page, fr_remove.click) == 200
        await expect(rows).to_have_count(1)
        await expect(rows.nth(0)).to_have_attribute("data-country", "GB")
        async with db.session(tenant.id) as session:
            view = service.outreach_policy(await get_tenant(session, tenant.id), settings)
        assert view.country_call_caps == {"FR": 2, "GB": 3}  # not saved yet
        assert await post_policy(page, page.get_by_test_id("policy-save").click) == 200
        await page.reload()
        await expect(rows).to_have_count(1)
        async with db.session(tenant.id) as session:
            view = service.outreach_policy(await get_tenant(session, tenant.id), settings)
        assert view.country_call_caps == {"GB": 3}

        # Audited like the rest of the form, with the rules before and after.
        admin = await tenant.headers(Role.ADMIN)
        events = (
            await client.get(
                "/v1/audit", params={"action": "outreach.policy_changed"}, headers=admin
            )
        ).json()
        assert [e["data"]["after"]["country_call_caps"] for e in events] == [
            {"GB": 3},
            {"FR": 2, "GB": 3},
        ]

        # A cap below zero, as a hand-made request would send it: refused at its field.
        token = await csrf_token(page)
        defaults = {
            "csrf_token": token,
            "mode": "dry_run",
            "cap_email": "200",
            "cap_sms": "100",
            "cap_whatsapp": "100",
            "cap_voice": "50",
            "domain_hourly_cap": "5",
            "cooldown_days": "30",
        }
        form = {**defaults, "country-0-code": "DE", "country-0-cap": "-1"}
        response = await page.request.post("/console/outreach/policy", form=form)
        assert response.status == 422
        html = await response.text()
        assert 'id="country-0-cap-error"' in html
        assert "A whole number from 0 to 1,000,000" in html
        # A post without the table (an older page) leaves the rules as they are.
        form = {**defaults, "cooldown_days": "20"}
        response = await page.request.post("/console/outreach/policy", form=form)
        assert response.status == 200
        async with db.session(tenant.id) as session:
            view = service.outreach_policy(await get_tenant(session, tenant.id), settings)
        assert (view.cooldown_days, view.country_call_caps) == (20, {"GB": 3})


class TestSuppressions:
    async def test_the_lead_page_shows_the_conversation_both_ways(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        """What we sent (with what providers reported) and what the lead answered (with how
        it was read), newest first, on the lead's own page."""
        async with workspace.db.session(workspace.tenant.id) as session:
            message = await session.get(Message, uuid.UUID(workspace.sent_id))
            assert message is not None
            lead_id = message.lead_id
            message.delivery_status = "opened"
            session.add(
                LeadMessage(
                    tenant_id=workspace.tenant.id,
                    lead_id=lead_id,
                    message_id=message.id,
                    channel=MessageChannel.EMAIL,
                    direction=MessageDirection.INBOUND,
                    provider_message_id=f"<{uuid.uuid4()}@northwind.example>",
                    message_type="text",
                    body="Thanks Sam, Thursday at 3 works for me.",
                    received_at=utcnow(),
                    raw={},
                    classification="reply",
                )
            )
        await sign_in(page, await workspace.tenant.user(Role.ADMIN))
        await page.goto(f"/console/leads/{lead_id}")
        card = page.get_by_test_id("lead-conversation")
        items = card.get_by_test_id("conversation-item")
        await expect(items).to_have_count(2)
        await expect(items.first).to_have_attribute("data-direction", "inbound")
        await expect(items.first).to_contain_text("Thursday at 3")
        await expect(items.first.get_by_test_id("conversation-status")).to_have_text("reply")
        await expect(items.nth(1)).to_have_attribute("data-direction", "outbound")
        await expect(items.nth(1).get_by_test_id("conversation-status")).to_have_text("opened")
        await expect(items.nth(1)).to_contain_text("dry run")
        await items.nth(1).get_by_role("link").click()
        await expect(page).to_have_url(
            re.compile(rf"/console/outreach/messages/{workspace.sent_id}$")
        )
        await shoot(page, screenshot, "lead-conversation")

    async def test_add_check_lift_and_import_a_dnc_file(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        dialogs: list[str] = []

        def remember(dialog: Dialog) -> None:  # the page fixture accepts it
            dialogs.append(dialog.message)

        page.on("dialog", remember)
        await sign_in(page, await workspace.tenant.user(Role.MANAGER))
        await open_from_nav(page, "Suppressions")
        await expect(page.get_by_test_id("hash-note")).to_contain_text("keyed hash")
        await expect(page.get_by_test_id("no-suppressions")).to_be_visible()
        await expect(page.get_by_test_id("no-dnc")).to_be_visible()
        await shoot(page, screenshot, "suppressions-empty")

        # --- an address that is none is refused at its field ----------------------------------
        add = page.get_by_test_id("add-form")
        await add.get_by_test_id("add-address").fill("not-an-email")
        await add.get_by_test_id("add-submit").click()
        await expect(page.locator("#add-address-error")).to_contain_text("Not an e-mail address")
        await expect(page.get_by_test_id("no-suppressions")).to_be_visible()

        # --- an opt-out: listed without its address ------------------------------------------
        await add.get_by_test_id("add-address").fill("Grace.Hopper@Navy.example")
        await add.get_by_test_id("add-note").fill("asked on a call")
        await add.get_by_test_id("add-submit").click()
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("Suppressed (opted out)")
        rows = page.get_by_test_id("suppression-row")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("E-mail")
        await expect(rows.first).to_contain_text("opted out")
        await expect(rows.first).to_contain_text("console")
        await expect(rows.first).to_contain_text("asked on a call")
        assert "navy" not in (await page.content()).lower()
        await shoot(page, screenshot, "suppressions")

        # Added again: it is already there, the first reason stays.
        await add.get_by_test_id("add-address").fill("grace.hopper@navy.example")
        await add.get_by_test_id("add-reason").select_option("complaint")
        await add.get_by_test_id("add-submit").click()
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("Already suppressed")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-reason", "opted_out")

        # --- the check finds it --------------------------------------------------------------
        check = page.get_by_test_id("check-form")
        await check.get_by_test_id("check-address").fill("GRACE.HOPPER@navy.example")
        await check.get_by_test_id("check-submit").click()
        result = page.get_by_test_id("check-result")
        await expect(result).to_have_attribute("data-suppressed", "true")
        await expect(result).to_contain_text("Suppressed: opted out")
        await expect(result).to_contain_text("asked on a call")
        await expect(page.get_by_test_id("check-lift")).to_be_visible()
        await shoot(page, screenshot, "suppressions-check")

        # --- lifted from its row, after the confirm ------------------------------------------
        await rows.first.get_by_test_id("lift").click()
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("Lifted")
        assert len(dialogs) == 1
        assert "opted back in" in dialogs[0]
        await expect(page.get_by_test_id("no-suppressions")).to_be_visible()
        await check.get_by_test_id("check-address").fill("grace.hopper@navy.example")
        await check.get_by_test_id("check-submit").click()
        await expect(result).to_have_attribute("data-suppressed", "false")
        await expect(result).to_contain_text("Not suppressed")
        assert await audit_actions(workspace, "suppression.") == [
            "suppression.added",
            "suppression.lifted",
        ]

        # --- a do-not-call file: the row report, the list summary, the check -----------------
        dnc = page.get_by_test_id("dnc-form")
        await dnc.get_by_test_id("dnc-list-name").fill("US National DNC")
        await dnc.get_by_test_id("dnc-region").fill("us")
        await dnc.get_by_test_id("dnc-file").set_input_files(csv_upload("dnc.csv", DNC_CSV))
        await dnc.get_by_test_id("dnc-submit").click()
        report = page.get_by_test_id("dnc-report")
        await expect(report).to_contain_text("dnc.csv → US National DNC")
        await expect(report.locator("[data-count=rows]")).to_have_text("4")
        await expect(report.locator("[data-count=added]")).to_have_text("2")
        await expect(report.locator("[data-count=already_listed]")).to_have_text("1")
        await expect(report.locator("[data-count=rejected]")).to_have_text("1")
        rejected = report.get_by_test_id("rejected-line")
        await expect(rejected).to_have_count(1)
        await expect(rejected).to_have_attribute("data-line", "4")
        await expect(rejected).to_contain_text("not a number")
        listed = page.locator("[data-testid=dnc-list][data-list='US National DNC']")
        await expect(listed.get_by_test_id("dnc-count")).to_have_text("2")
        await shoot(page, screenshot, "suppressions-dnc-import")

        await dnc.get_by_test_id("dnc-list-name").fill("US National DNC")
        await dnc.get_by_test_id("dnc-file").set_input_files(csv_upload("dnc.csv", DNC_CSV))
        await dnc.get_by_test_id("dnc-submit").click()
        await expect(report.locator("[data-count=added]")).to_have_text("0")
        await expect(report.locator("[data-count=already_listed]")).to_have_text("3")
        await expect(listed.get_by_test_id("dnc-count")).to_have_text("2")

        await check.get_by_test_id("check-kind").select_option("phone")
        await check.get_by_test_id("check-address").fill("212-736-5000")
        await check.locator("input[name=region]").fill("US")
        await check.get_by_test_id("check-submit").click()
        await expect(result).to_have_attribute("data-suppressed", "false")
        await expect(page.get_by_test_id("check-dnc")).to_contain_text("US National DNC")
        await expect(result).to_contain_text("+12127365000")
        await shoot(page, screenshot, "suppressions-check-dnc")


class TestReadOnly:
    async def test_a_reviewer_reads_everything_and_changes_nothing(
        self,
        page: Page,
        workspace: Workspace,
        screenshot: Screenshot,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        rep = await workspace.tenant.headers(Role.REP)
        added = await workspace.client.post(
            "/v1/suppressions",
            json={"kind": "phone", "address": "+14155552671", "note": "texted STOP"},
            headers=rep,
        )
        assert added.status_code == 201, added.text
        suppression_id = added.json()["id"]
        quiet = await workspace.client.patch(
            "/v1/outreach/policy",
            json={"country_message_windows": {"FR": {"start": "09:00", "end": "20:00"}}},
            headers=await workspace.tenant.headers(Role.ADMIN),
        )
        assert quiet.status_code == 200, quiet.text

        await sign_in(page, await workspace.tenant.user(Role.REVIEWER))
        await open_from_nav(page, "Outreach")
        await expect(page.get_by_test_id("message-row")).to_have_count(2)
        await page.goto(f"/console/outreach/messages/{workspace.blocked_id}")
        await expect(page.locator("[data-outcome=block]")).to_have_attribute(
            "data-check", "approval"
        )
        await page.goto("/console/outreach/policy")
        await expect(page.get_by_test_id("policy-form")).to_have_count(0)
        await expect(page.get_by_test_id("read-only")).to_contain_text("not change it")
        await expect(page.get_by_test_id("policy-read-only")).to_contain_text("200 per day")
        france = page.locator("[data-testid=country-row][data-country=FR]")
        await expect(france.locator("td").nth(2)).to_contain_text("the default (Mon–Fri 11:00")
        await expect(france.locator("td").nth(3)).to_contain_text("09:00–20:00 Mon Tue")
        await shoot(page, screenshot, "outreach-policy-read-only")

        older = await workspace.client.post(
            "/v1/suppressions",
            json={"kind": "email", "address": "old@acme.example", "reason": "complaint"},
            headers=rep,
        )
        assert older.status_code == 201, older.text
        await open_from_nav(page, "Suppressions")
        rows = page.get_by_test_id("suppression-row")
        await expect(rows).to_have_count(2)
        await expect(rows.first).to_contain_text("complaint")  # newest first
        await expect(rows.nth(1)).to_contain_text("texted STOP")
        monkeypatch.setattr(suppressions_console, "PAGE_SIZE", 1)
        await page.reload()
        await expect(rows).to_have_count(1)
        await page.locator("#suppressions-more").get_by_role("link", name="Load more").click()
        await expect(rows).to_have_count(2)
        await expect(page.locator("#suppressions-more")).to_have_count(0)
        monkeypatch.undo()
        await expect(page.get_by_test_id("lift")).to_have_count(0)
        await expect(page.get_by_test_id("add-card")).to_have_count(0)
        await expect(page.get_by_test_id("dnc-import-card")).to_have_count(0)
        # Checking writes nothing: reading the lists is enough.
        check = page.get_by_test_id("check-form")
        await check.get_by_test_id("check-kind").select_option("phone")
        await check.get_by_test_id("check-address").fill("+1 415 555 2671")
        await check.get_by_test_id("check-submit").click()
        await expect(page.get_by_test_id("check-result")).to_have_attribute(
            "data-suppressed", "true"
        )
        await expect(page.get_by_test_id("check-lift")).to_have_count(0)
        await shoot(page, screenshot, "suppressions-read-only")

        token = await csrf_token(page)
        for path, form in (
            (
                "/console/outreach/policy",
                {
                    "mode": "live",
                    "cap_email": "200",
                    "cap_sms": "100",
                    "cap_whatsapp": "100",
                    "cap_voice": "50",
                    "domain_hourly_cap": "5",
                    "cooldown_days": "30",
                    "confirmation": service.LIVE_CONFIRMATION,
                },
            ),
            ("/console/suppressions", {"kind": "email", "address": "x@example.com"}),
            (f"/console/suppressions/{suppression_id}/lift", {}),
        ):
            response = await page.request.post(path, form={"csrf_token": token, **form})
            assert response.status == 403, (path, response.status)
        big_file = b"+12127365000\n" * 170_000
        assert len(big_file) > workspace.settings.max_body_bytes
        upload = await page.request.post(
            "/console/suppressions/dnc",
            multipart={
                "csrf_token": token,
                "list_name": "Sneaky",
                # Over the default body limit: the upload route has its own, so the role decides.
                "file": {"name": "dnc.csv", "mimeType": "text/csv", "buffer": big_file},
            },
        )
        assert upload.status == 403
        # Without the token, even reading the lists by POST is refused.
        assert (
            await page.request.post(
                "/console/suppressions/check", form={"kind": "email", "address": "a@b.example"}
            )
        ).status == 403

        async with workspace.db.session(workspace.tenant.id) as session:
            tenant = await get_tenant(session, workspace.tenant.id)
            assert service.outreach_policy(tenant, workspace.settings).tenant_dry_run is True
        listed = await workspace.client.get("/v1/suppressions", headers=rep)
        assert [row["id"] for row in listed.json()] == [older.json()["id"], suppression_id]
        assert (await workspace.client.get("/v1/dnc", headers=rep)).json() == []
