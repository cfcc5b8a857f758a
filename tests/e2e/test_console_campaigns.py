"""Campaigns in a real browser: a campaign defined in the form (a call to action and a time
zone the service refuses shown at their fields, a name already used at the name), activated,
run now (every lead drafted and awaiting approval), run again once a reviewer approved the
drafts (two queued, the suppressed lead blocked and stopped), the reports compared in a stacked
bar chart, paused, resumed and stopped after a confirm; and a reviewer who reads all of it and is
refused every change."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from leadrelay.identity.service import get_tenant
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import open_from_nav, sign_in
from tests.e2e.test_console_scoring_routing import csrf_token
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_call_schedule import (
    approved_call_campaign,
    next_in_paris,
    release_at,
    run_at,
    seed_callers,
)
from tests.outreach.test_campaigns import STEPS, seed
from tests.support import run_jobs

pytestmark = pytest.mark.e2e

ZONE = "Europe/Paris"
LEADS = [
    {"email": "ada@engines.example", "full_name": "Ada Lovelace", "company": "Engines"},
    {"email": "grace@navy.example", "full_name": "Grace Hopper", "company": "Navy"},
    {"email": "gone@acme.example", "full_name": "Gone Away", "company": "Acme"},
]
SUPPRESSED = "gone@acme.example"


@dataclass
class Workspace:
    tenant: TenantCtx
    db: Database
    client: httpx.AsyncClient
    lead_ids: list[str]


@pytest.fixture
async def workspace(
    tenants: TenantFactory, db: Database, client: httpx.AsyncClient, job_runtime: JobRuntime
) -> Workspace:
    """A sender, a legitimate-interest source "Form", three leads from it (one of them
    suppressed), and the workspace's time zone set to Paris."""
    tenant = await tenants.create("Campaign Co")
    async with db.session(tenant.id) as session:
        row = await get_tenant(session, tenant.id)
        row.settings = {**(row.settings or {}), "timezone": ZONE}
    lead_ids = await seed(client, tenant, LEADS, sender=True)
    rep = await tenant.headers(Role.REP)
    suppressed = await client.post(
        "/v1/suppressions", json={"kind": "email", "address": SUPPRESSED}, headers=rep
    )
    assert suppressed.status_code == 201, suppressed.text
    return Workspace(tenant, db, client, lead_ids)


async def shoot(page: Page, screenshot: Screenshot, name: str) -> None:
    """A full-page screenshot from the top (an htmx swap may have scrolled the page)."""
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, name)


async def click_and_wait(page: Page, test_id: str, path: str) -> int:
    """Click a button that posts to `path` and wait for the answer (swapped when it arrives)."""
    async with page.expect_response(
        lambda r: r.url.endswith(path) and r.request.method == "POST"
    ) as answer:
        await page.get_by_test_id(test_id).click()
    return (await answer.value).status


def counter(run: Any, key: str) -> Any:
    return run.locator(f"[data-counter='{key}'] [data-testid=counter-value]")


async def chart_data(page: Page) -> dict[str, list[int]]:
    """The runs chart's series by key, oldest run first."""
    config = json.loads(await page.get_by_test_id("runs-chart-data").text_content() or "{}")
    return {dataset["key"]: dataset["data"] for dataset in config["data"]["datasets"]}


async def audit_actions(workspace: Workspace) -> list[str]:
    admin = await workspace.tenant.headers(Role.ADMIN)
    events = (await workspace.client.get("/v1/audit", headers=admin)).json()
    return sorted(e["action"] for e in events if e["action"].startswith("campaign."))


class TestCampaigns:
    async def test_create_activate_run_approve_run_pause_resume_stop(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        dialogs: list[str] = []

        def remember(dialog: Dialog) -> None:  # the page fixture accepts it
            dialogs.append(dialog.message)

        page.on("dialog", remember)
        await sign_in(page, await workspace.tenant.user(Role.MANAGER))
        await open_from_nav(page, "Campaigns")
        await expect(page.get_by_test_id("no-campaigns")).to_be_visible()
        form = page.get_by_test_id("campaign-form")
        await expect(form.get_by_test_id("campaign-timezone")).to_have_value(ZONE)
        await expect(form.get_by_test_id("campaign-send-time")).to_have_value("10:00")
        await expect(form.get_by_test_id("step-row")).to_have_count(5)
        await shoot(page, screenshot, "campaigns-empty")

        # --- a call to action and a time zone the service refuses: shown at their fields -----
        rows = form.get_by_test_id("step-row")
        await form.get_by_test_id("campaign-name").fill("Spring follow-up")
        await form.get_by_test_id("audience-source").select_option(label="Form")
        await rows.nth(0).get_by_test_id("step-channel").select_option("email")
        await rows.nth(1).get_by_test_id("step-channel").select_option("email")
        await rows.nth(1).get_by_test_id("step-delay").fill("3")
        await rows.nth(1).get_by_test_id("step-tone").select_option("direct")
        await rows.nth(1).get_by_test_id("step-cta").select_option("reply")
        # A CTA the form does not offer (as a hand-made request would send it).
        await (
            rows.nth(0)
            .get_by_test_id("step-cta")
            .evaluate("select => { select.options[select.selectedIndex].value = 'bribe'; }")
        )
        await form.get_by_test_id("campaign-timezone").fill("Mars/Olympus")
        assert await click_and_wait(page, "campaign-create", "/console/campaigns") == 422
        await expect(page.locator("#step-0-cta-error")).to_contain_text(
            "One of book_call, reply, send_info"
        )
        await expect(page.locator("#timezone-error")).to_contain_text("IANA time zone")
        await expect(rows.nth(0).get_by_test_id("step-cta")).to_have_attribute(
            "aria-invalid", "true"
        )
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("Not saved")
        # The form kept what was typed.
        await expect(form.get_by_test_id("campaign-name")).to_have_value("Spring follow-up")
        await expect(rows.nth(1).get_by_test_id("step-delay")).to_have_value("3")
        await expect(rows.nth(1).get_by_test_id("step-cta")).to_have_value("reply")
        await expect(form.get_by_test_id("campaign-timezone")).to_have_value("Mars/Olympus")
        await expect(page.get_by_test_id("no-campaigns")).to_be_visible()
        await shoot(page, screenshot, "campaigns-refused")

        # A row with a wait but no channel is the console's own check.
        await rows.nth(2).get_by_test_id("step-delay").fill("5")
        await rows.nth(0).get_by_test_id("step-cta").select_option("book_call")
        await form.get_by_test_id("campaign-timezone").fill(ZONE)
        assert await click_and_wait(page, "campaign-create", "/console/campaigns") == 422
        await expect(page.locator("#step-2-channel-error")).to_contain_text("Choose a channel")
        await expect(page.locator("#timezone-error")).to_have_count(0)
        await expect(page.locator("#step-0-cta-error")).to_have_count(0)

        # --- valid: listed as a draft --------------------------------------------------------
        await rows.nth(2).get_by_test_id("step-delay").fill("")
        await form.get_by_test_id("campaign-report-to").fill("ops@relay.example")
        assert await click_and_wait(page, "campaign-create", "/console/campaigns") == 200
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("saved as a draft")
        listed = page.get_by_test_id("campaign-row")
        await expect(listed).to_have_count(1)
        await expect(listed).to_have_attribute("data-status", "draft")
        await expect(listed.get_by_test_id("campaign-link")).to_have_text("Spring follow-up")
        await expect(listed.get_by_test_id("steps-summary")).to_have_text("email → +3 d email")
        await expect(listed.get_by_test_id("schedule")).to_have_text(f"10:00 {ZONE}")
        await expect(listed.get_by_test_id("last-run")).to_have_text("never")
        await expect(form.get_by_test_id("campaign-name")).to_have_value("")  # a fresh form

        # The same name again: refused at the name.
        await form.get_by_test_id("campaign-name").fill("Spring follow-up")
        assert await click_and_wait(page, "campaign-create", "/console/campaigns") == 409
        await expect(page.locator("#name-error")).to_contain_text("exists")
        await expect(listed).to_have_count(1)
        await shoot(page, screenshot, "campaigns")

        # --- the campaign: a draft, activated ------------------------------------------------
        await listed.get_by_test_id("campaign-link").click()
        await expect(page).to_have_url(re.compile(r"/console/campaigns/[0-9a-f-]{36}$"))
        base = urlparse(page.url).path
        panel = page.get_by_test_id("campaign")
        await expect(page.get_by_test_id("campaign-title")).to_have_text("Spring follow-up")
        await expect(panel).to_have_attribute("data-status", "draft")
        await expect(page.get_by_test_id("definition")).to_contain_text("Form")
        await expect(page.get_by_test_id("report-to")).to_have_text("ops@relay.example")
        steps = page.get_by_test_id("step")
        await expect(steps).to_have_count(2)
        await expect(steps.nth(1)).to_contain_text("3 days after step 1")
        await expect(steps.nth(1)).to_have_attribute("data-cta", "reply")
        await expect(page.get_by_test_id("run-now")).to_have_count(0)
        await expect(page.get_by_test_id("action-pause")).to_have_count(0)
        await expect(page.get_by_test_id("no-runs")).to_be_visible()
        await shoot(page, screenshot, "campaign-draft")

        assert await click_and_wait(page, "action-activate", f"{base}/activate") == 200
        await expect(panel).to_have_attribute("data-status", "active")
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("Active")
        await expect(page.get_by_test_id("action-activate")).to_have_count(0)

        # --- run now: every lead joins, drafted for review ----------------------------------
        assert await click_and_wait(page, "run-now", f"{base}/run") == 200
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("3 awaiting approval")
        runs = page.get_by_test_id("run")
        await expect(runs).to_have_count(1)
        first = runs.first
        await expect(first).to_have_attribute("data-trigger", "manual")
        await expect(counter(first, "joined")).to_have_text("3")
        await expect(counter(first, "drafted")).to_have_text("3")
        await expect(counter(first, "awaiting_approval")).to_have_text("3")
        await expect(first.locator("[data-counter='queued']")).to_have_count(0)
        by_state = page.get_by_test_id("members-by-state")
        await expect(by_state.locator("[data-state=active] .counts__value")).to_have_text("3")
        await expect(page.get_by_test_id("member-row")).to_have_count(3)
        await expect(page.get_by_test_id("runs-chart")).to_have_attribute("data-drawn", "true")
        assert (await chart_data(page))["awaiting_approval"] == [3]
        await shoot(page, screenshot, "campaign-first-run")

        # --- a reviewer approves every draft; the next run sends through the guard -----------
        reviewer = await workspace.tenant.headers(Role.REVIEWER)
        bulk = await workspace.client.post(
            "/v1/approvals/bulk", json={"channel": "email"}, headers=reviewer
        )
        assert bulk.status_code == 200, bulk.text
        assert len(bulk.json()["approved"]) == 3

        assert await click_and_wait(page, "run-now", f"{base}/run") == 200
        await expect(runs).to_have_count(2)
        newest = runs.first  # newest first
        await expect(newest).to_have_attribute("data-run-number", "2")
        await expect(counter(newest, "queued")).to_have_text("2")
        await expect(counter(newest, "blocked:suppression")).to_have_text("1")
        await expect(newest.locator("[data-counter='blocked:suppression'] th")).to_have_text(
            "Blocked: Suppression list"
        )
        await expect(counter(newest, "stopped:blocked by suppression")).to_have_text("1")
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("2 queued")
        await expect(by_state.locator("[data-state=active] .counts__value")).to_have_text("2")
        await expect(by_state.locator("[data-state=stopped] .counts__value")).to_have_text("1")
        stopped = page.locator("[data-testid=member-row][data-state=stopped]")
        await expect(stopped.get_by_test_id("member-lead")).to_have_text("Gone Away")
        await expect(stopped.get_by_test_id("stop-reason")).to_have_text("blocked by suppression")
        moved = page.locator("[data-testid=member-row][data-state=active]")
        await expect(moved).to_have_count(2)
        await expect(moved.first.get_by_test_id("member-step")).to_contain_text("2 of 2")
        await expect(moved.first.get_by_test_id("member-lead")).to_have_attribute(
            "href", re.compile(r"/console/leads/[0-9a-f-]{36}$")
        )
        await expect(page.get_by_test_id("runs-chart")).to_have_attribute("data-drawn", "true")
        series = await chart_data(page)
        assert series["awaiting_approval"] == [3, 0]
        assert series["queued"] == [0, 2]
        assert series["blocked"] == [0, 1]
        assert series["stopped"] == [0, 1]
        assert "@" not in "".join(await page.get_by_test_id("member-row").all_text_contents())
        await shoot(page, screenshot, "campaign-second-run")

        # --- pause, resume, stop after the confirm -------------------------------------------
        assert await click_and_wait(page, "action-pause", f"{base}/pause") == 200
        await expect(panel).to_have_attribute("data-status", "paused")
        await expect(page.get_by_test_id("run-now")).to_have_count(0)
        await expect(page.get_by_test_id("action-resume")).to_be_visible()
        await shoot(page, screenshot, "campaign-paused")
        assert await click_and_wait(page, "action-resume", f"{base}/resume") == 200
        await expect(panel).to_have_attribute("data-status", "active")
        await expect(page.get_by_test_id("run-now")).to_be_visible()

        assert await click_and_wait(page, "action-stop", f"{base}/stop") == 200
        assert len(dialogs) == 1
        assert "for good" in dialogs[0]
        await expect(panel).to_have_attribute("data-status", "stopped")
        await expect(page.get_by_test_id("campaign-actions")).to_have_count(0)
        await expect(runs).to_have_count(2)  # the reports stay

        await open_from_nav(page, "Campaigns")
        await expect(listed).to_have_attribute("data-status", "stopped")
        await expect(listed.get_by_test_id("last-run")).not_to_have_text("never")
        members = listed.get_by_test_id("member-counts")
        await expect(members.locator("[data-state=active] .member-counts__value")).to_have_text("2")
        await expect(members.locator("[data-state=stopped] .member-counts__value")).to_have_text(
            "1"
        )

        assert await audit_actions(workspace) == [
            "campaign.activate",
            "campaign.created",
            "campaign.pause",
            "campaign.resume",
            "campaign.run",
            "campaign.run",
            "campaign.stop",
        ]
        rep = await workspace.tenant.headers(Role.REP)
        messages = (await workspace.client.get("/v1/messages", headers=rep)).json()
        assert sorted(m["status"] for m in messages) == ["blocked", "queued", "queued"]
        await run_jobs()  # the dry-run channel records the two queued


class TestReadOnly:
    async def test_a_reviewer_reads_the_campaign_and_changes_nothing(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        rep = await workspace.tenant.headers(Role.REP)
        created = await workspace.client.post(
            "/v1/campaigns", json={"name": "Autumn", "steps": STEPS}, headers=rep
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["campaign"]["id"]
        activated = await workspace.client.post(
            f"/v1/campaigns/{campaign_id}/activate", headers=rep
        )
        assert activated.status_code == 200, activated.text
        ran = await workspace.client.post(f"/v1/campaigns/{campaign_id}/run", headers=rep)
        assert ran.status_code == 200, ran.text

        await sign_in(page, await workspace.tenant.user(Role.REVIEWER))
        await open_from_nav(page, "Campaigns")
        listed = page.get_by_test_id("campaign-row")
        await expect(listed).to_have_count(1)
        await expect(listed).to_have_attribute("data-status", "active")
        await expect(listed.get_by_test_id("schedule")).to_have_text(f"10:00 {ZONE}")
        await expect(page.get_by_test_id("campaign-form")).to_have_count(0)
        await expect(page.get_by_test_id("read-only")).to_contain_text("not create")

        await listed.get_by_test_id("campaign-link").click()
        await expect(page.get_by_test_id("campaign-title")).to_have_text("Autumn")
        await expect(page.get_by_test_id("campaign-actions")).to_have_count(0)
        await expect(page.get_by_test_id("read-only")).to_be_visible()
        run = page.get_by_test_id("run")
        await expect(run).to_have_count(1)
        await expect(counter(run, "awaiting_approval")).to_have_text("3")
        await expect(page.get_by_test_id("runs-chart")).to_have_attribute("data-drawn", "true")
        await shoot(page, screenshot, "campaign-read-only")

        token = await csrf_token(page)
        base = f"/console/campaigns/{campaign_id}"
        for path, form in (
            (
                "/console/campaigns",
                {
                    "name": "Sneaky",
                    "step_channel": "email",
                    "step_delay_days": "0",
                    "send_time": "10:00",
                    "timezone": "UTC",
                },
            ),
            (f"{base}/pause", {}),
            (f"{base}/stop", {}),
            (f"{base}/run", {}),
            (f"{base}/activate", {}),
            (f"{base}/resume", {}),
        ):
            response = await page.request.post(path, form={"csrf_token": token, **form})
            assert response.status == 403, (path, response.status)
        # Without the token, refused before the role is even looked at.
        assert (await page.request.post(f"{base}/run")).status == 403

        detail = (await workspace.client.get(f"/v1/campaigns/{campaign_id}", headers=rep)).json()
        assert detail["campaign"]["status"] == "active"
        assert len(detail["runs"]) == 1
        listed_by_api = (await workspace.client.get("/v1/campaigns", headers=rep)).json()
        assert [c["name"] for c in listed_by_api] == ["Autumn"]

        # Another id is as missing as an unknown one.
        missing = await page.goto(f"/console/campaigns/{uuid.uuid4()}")
        assert missing is not None
        assert missing.status == 404


class TestScheduledCalls:
    async def test_the_page_shows_the_calls_a_run_spread_across_the_window(
        self,
        page: Page,
        tenants: TenantFactory,
        db: Database,
        client: httpx.AsyncClient,
        settings: Settings,
        screenshot: Screenshot,
    ) -> None:
        """A run on Monday at 09:00 in Paris schedules the four calls at 11:00, 12:30, 14:00
        and 15:30 there; the page says how many wait and when, the run's report how many it
        scheduled; once a call's time has come it no longer waits."""
        tenant = await tenants.create("Call Co")
        await seed_callers(client, tenant)
        campaign_id = await approved_call_campaign(client, tenant)
        monday = next_in_paris(utcnow(), 0, 9)
        await run_at(db, tenant, settings, campaign_id, monday)
        day = f"{monday:%a} {monday.day} {monday:%b}"

        await sign_in(page, await tenant.user(Role.MANAGER))
        await page.goto(f"/console/campaigns/{campaign_id}")
        waiting = page.get_by_test_id("scheduled-calls")
        await expect(waiting).to_have_attribute("data-count", "4")
        await expect(waiting.get_by_test_id("scheduled-span")).to_have_text(
            f"4 calls waiting for their time: {day} 11:00 – 15:30 (Europe/Paris)"
        )
        runs = page.get_by_test_id("run")
        await expect(runs).to_have_count(2)
        newest = runs.first
        await expect(counter(newest, "scheduled")).to_have_text("4")
        await expect(newest.locator("[data-counter='scheduled'] th")).to_have_text(
            "Calls scheduled"
        )
        await expect(newest.locator("[data-counter='queued']")).to_have_count(0)
        await expect(newest.get_by_test_id("run-scheduled")).to_have_text(
            f"Calls scheduled for {day} 11:00 – 15:30 (Europe/Paris)"
        )
        await expect(runs.nth(1).get_by_test_id("run-scheduled")).to_have_count(0)
        await expect(page.get_by_test_id("runs-chart")).to_have_attribute("data-drawn", "true")
        assert (await chart_data(page))["scheduled"] == [0, 4]
        await shoot(page, screenshot, "campaign-scheduled-calls")

        # The first call's time comes: it goes through the guard, the others still wait.
        await release_at(db, tenant, settings, monday.replace(hour=11))
        await page.reload()
        await expect(waiting).to_have_attribute("data-count", "3")
        await expect(waiting.get_by_test_id("scheduled-span")).to_have_text(
            f"3 calls waiting for their time: {day} 12:30 – 15:30 (Europe/Paris)"
        )


class TestHalted:
    async def test_a_run_without_a_sender_halts_the_campaign_with_its_reason(
        self,
        page: Page,
        tenants: TenantFactory,
        client: httpx.AsyncClient,
        screenshot: Screenshot,
    ) -> None:
        tenant = await tenants.create("No Sender Ltd")
        await seed(client, tenant, LEADS[:1], sender=False)
        rep = await tenant.headers(Role.REP)
        created = await client.post(
            "/v1/campaigns", json={"name": "Orphan", "steps": STEPS}, headers=rep
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["campaign"]["id"]
        base = f"/console/campaigns/{campaign_id}"
        activated = await client.post(f"/v1/campaigns/{campaign_id}/activate", headers=rep)
        assert activated.status_code == 200, activated.text

        await sign_in(page, await tenant.user(Role.REP))
        await page.goto(base)
        assert await click_and_wait(page, "run-now", f"{base}/run") == 200
        panel = page.get_by_test_id("campaign")
        await expect(panel).to_have_attribute("data-status", "halted")
        await expect(page.get_by_test_id("panel-notices")).to_contain_text("halted")
        await expect(page.get_by_test_id("halted-reason")).to_contain_text("sender")
        await expect(page.get_by_test_id("run-error")).to_contain_text("sender")
        await expect(page.get_by_test_id("run-now")).to_have_count(0)
        await expect(page.get_by_test_id("action-resume")).to_be_visible()
        await expect(page.get_by_test_id("action-stop")).to_be_visible()
        await shoot(page, screenshot, "campaign-halted")

        # Resuming clears the reason; the next run would halt again until a sender is set.
        assert await click_and_wait(page, "action-resume", f"{base}/resume") == 200
        await expect(panel).to_have_attribute("data-status", "active")
        await expect(page.get_by_test_id("halted-banner")).to_have_count(0)
